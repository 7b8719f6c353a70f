import SpiritCore

/// `spirit timeline [FILE]`: the boot timeline as a table.
package enum TimelineCommand {
    package static func run(_ arguments: [String]) -> Int32 {
        let console = Console.tool
        guard arguments.count <= 1 else {
            return Usage.fail("timeline takes at most one FILE")
        }
        let path = arguments.first ?? Timeline(process: "").documentPath
        do {
            let steps = try TimelineStep.steps(document: try Kernel.readFile(path))
            print(TimelineStep.table(steps))
            return 0
        } catch {
            console.error("\(path): \(error)")
            return 111
        }
    }
}
