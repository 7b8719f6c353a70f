import Glibc
import SpiritCore

// The multi-call binary: what runs is chosen by the name it was started
// under (/init is PID 1), or by the first argument (`spirit poweroff`).
let arguments = CommandLine.arguments
let invokedAs = String((arguments.first ?? "spirit").split(separator: "/").last ?? "spirit")

if invokedAs == "init" {
    InitProcess.main()
}

let command = arguments.dropFirst().first ?? "help"
let rest = Array(arguments.dropFirst(2))
switch command {
case "init":
    InitProcess.main()
case "boot-worker":
    BootWorker.main()
case "poweroff", "reboot", "halt":
    exit(PowerCommand.run(command, rest))
case "version", "--version":
    print("spirit \(SpiritVersion.string)")
case "help", "--help", "-h":
    print(Usage.text)
default:
    Console(kmsgPath: nil).error("unknown command '\(command)'\n" + Usage.text)
    exit(100)
}
