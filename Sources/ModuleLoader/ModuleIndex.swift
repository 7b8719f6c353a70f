import SpiritCore

/// A kernel module's name as the kernel knows it: the file's base name
/// without `.ko` and its compression suffix, with `-` written `_`
/// (`usb-storage.ko.xz` → `usb_storage`). kmod treats the two as one.
public func moduleName(_ nameOrPath: some StringProtocol) -> String {
    var base = Substring(nameOrPath.split(separator: "/").last ?? "")
    for suffix in [".ko.zst", ".ko.xz", ".ko.gz", ".ko"] where base.hasSuffix(suffix) {
        base = base.dropLast(suffix.count)
        break
    }
    return String(base.map { $0 == "-" ? "_" : $0 })
}

/// The module index depmod writes under /lib/modules/<release>: which file
/// holds each module, what it depends on, and which modules are built in.
public struct ModuleIndex: Sendable {
    /// Module name → path relative to the release directory.
    public private(set) var paths: [String: String] = [:]
    /// Module name → names of the modules it needs (depmod's order).
    public private(set) var dependencies: [String: [String]] = [:]
    /// Names of modules built into the kernel: loading them is a no-op.
    public private(set) var builtin: Set<String> = []

    public init(modulesDep: String, modulesBuiltin: String = "") {
        for line in modulesDep.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = String(line[..<colon])
            let name = moduleName(path)
            paths[name] = path
            dependencies[name] = line[line.index(after: colon)...].split(separator: " ").map { moduleName($0) }
        }
        for line in modulesBuiltin.split(separator: "\n") where !line.isEmpty {
            builtin.insert(moduleName(line))
        }
    }

    /// Reads modules.dep and modules.builtin of `root`/lib/modules/`release`.
    public static func load(root: String = "", release: String) throws(SystemError) -> ModuleIndex {
        let directory = root + "/lib/modules/" + release
        let dep = try Kernel.readText(directory + "/modules.dep")
        let builtin = (try? Kernel.readText(directory + "/modules.builtin")) ?? ""
        return ModuleIndex(modulesDep: dep, modulesBuiltin: builtin)
    }

    /// What loading `names` takes: every module after the modules it
    /// depends on, each once; built-in modules and names that are not in
    /// the index are reported apart.
    public func plan(_ names: [String]) -> LoadPlan {
        var plan = LoadPlan()
        var visited: Set<String> = []
        func visit(_ name: String) {
            guard visited.insert(name).inserted else { return }
            for dependency in dependencies[name] ?? [] { visit(dependency) }
            if let path = paths[name] { plan.modules.append(PlannedModule(name: name, path: path)) }
        }
        for requested in names {
            let name = moduleName(requested)
            if builtin.contains(name) {
                plan.builtin.append(name)
            } else if paths[name] == nil {
                plan.missing.append(requested)
            } else {
                visit(name)
            }
        }
        return plan
    }
}

public struct PlannedModule: Sendable, Equatable {
    public var name: String
    /// Relative to /lib/modules/<release>.
    public var path: String

    public init(name: String, path: String) {
        self.name = name
        self.path = path
    }
}

/// Modules in load order, and what could not be planned.
public struct LoadPlan: Sendable, Equatable {
    public var modules: [PlannedModule] = []
    public var builtin: [String] = []
    public var missing: [String] = []
}
