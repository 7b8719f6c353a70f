import Testing
@testable import SpiritCommands

/// The command surface both binaries share: the boot binary's commands and
/// the full binary's own (StageTwoCommand) are two lists that must not meet,
/// and the usage both print lists every one of them.
@Suite struct MultiCallTests {
    @Test func noCommandIsInBothLists() {
        for command in StageTwoCommand.allCases {
            #expect(MultiCall.commands[command.rawValue] == nil, "\(command.rawValue) is in both lists")
        }
        #expect(MultiCall.commands["boot-worker"] == nil) // it never returns: dispatched on its own
    }

    @Test func theUsageListsEveryCommandOfBothBinaries() {
        let heading = "The commands of a running system, in the system image's spirit only"
        let lines = Usage.text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let split = lines.firstIndex(where: { $0.hasPrefix(heading) }) else {
            Issue.record("no stage-2 heading in the usage")
            return
        }
        let stageOne = lines[..<split].joined(separator: "\n") + "\n", stageTwo = "\n" + lines[split...].joined(separator: "\n")
        let hidden: Set = ["--version", "--help", "-h", "help", "rescue-watch"]
        for command in MultiCall.commands.keys where !hidden.contains(command) {
            #expect(stageOne.contains("\n  \(command) ") || stageOne.contains("\n  \(command)\n"), "\(command) is not in the usage")
        }
        for command in StageTwoCommand.allCases {
            #expect(stageTwo.contains("\n  \(command.rawValue) ") || stageTwo.contains("\n  \(command.rawValue)\n"),
                    "\(command.rawValue) is not under the stage-2 heading")
        }
    }

    @Test func theBootBinarySaysWhereAMissingCommandIs() {
        let message = MultiCall.notInInitramfs(.vm)
        #expect(message.hasPrefix("'spirit vm' is not in the initramfs"))
        #expect(message.contains("the system image's spirit has it"))
    }
}
