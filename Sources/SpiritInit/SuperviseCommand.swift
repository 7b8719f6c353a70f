import Glibc
import SpiritCommands
import SpiritCore
import Supervisor

/// `spirit supervise [--root DIR] [--record KIND [KEY VALUE]...]`: the
/// service supervisor. PID 1 starts it in stage 2; with --root it runs on a
/// directory tree (services in DIR/etc/spirit/services, the control socket
/// in DIR/run/spirit, logs in DIR/run/log), for tests and for trying a
/// service file. --record, last: a record of PID 1's (`boot.stage2`) that
/// it writes to the journal, as process "init", before anything else.
enum SuperviseCommand {
    static func run(_ arguments: [String]) -> Int32 {
        var root: String? = nil
        var debug = false
        var record: SupervisorLoop.InitRecord? = nil
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            switch argument {
            case "--root":
                guard let value = rest.popFirst(), value.hasPrefix("/") else { return Usage.fail("supervise: --root takes an absolute DIR") }
                root = value
            case "--debug":
                debug = true
            case "--record":
                guard let kind = rest.popFirst(), !kind.isEmpty, let fields = JournalRecord.fields(pairs: rest) else {
                    return Usage.fail("supervise: --record takes KIND and KEY VALUE pairs, and comes last")
                }
                record = SupervisorLoop.InitRecord(kind: kind, fields: fields)
                rest = []
            default:
                return Usage.fail("supervise: unknown argument '\(argument)'")
            }
        }
        let systemMode = root == nil
        // Under PID 1 its lines go to the console and the kernel log, like
        // PID 1's; in a directory, to stdout only.
        let console = systemMode ? Console(debug: debug || commandLineDebug()) : Console(debug: debug, kmsgPath: nil)
        return SupervisorLoop(paths: SupervisorPaths(root: root ?? ""), console: console, systemMode: systemMode, initRecord: record).run()
    }

    static func commandLineDebug() -> Bool {
        BootConfig.current().debug
    }
}
