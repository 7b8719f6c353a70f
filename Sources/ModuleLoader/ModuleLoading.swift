import Glibc
import SpiritCore
import SystemPackage

/// Loads one planned module with finit_module(2); ParallelLoader runs many.
public struct ModuleLoading: Sendable {
    public var root: String
    public var release: String
    /// Where the kernel lists its modules (a test's directory elsewhere).
    public var sysModule: String

    public init(root: String = "", release: String, sysModule: String = "/sys/module") {
        self.root = root
        self.release = release
        self.sysModule = sysModule
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
        // A live module is not handed to the kernel again, as kmod's
        // modprobe does not: finit_module reads the whole file and checks
        // its signature before it finds the name taken, about 30 ms a
        // module under TCG (40 loaded modules again: 1.4 s). Stage 2's
        // modules service plans what stage 1 already loaded. One that is
        // still coming (another loader's) is loaded: the kernel waits for
        // it and answers EEXIST once it is live.
        if isLive(module.name) { return .alreadyLoaded }
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

    /// /sys/module/NAME/initstate says `live` (a built-in module has no
    /// initstate; the plan reports those apart).
    func isLive(_ name: String) -> Bool {
        (try? Kernel.readText(sysModule + "/" + name + "/initstate")) == "live\n"
    }
}
