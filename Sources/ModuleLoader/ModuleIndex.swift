import Glibc
import SpiritCore
import SystemPackage

/// A kernel module's name as the kernel knows it: the file's base name
/// without `.ko` and its compression suffix, with `-` written `_`
/// (`usb-storage.ko.xz` → `usb_storage`). kmod treats the two as one.
public func moduleName(_ nameOrPath: some StringProtocol) -> String {
    // Bytes, not Characters: the index holds thousands of these, and
    // grapheme breaking made parsing it 10x slower.
    var bytes = Array(nameOrPath.utf8)
    if let slash = bytes.lastIndex(of: UInt8(ascii: "/")) { bytes.removeSubrange(...slash) }
    for suffix in [".ko.zst", ".ko.xz", ".ko.gz", ".ko"] {
        let tail = Array(suffix.utf8)
        if bytes.count > tail.count, Array(bytes[(bytes.count - tail.count)...]) == tail {
            bytes.removeLast(tail.count)
            break
        }
    }
    for i in bytes.indices where bytes[i] == UInt8(ascii: "-") { bytes[i] = UInt8(ascii: "_") }
    return String(decoding: bytes, as: UTF8.self)
}

/// The lines of a text file, as bytes are split (no grapheme breaking).
func lines(_ text: String) -> [Substring] {
    var result: [Substring] = []
    var start = text.utf8.startIndex
    var index = start
    let end = text.utf8.endIndex
    while index != end {
        if text.utf8[index] == 10 {
            if start != index { result.append(Substring(text.utf8[start..<index])) }
            start = text.utf8.index(after: index)
        }
        index = text.utf8.index(after: index)
    }
    if start != end { result.append(Substring(text.utf8[start..<end])) }
    return result
}

/// The words of a line, split on spaces and tabs.
func words(_ line: Substring) -> [Substring] {
    line.utf8.split(whereSeparator: { $0 == 32 || $0 == 9 }).map { Substring($0) }
}

/// The module index depmod writes under /lib/modules/<release>: which file
/// holds each module, what it depends on, its aliases and soft
/// dependencies, and which modules are built in; plus modprobe.d.
/// Read from Spirit's precomputed binary index (modules.spirit, see
/// BinaryModuleIndex) where the initramfs or the image has one, else from
/// the text files (modules.dep, .alias, .symbols, .softdep, .builtin): they
/// are what depmod writes everywhere, and a parse of all of them takes
/// milliseconds natively, but hundreds under TCG.
public struct ModuleIndex: Sendable {
    /// Module name → path relative to the release directory.
    public internal(set) var paths: [String: String] = [:]
    /// Module name → names of the modules it needs (depmod's order).
    public internal(set) var dependencies: [String: [String]] = [:]
    /// Names of modules built into the kernel: loading them is a no-op.
    public internal(set) var builtin: Set<String> = []
    /// modules.alias, normalized as depmod writes its binary index. Exact
    /// keys (no glob character) apart, for a fast lookup.
    public internal(set) var exactAliases: [String: [String]] = [:]
    public internal(set) var globAliases: [(pattern: String, module: String)] = []
    /// The glob aliases by their literal prefix (up to the first glob
    /// character): a pattern can only match a string that starts with its
    /// prefix, so a lookup tries the prefixes of the string, not all 22,000
    /// patterns of a distribution kernel.
    var globsByPrefix: [Substring: [Int]] = [:]
    /// modules.symbols: `symbol:name` → modules.
    public internal(set) var symbols: [String: [String]] = [:]
    public internal(set) var softdeps: [String: SoftDependencies] = [:]
    public var config = ModuleConfig()

    public init(modulesDep: String, modulesBuiltin: String = "", modulesAlias: String = "", modulesSymbols: String = "",
                modulesSoftdep: String = "") {
        for line in lines(modulesDep) {
            guard let colon = line.utf8.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let path = String(line[..<colon])
            let name = moduleName(path)
            paths[name] = path
            dependencies[name] = words(line[line.utf8.index(after: colon)...]).map { moduleName($0) }
        }
        for line in lines(modulesBuiltin) {
            builtin.insert(moduleName(line))
        }
        for (pattern, module) in Self.aliasLines(modulesAlias) {
            let prefix = Self.literalPrefixLength(pattern)
            if prefix < pattern.utf8.count {
                globsByPrefix[Substring(pattern.utf8.prefix(prefix)), default: []].append(globAliases.count)
                globAliases.append((pattern, module))
            } else {
                exactAliases[pattern, default: []].append(module)
            }
        }
        for (symbol, module) in Self.aliasLines(modulesSymbols) {
            symbols[symbol, default: []].append(module)
        }
        for line in lines(modulesSoftdep) {
            let parts = words(line).map(String.init)
            guard parts.count >= 2, parts[0] == "softdep", let soft = SoftDependencies(parts.dropFirst(2)) else { continue }
            softdeps[moduleName(parts[1])] = soft
        }
    }

    /// The bytes of a pattern before its first glob character (* ? [ \\):
    /// its whole length for an exact alias.
    static func literalPrefixLength(_ pattern: String) -> Int {
        pattern.utf8.firstIndex(where: { $0 == 42 || $0 == 63 || $0 == 91 || $0 == 92 }).map { pattern.utf8.distance(from: pattern.utf8.startIndex, to: $0) }
            ?? pattern.utf8.count
    }

    /// `alias PATTERN MODULE` lines, patterns normalized.
    static func aliasLines(_ text: String) -> [(String, String)] {
        lines(text).compactMap { line in
            let parts = words(line)
            guard parts.count == 3, parts[0] == "alias" else { return nil }
            return (normalizeAlias(parts[1]), moduleName(parts[2]))
        }
    }

    /// Why the binary index was not used: there is none (an image built
    /// before it existed, or a kernel tree on the host), or it was refused.
    public enum BinaryIndexProblem: Error, Sendable, CustomStringConvertible {
        case missing(String)
        case refused(String)

        public var description: String {
            switch self {
            case .missing(let path): "no binary module index at \(path); reading the text files"
            case .refused(let reason): reason + "; reading the text files"
            }
        }
    }

    /// Reads the index of `root`/lib/modules/`release` (modules.spirit, or
    /// else the text files; `fallback` hears why, once) and the modprobe.d
    /// files under `root` (/lib/modprobe.d, then /etc/modprobe.d; a file
    /// name in /etc overrides the same name in /lib).
    public static func load(root: String = "", release: String, configDirectories: [String]? = nil,
                            fallback: (BinaryIndexProblem) -> Void = { _ in }) throws(SystemError) -> ModuleIndex {
        let directory = root + "/lib/modules/" + release
        var index: ModuleIndex
        switch readBinary(directory) {
        case .success(let binary):
            index = binary
        case .failure(let problem):
            fallback(problem)
            index = try readText(directory)
        }
        var files: [String: String] = [:]
        for configDirectory in configDirectories ?? [root + "/lib/modprobe.d", root + "/etc/modprobe.d"] {
            for name in Kernel.listDirectory(configDirectory) where name.hasSuffix(".conf") {
                files[name] = configDirectory + "/" + name
            }
        }
        for name in files.keys.sorted() {
            if let text = try? Kernel.readText(files[name]!) { index.config.read(text, origin: files[name]!) }
        }
        return index
    }

    /// The text files depmod writes in `directory`.
    static func readText(_ directory: String) throws(SystemError) -> ModuleIndex {
        func optional(_ name: String) -> String { (try? Kernel.readText(directory + "/" + name)) ?? "" }
        return ModuleIndex(modulesDep: try Kernel.readText(directory + "/modules.dep"), modulesBuiltin: optional("modules.builtin"),
                           modulesAlias: optional("modules.alias"), modulesSymbols: optional("modules.symbols"),
                           modulesSoftdep: optional("modules.softdep"))
    }

    /// The byte sizes of the text files in `directory`, in
    /// BinaryModuleIndex.sourceFiles order; 0 for one that is absent.
    static func sourceSizes(_ directory: String) -> [UInt64] {
        BinaryModuleIndex.sourceFiles.map { name in (try? Kernel.status(directory + "/" + name)).map { UInt64($0.size) } ?? 0 }
    }

    /// modules.spirit in `directory`, when it is there, whole, and made
    /// from the text files that are there now (a depmod run since changes
    /// their sizes).
    static func readBinary(_ directory: String) -> Result<ModuleIndex, BinaryIndexProblem> {
        let path = directory + "/" + BinaryModuleIndex.fileName
        var bytes: [UInt8] = []
        do {
            // One read of the whole file: its size from fstat.
            let fd = try Kernel.open(path, O_RDONLY)
            defer { Kernel.close(fd) }
            let size = try Kernel.status(of: fd, path).size
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(size), alignment: 8)
            defer { buffer.deallocate() }
            try Kernel.read(fd, into: buffer, at: 0, path)
            bytes = [UInt8](UnsafeRawBufferPointer(buffer))
        } catch {
            if error.errno == .noSuchFileOrDirectory { return .failure(.missing(path)) }
            return .failure(.refused("\(error)"))
        }
        do {
            let (index, madeFrom) = try BinaryModuleIndex.decode(bytes, file: path)
            let now = sourceSizes(directory)
            if let changed = BinaryModuleIndex.sourceFiles.indices.first(where: { now[$0] != madeFrom[$0] }) {
                return .failure(.refused("the binary module index \(path) is stale: \(BinaryModuleIndex.sourceFiles[changed]) is "
                                         + "\(now[changed]) bytes, it was made from \(madeFrom[changed]) (depmod ran since?)"))
            }
            return .success(index)
        } catch {
            return .failure(.refused(error.description))
        }
    }

    /// Writes modules.spirit for the text files in `directory` (a
    /// lib/modules/<release> directory); returns its path. For the build.
    public static func writeBinary(_ directory: String) throws(SystemError) -> (path: String, bytes: Int) {
        let sizes = sourceSizes(directory)
        let bytes = BinaryModuleIndex.encode(try readText(directory), sourceSizes: sizes)
        let path = directory + "/" + BinaryModuleIndex.fileName
        try Kernel.writeFile(path, bytes: bytes)
        return (path, bytes.count)
    }

    /// What a name or modalias stands for, in kmod's order: an alias from
    /// modprobe.d, a module's own name, a symbol, an install command, the
    /// aliases of modules.alias (every pattern that matches), a built-in
    /// module. The first that answers wins. Blacklists do not apply here.
    public func lookup(_ given: String) -> [String] {
        let alias = normalizeAlias(given)
        let configured = config.aliases.filter { globMatch($0.pattern, alias) }.map(\.module)
        if !configured.isEmpty { return configured }
        if paths[alias] != nil { return [alias] }
        if alias.hasPrefix("symbol:"), let modules = symbols[alias] { return modules }
        if config.commands.contains(alias) { return [alias] }
        var matched = exactAliases[alias] ?? []
        var candidates: [Int] = []
        var prefix = alias[...]
        while true {
            candidates += globsByPrefix[prefix] ?? []
            if prefix.isEmpty { break }
            prefix = prefix.dropLast()
        }
        // A modalias never holds *, ? or [; for such strings this is what
        // kmod's wildcard trie search answers: every pattern that matches.
        for candidate in candidates.sorted() where globMatch(globAliases[candidate].pattern, alias) {
            matched.append(globAliases[candidate].module)
        }
        if !matched.isEmpty { return matched }
        if builtin.contains(alias) { return [alias] }
        return []
    }

    /// Soft dependencies from modprobe.d, else from modules.softdep.
    public func softDependencies(_ name: String) -> SoftDependencies? {
        config.softdeps[name] ?? softdeps[name]
    }

    /// What loading `names` (module names or aliases) takes: every module
    /// after the modules it depends on (hard dependencies, and softdep
    /// `pre:` modules; `post:` ones after it), each once, with its options
    /// from modprobe.d. A blacklisted module is skipped when it was reached
    /// through an alias, loaded when named, as modprobe does. Built-in
    /// modules and names nothing answers for are reported apart.
    public func plan(_ names: [String]) -> LoadPlan {
        var plan = LoadPlan()
        var visited: Set<String> = []
        func visit(_ name: String) {
            guard visited.insert(name).inserted else { return }
            let soft = softDependencies(name)
            var after: [String] = []
            for pre in soft?.pre ?? [] {
                for module in lookup(pre) where paths[module] != nil {
                    visit(module)
                    after.append(module)
                }
            }
            for dependency in dependencies[name] ?? [] { visit(dependency) }
            if let path = paths[name] {
                plan.modules.append(PlannedModule(name: name, path: path, parameters: config.options[name] ?? "",
                                                  dependencies: (dependencies[name] ?? []) + after))
            }
            for post in soft?.post ?? [] { for module in lookup(post) where paths[module] != nil { visit(module) } }
        }
        for requested in names {
            let name = moduleName(requested)
            let resolved = lookup(requested)
            let viaAlias = resolved != [name]
            if resolved.isEmpty {
                plan.missing.append(requested)
                continue
            }
            for module in resolved {
                if viaAlias, config.blacklist.contains(module) {
                    plan.blacklisted.append(module)
                } else if builtin.contains(module), paths[module] == nil {
                    plan.builtin.append(module)
                } else if paths[module] != nil {
                    visit(module)
                }
            }
        }
        return plan
    }
}

public struct PlannedModule: Sendable, Equatable {
    public var name: String
    /// Relative to /lib/modules/<release>.
    public var path: String
    /// Options from modprobe.d.
    public var parameters: String
    /// The modules it needs loaded first: its hard dependencies and its
    /// softdep `pre:` modules.
    public var dependencies: [String]

    public init(name: String, path: String, parameters: String = "", dependencies: [String] = []) {
        self.name = name
        self.path = path
        self.parameters = parameters
        self.dependencies = dependencies
    }
}

/// Modules in load order, and what could not be planned.
public struct LoadPlan: Sendable, Equatable {
    public var modules: [PlannedModule] = []
    public var builtin: [String] = []
    public var blacklisted: [String] = []
    public var missing: [String] = []

    /// The modules in waves: each wave needs only modules of earlier waves,
    /// so the modules of one wave can load in parallel.
    public var waves: [[PlannedModule]] {
        var level: [String: Int] = [:]
        var result: [[PlannedModule]] = []
        for module in modules {
            let wave = (module.dependencies.compactMap { level[$0] }.max() ?? -1) + 1
            level[module.name] = wave
            if wave == result.count { result.append([]) }
            result[wave].append(module)
        }
        return result
    }
}
