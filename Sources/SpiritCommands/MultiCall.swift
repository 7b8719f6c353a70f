import Glibc
import SpiritCore

/// The commands only the full `spirit` has (Sources/SpiritInit): stage 2's
/// supervisor, its daemons and the tools that act on a running system. The
/// initramfs carries the boot binary (`spirit-boot`, Sources/SpiritBoot) as
/// its /bin/spirit, which has every other command and says of these that
/// they are not in the initramfs. The full binary runs them through a switch
/// over this type, so a name here without a command there does not compile.
package enum StageTwoCommand: String, CaseIterable, Sendable {
    case supervise, ctl, layer, serve, nexus, vm, sentinel, metrics, gpu, ai, ask, persist, upgrade
}

/// The multi-call binary's dispatch, the same in both binaries: what runs is
/// chosen by the name it was started under (`spiritctl`, the rescue tools
/// `spirit-<tool>`), or by the first argument (`spirit poweroff`).
package enum MultiCall {
    /// What runs a command: its arguments in, the exit status out (0, 100
    /// for a usage error, 111 for a system failure).
    package typealias Command = @Sendable ([String]) -> Int32

    /// Every command of both binaries but the one that never returns
    /// (`boot-worker`), each with what runs it.
    static let commands: [String: Command] = [
        "image": ImageCommand.run,
        "install": InstallCommand.run,
        "modules": ModulesCommand.run,
        "nodus": NodusCommand.run,
        "net": NodusCommand.net,
        "time": TimeCommand.run,
        "timeline": TimelineCommand.run,
        "journal": JournalCommand.run,
        "boot-plan": BootPlanCommand.run,
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

    /// Runs the command `arguments` name and exits with its status.
    /// `stageTwo` gives what runs each of StageTwoCommand's commands: the
    /// full binary's; nil in the boot binary, which has none of them.
    package static func main(_ arguments: [String], stageTwo: ((StageTwoCommand) -> Command)?) -> Never {
        let invokedAs = String((arguments.first ?? "spirit").split(separator: "/").last ?? "spirit")
        if invokedAs == "spiritctl" {
            exit(run(.ctl, Array(arguments.dropFirst()), stageTwo: stageTwo))
        }
        // The rescue tools are links named spirit-<tool> (spirit-diag, spirit-fetch…);
        // spirit-boot is this program under its build name (out/spirit-boot).
        if invokedAs.hasPrefix("spirit-"), invokedAs != "spirit-boot" {
            exit(RescueTools.run(String(invokedAs.dropFirst("spirit-".count)), Array(arguments.dropFirst())))
        }
        let command = arguments.dropFirst().first ?? "help"
        let rest = Array(arguments.dropFirst(2))
        if command == "boot-worker" {
            BootWorker.main()
        }
        if let run = commands[command] {
            exit(run(rest))
        }
        if let other = StageTwoCommand(rawValue: command) {
            exit(run(other, rest, stageTwo: stageTwo))
        }
        exit(Usage.fail("unknown command '\(command)'"))
    }

    static func run(_ command: StageTwoCommand, _ arguments: [String], stageTwo: ((StageTwoCommand) -> Command)?) -> Int32 {
        guard let stageTwo else {
            Console.tool.error(notInInitramfs(command))
            return 100
        }
        return stageTwo(command)(arguments)
    }

    /// What the boot binary says of a command it does not have: where it is
    /// instead, so that a person at the stage-1 shell knows it is not a typo.
    package static func notInInitramfs(_ command: StageTwoCommand) -> String {
        "'spirit \(command.rawValue)' is not in the initramfs: its spirit is the boot binary, with the commands of "
            + "stage 1 and its rescue shell only; the system image's spirit has it, once booted ('spirit help' lists both)"
    }
}
