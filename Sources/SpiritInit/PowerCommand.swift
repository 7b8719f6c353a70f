import Glibc
import SpiritCore

/// `spirit poweroff | reboot | halt`: asks PID 1 with the signal busybox's
/// applets of the same names send, so that both work with Spirit's init.
enum PowerCommand {
    static func signal(for command: String) -> CInt {
        switch command {
        case "poweroff": SIGUSR2
        case "halt": SIGUSR1
        default: SIGTERM
        }
    }

    static func run(_ command: String, _ arguments: [String]) -> Int32 {
        let console = Console.tool
        guard arguments.isEmpty else {
            return Usage.fail("\(command) takes no arguments")
        }
        do {
            try Kernel.kill(1, signal(for: command))
            return 0
        } catch {
            console.error("\(error)")
            return 111
        }
    }
}
