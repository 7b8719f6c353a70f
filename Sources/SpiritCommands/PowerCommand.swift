import Glibc
import SpiritCore

/// `spirit poweroff | reboot | halt`: asks PID 1 with the signal busybox's
/// applets of the same names send, so that both work with Spirit's init.
package enum PowerCommand {
    static func signal(for command: String) -> CInt {
        switch command {
        case "poweroff": SIGUSR2
        case "halt": SIGUSR1
        default: SIGTERM
        }
    }

    package static func run(_ command: String, _ arguments: [String]) -> Int32 {
        let console = Console.tool
        guard arguments.isEmpty else {
            return Usage.fail("\(command) takes no arguments")
        }
        do {
            try Kernel.kill(1, signal(for: command))
        } catch {
            console.error("\(error)")
            return 111
        }
        // The machine is going down: wait for the shutdown to end this
        // process (with every other), rather than give the shell back, whose
        // prompt would only mix with the shutdown's lines on the console.
        Kernel.sleep(milliseconds: Self.patienceMilliseconds)
        console.error("PID 1 did not \(command) within \(Self.patienceMilliseconds / 1000) s of \(Signal.name(signal(for: command)))")
        return 111
    }

    /// Longer than PID 1 gives the supervisor to stop the services.
    static let patienceMilliseconds = 300_000
}
