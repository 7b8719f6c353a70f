import Glibc
import SpiritCore

// argv comes from the early constructor (see early.c).
let arguments: [String] = Kernel.processArguments() ?? CommandLine.arguments

// Process 1 is init, whatever its argv says: if PID 1 ever returned from
// here, the kernel would panic.
if Kernel.pid == 1 {
    InitProcess.main(arguments: arguments)
}

// The multi-call binary: what runs is chosen by the name it was started
// under (/init is PID 1), or by the first argument (`spirit poweroff`).
let invokedAs = String((arguments.first ?? "spirit").split(separator: "/").last ?? "spirit")
if invokedAs == "init" {
    InitProcess.main(arguments: arguments)
}
if invokedAs == "spiritctl" {
    exit(ControlCommand.run(Array(arguments.dropFirst())))
}

// The rescue tools are links named spirit-<tool> (spirit-diag, spirit-fetch…).
if invokedAs.hasPrefix("spirit-") {
    exit(RescueTools.run(String(invokedAs.dropFirst("spirit-".count)), Array(arguments.dropFirst())))
}

let command = arguments.dropFirst().first ?? "help"
let rest = Array(arguments.dropFirst(2))
switch command {
case "init":
    InitProcess.main()
case "boot-worker":
    BootWorker.main()
case "supervise":
    exit(SuperviseCommand.run(rest))
case "ctl":
    exit(ControlCommand.run(rest))
case "image":
    exit(ImageCommand.run(rest))
case "install":
    exit(InstallCommand.run(rest))
case "modules":
    exit(ModulesCommand.run(rest))
case "nodus":
    exit(NodusCommand.run(rest))
case "net":
    exit(NodusCommand.net(rest))
case "time":
    exit(TimeCommand.run(rest))
case "timeline":
    exit(TimelineCommand.run(rest))
case "nexus":
    exit(NexusCommand.run(rest))
case "boot-plan":
    exit(BootPlanCommand.run(rest))
case "poweroff", "reboot", "halt":
    exit(PowerCommand.run(command, rest))
case "diag", "mount", "fetch", "usb":
    exit(RescueTools.run(command, rest))
case "rescue-watch":
    exit(RescueTools.watch())
case "version", "--version":
    print("spirit \(SpiritVersion.string)")
case "help", "--help", "-h":
    print(Usage.text)
default:
    exit(Usage.fail("unknown command '\(command)'"))
}
