/// /etc/modprobe.d and /lib/modprobe.d, as kmod reads them (modprobe.d(5)):
/// `alias`, `blacklist`, `options`, `softdep`, and `install`/`remove`,
/// which Spirit does not run (it says so).
public struct ModuleConfig: Sendable, Equatable {
    public var aliases: [(pattern: String, module: String)] = []
    public var blacklist: Set<String> = []
    public var options: [String: String] = [:]
    public var softdeps: [String: SoftDependencies] = [:]
    /// Modules with an install or remove command, which Spirit ignores.
    public var commands: Set<String> = []
    /// Lines that could not be read, with their file and line number.
    public var problems: [String] = []

    public init() {}

    public static func == (lhs: ModuleConfig, rhs: ModuleConfig) -> Bool {
        lhs.aliases.map { $0.pattern + " " + $0.module } == rhs.aliases.map { $0.pattern + " " + $0.module }
            && lhs.blacklist == rhs.blacklist && lhs.options == rhs.options && lhs.softdeps == rhs.softdeps
            && lhs.commands == rhs.commands && lhs.problems == rhs.problems
    }

    /// Adds one configuration file's text; `origin` names it in problems.
    public mutating func read(_ text: String, origin: String) {
        var number = 0
        var pending = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            var line = Substring(raw)
            if line.hasSuffix("\\") {
                pending += line.dropLast() + " "
                continue
            }
            line = Substring(pending + line)
            pending = ""
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let keyword = words.first else { continue }
            let arguments = Array(words.dropFirst())
            func problem(_ what: String) { problems.append("\(origin):\(number): \(what)") }
            switch keyword {
            case "alias":
                guard arguments.count == 2 else { problem("alias takes a pattern and a module"); continue }
                aliases.append((normalizeAlias(arguments[0]), moduleName(arguments[1])))
            case "blacklist":
                guard arguments.count == 1 else { problem("blacklist takes one module"); continue }
                blacklist.insert(moduleName(arguments[0]))
            case "options":
                guard arguments.count >= 2 else { problem("options takes a module and its options"); continue }
                let name = moduleName(arguments[0])
                let joined = arguments.dropFirst().joined(separator: " ")
                options[name] = options[name].map { $0 + " " + joined } ?? joined
            case "softdep":
                guard arguments.count >= 1, let soft = SoftDependencies(arguments.dropFirst()) else {
                    problem("softdep takes a module, then pre: and post: lists"); continue
                }
                softdeps[moduleName(arguments[0])] = soft
            case "install", "remove":
                guard arguments.count >= 1 else { problem("\(keyword) takes a module and a command"); continue }
                commands.insert(moduleName(arguments[0]))
            default:
                problem("unknown keyword '\(keyword)'")
            }
        }
    }
}

/// `pre:` and `post:` modules of a softdep.
public struct SoftDependencies: Sendable, Equatable {
    public var pre: [String] = []
    public var post: [String] = []

    /// From the words after the module name: `pre: a b post: c`.
    init?(_ words: some Sequence<String>) {
        var target: WritableKeyPath<SoftDependencies, [String]>?
        for word in words {
            switch word {
            case "pre:": target = \.pre
            case "post:": target = \.post
            default:
                guard let target else { return nil }
                self[keyPath: target].append(moduleName(word))
            }
        }
    }

    public init(pre: [String], post: [String]) {
        self.pre = pre
        self.post = post
    }
}

/// kmod's alias_normalize: `-` becomes `_` except inside `[...]`.
public func normalizeAlias(_ alias: some StringProtocol) -> String {
    var bytes = Array(alias.utf8)
    var inSet = false
    for i in bytes.indices {
        switch bytes[i] {
        case UInt8(ascii: "["): inSet = true
        case UInt8(ascii: "]"): inSet = false
        case UInt8(ascii: "-") where !inSet: bytes[i] = UInt8(ascii: "_")
        default: break
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
