import Glibc
import Nexus
import SpiritCommands
import SpiritCore

/// `spirit nexus …`: the HUD (its service runs `spirit nexus`), and the
/// commands a shell uses to reach it through /run/spirit/nexus.sock.
enum NexusCommand {
    static let usage = "nexus [mode bubble|dashboard|terminals | dump | screenshot FILE.png | stats [--json] | script FILE.js]"

    static func run(_ arguments: [String]) -> Int32 {
        switch arguments.first {
        case nil:
            return watch()
        case "--serve":
            return NexusDaemon.run(console: Console(debug: BootConfig.current().debug, kmsgPath: nil))
        case "mode":
            guard arguments.count == 2, Mode(rawValue: arguments[1]) != nil else {
                return Usage.fail("nexus mode takes bubble, dashboard or terminals")
            }
            return ask("mode \(arguments[1])")
        case "dump" where arguments.count == 1:
            return ask("dump")
        case "screenshot" where arguments.count == 2:
            let path = arguments[1].hasPrefix("/") ? arguments[1] : Kernel.currentDirectory() + "/" + arguments[1]
            return ask("screenshot \(path)")
        case "stats" where arguments.count == 1 || arguments.dropFirst() == ["--json"]:
            return ask("stats")
        case "script" where arguments.count == 2:
            return script(arguments[1])
        case "help", "--help":
            print("usage: spirit \(usage)")
            return 0
        default:
            return Usage.fail("usage: spirit \(usage)")
        }
    }

    /// The service: the HUD in a child process, so that whatever ends it (a
    /// crash included) the console is put back in text mode and the screen
    /// is never left dead; the child's exit status is this one's (64: no
    /// display here), and the supervisor restarts a HUD that crashed.
    static func watch() -> Int32 {
        let signals: SignalQueue
        let child: pid_t
        do {
            try SignalQueue.blockAll()
            signals = try SignalQueue()
            child = try Spawn.spawn("/proc/self/exe", ["spirit", "nexus", "--serve"], environment: currentEnvironment())
        } catch {
            Console.tool.error("nexus: \(error)")
            return 111
        }
        while true {
            guard let (signal, _) = try? signals.next() else { continue }
            if signal == SIGCHLD, let (_, status) = (try? Spawn.wait(child, noHang: true)) ?? nil {
                if status != .exited(0), status != .exited(NexusDaemon.noDisplayExit) {
                    _ = VirtualTerminal.restoreText()
                    Console.tool.error("nexus: the HUD \(status); the console is back in text mode")
                }
                switch status {
                case .exited(let code): return code
                case .signaled(let number): return 128 + number
                }
            }
            if [SIGTERM, SIGINT, SIGHUP].contains(signal) { try? Kernel.kill(child, signal) }
        }
    }

    /// A scripted widget's lines on stdout (the HUD runs this in a process
    /// of its own); its error on stdout too, with exit status 1.
    static func script(_ path: String) -> Int32 {
        let source: String
        do {
            source = try Kernel.readText(path)
        } catch {
            print("\(error)")
            return 1
        }
        switch MuJSEngine().lines(ofScript: source, named: path) {
        case .success(let lines):
            for line in lines { print(line) }
            return 0
        case .failure(let error):
            print("\(error)")
            return 1
        }
    }

    /// Spirit's environment and the supervisor's NOTIFY_SOCKET, for the HUD.
    static func currentEnvironment() -> [String] {
        Spawn.baseEnvironment + (getenv("NOTIFY_SOCKET").map { ["NOTIFY_SOCKET=" + String(cString: $0)] } ?? [])
    }

    /// One request to the running HUD; its answer on stdout.
    static func ask(_ request: String) -> Int32 {
        let head = ControlChannel.send(request, to: NexusDaemon.controlSocket, server: "HUD (the nexus service)") { chunk in
            (try? chunk.withBytes { raw throws(SystemError) in try Kernel.write(1, raw, "standard output") }) != nil
        }
        if case .error(let code, let message) = head {
            Console.tool.error(message)
            return code
        }
        return 0
    }
}
