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
        let fd: CInt
        do {
            fd = try Kernel.open(path, O_RDONLY)
        } catch {
            return .failed("\(error)")
        }
        defer { Kernel.close(fd) }
        do {
            // Compressed modules are handed to the kernel to decompress
            // (MODULE_INIT_COMPRESSED_FILE, Linux 6.4 and later).
            try Kernel.loadModule(fd, parameters: parameters, compressed: !module.path.hasSuffix(".ko"),
                                  "load module \(module.name) from \(path)")
            return .loaded
        } catch {
            switch error.errno {
            case .fileExists: return .alreadyLoaded
            case .operationNotSupportedByDevice, .noSuchAddressOrDevice, .notSupported:
                return .notForThisMachine("\(SystemError("load module \(module.name)", error.errno))")
            default: return .failed("\(error)")
            }
        }
    }
}
