import Glibc
import SpiritCore

// argv comes from the early constructor (see early.c).
let arguments: [String] = Kernel.processArguments() ?? CommandLine.arguments

// PID 1 is spirit-init (Sources/SpiritPID1), its own small binary; it
// starts this one for everything else.
//
// The multi-call binary: what runs is chosen by the name it was started
// under, or by the first argument (`spirit poweroff`).
let invokedAs = String((arguments.first ?? "spirit").split(separator: "/").last ?? "spirit")
if invokedAs == "spiritctl" {
    exit(ControlCommand.run(Array(arguments.dropFirst())))
}

// The rescue tools are links named spirit-<tool> (spirit-diag, spirit-fetch…).
if invokedAs.hasPrefix("spirit-") {
    exit(RescueTools.run(String(invokedAs.dropFirst("spirit-".count)), Array(arguments.dropFirst())))
}

/// Every command but the one that never returns (`boot-worker`),
/// each with what runs it; the result is the exit status (0, 100 for a
/// usage error, 111 for a system failure).
let commands: [String: ([String]) -> Int32] = [
    "supervise": SuperviseCommand.run,
    "ctl": ControlCommand.run,
    "image": ImageCommand.run,
    "install": InstallCommand.run,
    "modules": ModulesCommand.run,
    "nodus": NodusCommand.run,
    "net": NodusCommand.net,
    "serve": NetbootCommand.run,
    "nexus": NexusCommand.run,
    "layer": LayerCommand.run,
    "vm": VMCommand.run,
    "ai": AICommand.run,
    "ask": AskCommand.run,
    "sentinel": SentinelCommand.run,
    "metrics": MetricsCommand.run,
    "gpu": GPUCommand.run,
    "time": TimeCommand.run,
    "timeline": TimelineCommand.run,
    "journal": JournalCommand.run,
    "boot-plan": BootPlanCommand.run,
    "persist": PersistCommand.run,
    "upgrade": UpgradeCommand.run,
    "poweroff": { PowerCommand.run("poweroff", $0) },
    "reboot": { PowerCommand.run("reboot", $0) },
    "halt": { PowerCommand.run("halt", $0) },
    "diag": { RescueTools.run("diag", $0) },
    "mount": { RescueTools.run("mount", $0) },
    "fetch": { RescueTools.run("fetch", $0) },
    "usb": { RescueTools.run("usb", $0) },
    "rescue-watch": { _ in RescueTools.watch() },
    // PID 1's helpers (spirit-init): the journal's chained records, and the
    // end of the shutdown once every other process has stopped.
    "init-journal": InitHelpers.journal,
    "shutdown-finish": InitHelpers.shutdownFinish,
    "version": { _ in print("spirit \(SpiritVersion.string)"); return 0 },
    "--version": { _ in print("spirit \(SpiritVersion.string)"); return 0 },
    "help": { _ in print(Usage.text); return 0 },
    "--help": { _ in print(Usage.text); return 0 },
    "-h": { _ in print(Usage.text); return 0 },
]

let command = arguments.dropFirst().first ?? "help"
let rest = Array(arguments.dropFirst(2))
switch command {
case "boot-worker":
    BootWorker.main()
default:
    guard let run = commands[command] else { exit(Usage.fail("unknown command '\(command)'")) }
    exit(run(rest))
}
