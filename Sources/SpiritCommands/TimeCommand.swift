import SpiritCore

/// `spirit time COMMAND…`: how long a command takes, in ms of
/// CLOCK_BOOTTIME, measured from its spawn to its exit (busybox's `time`
/// counts in hundredths of a second). Used by `make bench` in the guest.
enum TimeCommand {
    static func run(_ arguments: [String]) -> Int32 {
        guard let command = arguments.first else { return Usage.fail("time needs a command") }
        let path = command.contains("/") ? command : searchPath(command)
        let console = Console.tool
        do {
            let start = Kernel.bootTimeMicros()
            let pid = try Spawn.spawn(path, arguments)
            let status = try Spawn.wait(pid)?.status
            let end = Kernel.bootTimeMicros()
            FileHandleless.writeError("spirit: time: \(formatMilliseconds(end - start)) ms: \(arguments.joined(separator: " "))\n")
            if case .exited(let code)? = status { return code }
            console.error("\(command) \(status.map(\.description) ?? "ended")")
            return 111
        } catch {
            console.error("\(error)")
            return 111
        }
    }

    static func searchPath(_ name: String) -> String {
        for directory in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] where Kernel.exists(directory + "/" + name) {
            return directory + "/" + name
        }
        return name
    }
}
