import Glibc
import SpiritCore

/// What a service is, as its file in /etc/spirit/services/<name>.toml says.
/// Times are in microseconds inside Spirit; files give them in ms or s.
public struct ServiceDefinition: Sendable, Equatable {
    public enum Restart: String, Sendable, Equatable {
        case always, onFailure = "on-failure", never
    }

    public enum Readiness: String, Sendable, Equatable {
        /// Ready once it sends `READY=1` to $NOTIFY_SOCKET (sd_notify's protocol).
        case notify
        /// Ready as soon as it runs.
        case started
        /// Ready once `ready-command` exits 0: a probe run every
        /// `ready-interval-ms` while the service starts (an HTTP health
        /// check, a socket that answers), for programs that cannot notify.
        case exec
    }

    public var name: String
    /// The program and its arguments; the program is an absolute path.
    public var command: [String]
    /// `KEY=value` added to Spirit's base environment.
    public var environment: [String] = []
    /// A user name (from /etc/passwd) or a number; nil runs as root.
    public var user: String? = nil
    /// Start after these are ready (if they are enabled).
    public var after: [String] = []
    /// Start after these are ready; fail if one of them fails.
    public var requires: [String] = []
    public var enabled = true
    public var restart: Restart = .always
    public var backoffInitialMicros: Int64 = 100_000
    public var backoffCapMicros: Int64 = 30_000_000
    public var backoffFactor: Int64 = 2
    /// More than `crashLoopRestarts` restarts within `crashLoopWindowMicros`:
    /// the service is failed until `spiritctl start`.
    public var crashLoopRestarts = 5
    public var crashLoopWindowMicros: Int64 = 60_000_000
    public var readiness: Readiness = .started
    /// `ready = "exec"`: the probe, and how often it runs.
    public var readyCommand: [String] = []
    public var readyIntervalMicros: Int64 = 500_000
    /// A notify service not ready after this long counts as settled (with a
    /// warning) so that `spirit: ready` is not held up for ever.
    public var readyTimeoutMicros: Int64 = 30_000_000
    public var stopSignal: CInt = SIGTERM
    public var stopTimeoutMicros: Int64 = 5_000_000
    /// /run/log/<name>.log and its one rotated file together stay under this.
    public var logMaxBytes: Int64 = 1 << 20
    /// The lines `spiritctl logs` has in memory.
    public var logRingLines = 1000
    /// cgroup v2 memory.max (bytes, or "max"), where the kernel has cgroup2.
    public var memoryMax: String? = nil
    /// cgroup v2 cpu.weight (1–10000).
    public var cpuWeight: Int? = nil
    /// cgroup v2 pids.max: how many tasks it may have (a fork bomb stops there).
    public var pidsMax: Int? = nil
    /// What it may not do (its `[sandbox]` table).
    public var sandbox = Sandbox()
    /// The exit status by which the service says it has nothing to do on
    /// this machine (the HUD with no display): it is settled, not failed,
    /// and not restarted, with its last line of output as the reason —
    /// what systemd's ConditionPathExists and RestartPreventExitStatus do
    /// together.
    public var notApplicableExit: Int32? = nil
    /// What the Sentinel may do to it (its `[sentinel]` table): nothing by default.
    public var sentinel = ServicePolicy()
    /// Where the definition came from, for messages.
    public var path = ""

    public init(name: String, command: [String]) {
        self.name = name
        self.command = command
    }

    /// Every service this one waits for.
    public var dependencies: [String] { requires + after.filter { !requires.contains($0) } }

    /// A service name: what the file is called without `.toml`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2D || byte == 0x5F
        } && !name.hasPrefix("-")
    }

    static let knownFields = Set<String>([
        "command", "environment", "user", "after", "requires", "enabled", "restart", "ready", "ready-timeout-ms", "ready-command", "ready-interval-ms",
        "backoff.initial-ms", "backoff.cap-ms", "backoff.factor",
        "crash-loop.restarts", "crash-loop.within-seconds",
        "stop.signal", "stop.timeout-ms",
        "log.max-bytes", "log.ring-lines",
        "cgroup.memory-max", "cgroup.cpu-weight", "cgroup.pids-max", "exit.not-applicable",
        "sandbox.no-new-privileges", "sandbox.capabilities", "sandbox.read-only-root", "sandbox.writable-paths", "sandbox.read-only-paths",
        "sandbox.private-tmp",
    ]).union(ServicePolicy.fields)

    /// The definition in `file`, for the service `name`.
    public init(name: String, file: ServiceFile) throws(DefinitionError) {
        let path = file.path
        guard Self.isValidName(name) else {
            throw DefinitionError(path: path, line: 1, field: "name",
                                  "'\(name)' is not a service name: the file name (without .toml) must be a-z, 0-9, '-' and '_'")
        }
        for entry in file.entries where !Self.knownFields.contains(entry.key) {
            throw DefinitionError(path: path, line: entry.line, field: entry.key,
                                  "unknown field (known: \(Self.knownFields.sorted().joined(separator: ", ")))")
        }
        func fail(_ entry: ServiceFile.Entry, _ reason: String) -> DefinitionError {
            DefinitionError(path: path, line: entry.line, field: entry.key, reason)
        }
        func string(_ key: String) throws(DefinitionError) -> (String, ServiceFile.Entry)? {
            guard let entry = file[key] else { return nil }
            guard case .string(let text) = entry.value else { throw fail(entry, "expected a string, found \(entry.value.kind)") }
            return (text, entry)
        }
        func strings(_ key: String) throws(DefinitionError) -> [String]? {
            guard let entry = file[key] else { return nil }
            guard case .strings(let items) = entry.value else { throw fail(entry, "expected an array of strings, found \(entry.value.kind)") }
            return items
        }
        func integer(_ key: String, _ range: ClosedRange<Int64>) throws(DefinitionError) -> Int64? {
            guard let entry = file[key] else { return nil }
            guard case .integer(let number) = entry.value else { throw fail(entry, "expected an integer, found \(entry.value.kind)") }
            guard range.contains(number) else { throw fail(entry, "\(number) is out of range (\(range.lowerBound)–\(range.upperBound))") }
            return number
        }
        func names(_ key: String) throws(DefinitionError) -> [String] {
            let items = try strings(key) ?? []
            for item in items where !Self.isValidName(item) {
                throw fail(file[key]!, "'\(item)' is not a service name")
            }
            if items.contains(name) { throw fail(file[key]!, "a service cannot wait for itself") }
            return items
        }

        guard let commandEntry = file["command"] else {
            throw DefinitionError(path: path, line: 1, field: "command", "missing: every service needs command = [\"/path/to/program\", \"argument\", ...]")
        }
        guard case .strings(let command) = commandEntry.value else {
            throw fail(commandEntry, "expected an array of strings (the program and its arguments), found \(commandEntry.value.kind)")
        }
        guard let program = command.first, program.hasPrefix("/") else {
            throw fail(commandEntry, "the first word must be the program's absolute path (\"/bin/...\")")
        }
        _ = program
        self.init(name: name, command: command)
        self.path = path
        if let environment = try strings("environment") {
            for item in environment where !(item.contains("=") && !item.hasPrefix("=")) {
                throw fail(file["environment"]!, "'\(item)' is not KEY=value")
            }
            self.environment = environment
        }
        if let (user, entry) = try string("user") {
            guard !user.isEmpty, !user.contains(":") else { throw fail(entry, "'\(user)' is not a user name or number") }
            self.user = user
        }
        after = try names("after")
        requires = try names("requires")
        if let entry = file["enabled"] {
            guard case .bool(let flag) = entry.value else { throw fail(entry, "expected true or false, found \(entry.value.kind)") }
            enabled = flag
        }
        if let (text, entry) = try string("restart") {
            guard let policy = Restart(rawValue: text) else { throw fail(entry, "'\(text)' is not one of always, on-failure, never") }
            restart = policy
        }
        if let (text, entry) = try string("ready") {
            guard let kind = Readiness(rawValue: text) else { throw fail(entry, "'\(text)' is not one of notify, started, exec") }
            readiness = kind
        }
        let hour: Int64 = 3_600_000
        if let ms = try integer("ready-timeout-ms", 1...hour) { readyTimeoutMicros = ms * 1000 }
        if let ms = try integer("ready-interval-ms", 10...hour) { readyIntervalMicros = ms * 1000 }
        if let probe = try strings("ready-command") {
            let entry = file["ready-command"]!
            guard readiness == .exec else { throw fail(entry, "ready-command is for ready = \"exec\"") }
            guard let program = probe.first, program.hasPrefix("/") else {
                throw fail(entry, "the first word must be the probe's absolute path (\"/bin/...\")")
            }
            readyCommand = probe
        } else if readiness == .exec, let entry = file["ready"] {
            throw fail(entry, "ready = \"exec\" needs a ready-command")
        }
        if let ms = try integer("backoff.initial-ms", 0...hour) { backoffInitialMicros = ms * 1000 }
        if let ms = try integer("backoff.cap-ms", 0...hour) { backoffCapMicros = ms * 1000 }
        if backoffCapMicros < backoffInitialMicros, let entry = file["backoff.cap-ms"] ?? file["backoff.initial-ms"] {
            throw fail(entry, "the cap (\(backoffCapMicros / 1000) ms) is below the initial delay (\(backoffInitialMicros / 1000) ms)")
        }
        if let factor = try integer("backoff.factor", 1...16) { backoffFactor = factor }
        if let count = try integer("crash-loop.restarts", 1...1_000_000) { crashLoopRestarts = Int(count) }
        if let seconds = try integer("crash-loop.within-seconds", 1...86_400) { crashLoopWindowMicros = seconds * 1_000_000 }
        if let (text, entry) = try string("stop.signal") {
            guard let signal = Self.signalNumber(text) else { throw fail(entry, "'\(text)' is not a signal name (SIGTERM, SIGINT, SIGHUP, ...)") }
            stopSignal = signal
        }
        if let ms = try integer("stop.timeout-ms", 0...hour) { stopTimeoutMicros = ms * 1000 }
        if let bytes = try integer("log.max-bytes", 4096...(1 << 40)) { logMaxBytes = bytes }
        if let lines = try integer("log.ring-lines", 1...1_000_000) { logRingLines = Int(lines) }
        if let code = try integer("exit.not-applicable", 1...255) { notApplicableExit = Int32(code) }
        if let entry = file["cgroup.memory-max"] {
            switch entry.value {
            case .integer(let bytes) where bytes > 0: memoryMax = String(bytes)
            case .string(let text) where text == "max" || Self.memorySize(text) != nil: memoryMax = text == "max" ? text : String(Self.memorySize(text)!)
            default: throw fail(entry, "expected a size in bytes, with K, M or G (\"256M\"), or \"max\"")
            }
        }
        if let weight = try integer("cgroup.cpu-weight", 1...10_000) { cpuWeight = Int(weight) }
        if let count = try integer("cgroup.pids-max", 1...4_194_304) { pidsMax = Int(count) }
        func flag(_ key: String) throws(DefinitionError) -> Bool {
            guard let entry = file[key] else { return false }
            guard case .bool(let value) = entry.value else { throw fail(entry, "expected true or false, found \(entry.value.kind)") }
            return value
        }
        func paths(_ key: String) throws(DefinitionError) -> [String] {
            let items = try strings(key) ?? []
            for item in items where !item.hasPrefix("/") || item.split(separator: "/").contains("..") {
                throw fail(file[key]!, "'\(item)' is not an absolute path without '..'")
            }
            return items
        }
        sandbox.noNewPrivileges = try flag("sandbox.no-new-privileges")
        sandbox.readOnlyRoot = try flag("sandbox.read-only-root")
        sandbox.privateTmp = try flag("sandbox.private-tmp")
        sandbox.writablePaths = try paths("sandbox.writable-paths")
        sandbox.readOnlyPaths = try paths("sandbox.read-only-paths")
        if !sandbox.writablePaths.isEmpty, !sandbox.readOnlyRoot {
            throw fail(file["sandbox.writable-paths"]!, "writable-paths are the exceptions to read-only-root = true")
        }
        if let names = try strings("sandbox.capabilities") {
            var kept: Set<Capability> = []
            for name in names {
                guard let capability = Capability(name: name) else {
                    throw fail(file["sandbox.capabilities"]!, "'\(name)' is not a capability (capabilities(7): net_admin, sys_admin, …)")
                }
                kept.insert(capability)
            }
            sandbox.capabilities = kept
        }
        sentinel = try ServicePolicy(file: file)
    }

    /// `SIGTERM`, `TERM` or a number.
    static func signalNumber(_ text: String) -> CInt? {
        if let number = CInt(text), (1..<65).contains(number) { return number }
        let name = text.hasPrefix("SIG") ? text : "SIG" + text
        return (1..<32).first { Signal.name($0) == name }
    }

    /// `256M` → 268435456.
    static func memorySize(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let unit = text.last.flatMap({ units[$0] }), let number = Int64(text.dropLast()), number > 0 { return number * unit }
        if let number = Int64(text), number > 0 { return number }
        return nil
    }
}

/// The services of a directory: every `<name>.toml`, checked together (a
/// name in `requires` without a file, a dependency cycle).
public enum ServiceDirectory {
    /// Parses each file; a bad one is reported and left out, so that one
    /// typo does not stop every other service.
    public static func load(directory: String) -> (services: [ServiceDefinition], errors: [DefinitionError]) {
        var services: [ServiceDefinition] = []
        var errors: [DefinitionError] = []
        for entry in Kernel.listDirectory(directory) where entry.hasSuffix(".toml") {
            let path = directory + "/" + entry
            do {
                let text = try Kernel.readText(path)
                services.append(try ServiceDefinition(name: String(entry.dropLast(5)), file: try ServiceFile.parse(text, path: path)))
            } catch let error as DefinitionError {
                errors.append(error)
            } catch {
                errors.append(DefinitionError(path: path, line: 0, field: "file", "\(error)"))
            }
        }
        return check(services, errors: errors)
    }

    /// Leaves out (with an error each) the services in a dependency cycle.
    public static func check(_ services: [ServiceDefinition], errors: [DefinitionError] = []) -> (services: [ServiceDefinition], errors: [DefinitionError]) {
        var errors = errors
        let byName = Dictionary(services.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var inCycle: Set<String> = []
        for service in services {
            // Depth-first from each service: does it reach itself?
            var stack = service.dependencies
            var seen: Set<String> = []
            while let next = stack.popLast() {
                if next == service.name { inCycle.insert(service.name); break }
                guard seen.insert(next).inserted, let dependency = byName[next] else { continue }
                stack += dependency.dependencies
            }
        }
        for name in inCycle.sorted() {
            errors.append(DefinitionError(path: byName[name]!.path, line: 1, field: "after",
                                          "a dependency cycle through \(inCycle.sorted().joined(separator: ", "))"))
        }
        return (services.filter { !inCycle.contains($0.name) }, errors)
    }
}
