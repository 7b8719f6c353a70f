/// What a service allows the Sentinel to do to it: the `[sentinel]` table
/// of its service file,
///
///     [sentinel]
///     auto-restart = ["service-flapping"]   # rules that may restart it
///     pressure-kill = true                  # may be restarted, largest first, under memory pressure
///
/// Without one, nothing: the Sentinel only advises. Here, on SpiritCore,
/// because both the supervisor (whose strict parser checks the table) and
/// the Sentinel (which obeys it) read it, and daemons never import one
/// another.
public struct ServicePolicy: Sendable, Equatable {
    public static let fields: Set<String> = ["sentinel.auto-restart", "sentinel.pressure-kill"]

    public var autoRestart: Set<String>
    public var pressureKill: Bool

    public init(autoRestart: Set<String> = [], pressureKill: Bool = false) {
        self.autoRestart = autoRestart
        self.pressureKill = pressureKill
    }

    /// The `[sentinel]` table of a service file (the other tables are not
    /// looked at).
    public init(file: ConfigFile) throws(ConfigError) {
        let rules = try file.strings("sentinel.auto-restart") ?? []
        for rule in rules where !ConfigFile.isBareKey(rule) {
            throw file.error(file["sentinel.auto-restart"]!, "'\(rule)' is not a rule id (letters, digits, '-' and '_')")
        }
        self.init(autoRestart: Set(rules), pressureKill: try file.bool("sentinel.pressure-kill") ?? false)
    }
}
