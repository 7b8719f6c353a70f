import Glibc
import Nodus
import Overlay
import SpiritCommands
import SpiritCore
import Supervisor
import SystemPackage

/// `spiritctl` (also `spirit ctl`): asks the supervisor through its control
/// socket, prints the answer; `timeline`, `poweroff` and `reboot` need no
/// supervisor.
enum ControlCommand {
    static let usage = """
    usage: spiritctl [--json] [--root DIR | --socket PATH] COMMAND
      status [SERVICE]          every service (or one): state, pid, restarts, since when, why;
                                after a streaming boot, how much of the image is in RAM
      start SERVICE             start it (and what it requires); clears a failure; reads a new service file
      stop SERVICE              stop it (and what requires it)
      restart SERVICE           stop it, then start it
      logs SERVICE [-f] [-n N]  its last N lines (default 50); -f follows new ones
      timeline                  the boot timeline, with each service's start
      sentinel [explain ID]     the Sentinel's incidents (rule, service, state, decision), or one explained
      poweroff | reboot         stop the services, then every process, and power off or restart
    Exit codes: 0 success, 100 usage error or unknown service, 111 system failure.
    """

    /// `spiritctl: <message>` on stderr: the tool's name, as s6's tools do.
    static func complain(_ message: String) {
        FileHandleless.writeError("spiritctl: " + message + "\n")
    }

    static func fail(_ message: String) -> Int32 {
        complain(message)
        FileHandleless.writeError(usage + "\n")
        return 100
    }

    static func run(_ arguments: [String]) -> Int32 {
        var json = false
        var socket = SupervisorPaths().control
        var root = ""
        var words: [String] = []
        var follow = false
        var lines = 50
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            switch argument {
            case "--json": json = true
            case "-f", "--follow": follow = true
            case "-n":
                guard let value = rest.popFirst(), let count = Int(value), count >= 0 else { return fail("-n takes a number of lines") }
                lines = count
            case "--root":
                guard let value = rest.popFirst() else { return fail("--root takes a DIR") }
                root = value
                socket = SupervisorPaths(root: value).control
            case "--socket":
                guard let value = rest.popFirst() else { return fail("--socket takes a PATH") }
                socket = value
            case "-h", "--help", "help":
                print(usage)
                return 0
            default:
                if argument.hasPrefix("-") { return fail("unknown option '\(argument)'") }
                words.append(argument)
            }
        }
        guard let command = words.first else { return fail("no command") }
        let operands = Array(words.dropFirst())
        switch command {
        case "poweroff", "reboot":
            guard operands.isEmpty else { return fail("\(command) takes no SERVICE") }
            return PowerCommand.run(command, [])
        case "sentinel":
            return SentinelCommand.control(operands, json: json, root: root)
        case "timeline":
            guard operands.isEmpty else { return fail("timeline takes no SERVICE") }
            let path = Timeline(directory: SupervisorPaths(root: root).run, process: "").documentPath
            if json {
                do {
                    print(String(decoding: try Kernel.readFile(path), as: UTF8.self), terminator: "")
                    return 0
                } catch {
                    complain("\(error)")
                    return 111
                }
            }
            return TimelineCommand.run([path])
        default:
            break
        }
        guard let kind = ControlRequest.Command(rawValue: command) else { return fail("unknown command '\(command)'") }
        if kind == .status {
            guard operands.count <= 1 else { return fail("status takes at most one SERVICE") }
        } else {
            guard operands.count == 1 else { return fail("\(command) takes one SERVICE") }
        }
        if let name = operands.first, !ServiceDefinition.isValidName(name) { return fail("'\(name)' is not a service name") }
        if follow && kind != .logs { return fail("-f goes with logs") }
        let request = ControlRequest(command: kind, service: operands.first, lines: lines, follow: follow, json: json)
        let status = send(request, to: socket)
        if kind == .status, operands.isEmpty, !json, let line = hydrationLine(root: root) { print(line) }
        return status
    }

    /// A streaming boot's copy into RAM (crom.nodus.stream=1), as
    /// `spirit nodus hydrate` last wrote it; nil when the boot did not stream.
    static func hydrationLine(root: String) -> String? {
        guard let bytes = try? Kernel.readFile(root + RootLayout.hydrateState) else { return nil }
        do {
            return try HydrationProgress.parse(bytes).line(now: Kernel.bootTimeMicros())
        } catch {
            return "image: \(root + RootLayout.hydrateState): \(error)"
        }
    }

    /// Sends one request; copies the answer's body to stdout as it comes.
    static func send(_ request: ControlRequest, to socket: String) -> Int32 {
        send(request.line, to: socket, server: "supervisor")
    }

    /// Sends one request line to a daemon's control socket (the
    /// supervisor's, the Sentinel's); copies the answer's body to stdout.
    static func send(_ line: String, to socket: String, server: String) -> Int32 {
        var written = true
        let head = ControlChannel.send(line, to: socket, server: server) { chunk in
            written = (try? chunk.withBytes { raw throws(SystemError) in try Kernel.write(1, raw, "standard output") }) != nil
            return written
        }
        switch head {
        case .ok:
            return written ? 0 : 111
        case .error(let code, let message):
            complain(message)
            return code
        }
    }
}
