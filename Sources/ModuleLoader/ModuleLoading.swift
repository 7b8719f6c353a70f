import CSpirit
import Glibc
import SpiritCore
import SystemPackage

/// Loads one planned module with finit_module(2); ParallelLoader runs many.
public struct ModuleLoading: Sendable {
    public var root: String
    public var release: String

    public init(root: String = "", release: String) {
        self.root = root
        self.release = release
    }

    public enum Outcome: Sendable, Equatable {
        case loaded, alreadyLoaded
        /// The module declined this machine (ENODEV, ENXIO, EOPNOTSUPP: no
        /// device of its kind, or a CPU without the feature, as kvm_intel
        /// without VMX): normal, said only with crom.debug=1.
        case notForThisMachine(String)
        case failed(String)
    }

    /// Loads one module file; a module that is already loaded is no error.
    public func load(_ module: PlannedModule, parameters: String = "") -> Outcome {
        let path = root + "/lib/modules/" + release + "/" + module.path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return .failed("\(SystemError("open \(path)", Errno(rawValue: spirit_errno())))") }
        defer { close(fd) }
        // Compressed modules are handed to the kernel to decompress
        // (MODULE_INIT_COMPRESSED_FILE, Linux 6.4 and later).
        let flags: CInt = module.path.hasSuffix(".ko") ? 0 : 4
        let rc = spirit_finit_module(fd, parameters, flags)
        switch rc {
        case 0: return .loaded
        case -EEXIST: return .alreadyLoaded
        case -ENODEV, -ENXIO, -EOPNOTSUPP:
            return .notForThisMachine("\(SystemError("load module \(module.name)", Errno(rawValue: -rc)))")
        default:
            return .failed("\(SystemError("load module \(module.name) from \(path)", Errno(rawValue: -rc)))")
        }
    }
}
