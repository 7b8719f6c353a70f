import CSpirit
import Dispatch
import SpiritCore
import Supervisor
import Testing

@Suite struct ServiceDefinitionTests {
    static let nodus = """
        # The Nodus daemon.
        command = ["/bin/spirit", "nodus", "serve",
                   "--image", "/run/spirit/image/rootfs.squashfs"]  # the image it serves
        environment = ["RUST_LOG=info", 'GREETING=a "quoted" # word']
        after = ["network"]
        restart = "always"
        ready = "notify"

        [backoff]
        initial-ms = 250
        cap-ms = 10_000

        [crash-loop]
        restarts = 4
        within-seconds = 30

        [stop]
        signal = "SIGINT"
        timeout-ms = 3000

        [log]
        max-bytes = 65536

        [cgroup]
        memory-max = "256M"
        cpu-weight = 200
        """

    @Test func aFullDefinition() throws {
        let definition = try ServiceDefinition(name: "nodus", file: try ServiceFile.parse(Self.nodus, path: "nodus.toml"))
        #expect(definition.command == ["/bin/spirit", "nodus", "serve", "--image", "/run/spirit/image/rootfs.squashfs"])
        #expect(definition.environment == ["RUST_LOG=info", "GREETING=a \"quoted\" # word"])
        #expect(definition.after == ["network"])
        #expect(definition.restart == .always && definition.readiness == .notify)
        #expect(definition.backoffInitialMicros == 250_000 && definition.backoffCapMicros == 10_000_000)
        #expect(definition.crashLoopRestarts == 4 && definition.crashLoopWindowMicros == 30_000_000)
        #expect(definition.stopSignal == SIGINT && definition.stopTimeoutMicros == 3_000_000)
        #expect(definition.logMaxBytes == 65536)
        #expect(definition.memoryMax == "268435456" && definition.cpuWeight == 200)
    }

    func error(_ text: String, name: String = "web") -> String {
        do {
            _ = try ServiceDefinition(name: name, file: try ServiceFile.parse(text, path: "/etc/spirit/services/\(name).toml"))
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func errorsNameTheFileTheLineAndTheField() {
        #expect(error("command = [\"/bin/web\"]\n\n[stop]\ntimeout-ms = \"soon\"\n")
                == "/etc/spirit/services/web.toml:4: stop.timeout-ms: expected an integer, found a string")
        #expect(error("command = [\"/bin/web\"]\nrestart = \"sometimes\"\n")
                == "/etc/spirit/services/web.toml:2: restart: 'sometimes' is not one of always, on-failure, never")
        #expect(error("command = [\"web\"]\n")
                == "/etc/spirit/services/web.toml:1: command: the first word must be the program's absolute path (\"/bin/...\")")
        #expect(error("# nothing\n")
                == "/etc/spirit/services/web.toml:1: command: missing: every service needs command = [\"/path/to/program\", \"argument\", ...]")
        #expect(error("command = [\"/bin/web\",\n  \"--port\", 80]\n")
                == "/etc/spirit/services/web.toml:1: command: an array holds only strings here (\"...\" or '...')")
        #expect(error("command = [\"/bin/web\"]\nrestrat = \"always\"\n").hasPrefix("/etc/spirit/services/web.toml:2: restrat: unknown field"))
        #expect(error("command = [\"/bin/web\"]\nenabled = yes\n")
                == "/etc/spirit/services/web.toml:2: enabled: 'yes' is not a string, an integer, a boolean or an array of strings")
        #expect(error("command = [\"/bin/web\"]\n[stop]\nsignal = \"SIGNOPE\"\n")
                == "/etc/spirit/services/web.toml:3: stop.signal: 'SIGNOPE' is not a signal name (SIGTERM, SIGINT, SIGHUP, ...)")
        #expect(error("command = [\"/bin/web\"]\nafter = [\"web\"]\n") == "/etc/spirit/services/web.toml:2: after: a service cannot wait for itself")
        #expect(error("command = [\"/bin/web\"]\nuser = \"nobody\"\nuser = \"root\"\n") == "/etc/spirit/services/web.toml:3: user: set twice")
        #expect(error("command = [\"/bin/x\"]\n", name: "Web") .contains(":1: name: 'Web' is not a service name"))
        #expect(error("command = \"/bin/web\n") == "/etc/spirit/services/web.toml:1: command: the string has no closing \"")
    }

    @Test func anExecReadinessProbe() throws {
        let text = "command = [\"/bin/ai\"]\nready = \"exec\"\nready-command = [\"/bin/spirit\", \"ai\", \"health\"]\nready-interval-ms = 250\n"
        let definition = try ServiceDefinition(name: "ai", file: try ServiceFile.parse(text, path: "ai.toml"))
        #expect(definition.readiness == .exec && definition.readyCommand == ["/bin/spirit", "ai", "health"])
        #expect(definition.readyIntervalMicros == 250_000)
        #expect(error("command = [\"/bin/web\"]\nready = \"exec\"\n") == "/etc/spirit/services/web.toml:2: ready: ready = \"exec\" needs a ready-command")
        #expect(error("command = [\"/bin/web\"]\nready-command = [\"/bin/true\"]\n")
                == "/etc/spirit/services/web.toml:2: ready-command: ready-command is for ready = \"exec\"")
        #expect(error("command = [\"/bin/web\"]\nready = \"exec\"\nready-command = [\"curl\"]\n")
                == "/etc/spirit/services/web.toml:3: ready-command: the first word must be the probe's absolute path (\"/bin/...\")")
        #expect(error("command = [\"/bin/web\"]\nready = \"http\"\n") == "/etc/spirit/services/web.toml:2: ready: 'http' is not one of notify, started, exec")
    }

    /// The `[sentinel]` table: what the Sentinel may do to the service;
    /// nothing without it, and a typo is an error like any other.
    @Test func theSentinelTable() throws {
        let file = "command = [\"/bin/web\"]\n[sentinel]\nauto-restart = [\"service-flapping\", \"oom-kill\"]\npressure-kill = true\n"
        let definition = try ServiceDefinition(name: "web", file: try ServiceFile.parse(file, path: "web.toml"))
        #expect(definition.sentinel == ServicePolicy(autoRestart: ["service-flapping", "oom-kill"], pressureKill: true))
        let plain = try ServiceDefinition(name: "web", file: try ServiceFile.parse("command = [\"/bin/web\"]\n", path: "web.toml"))
        #expect(plain.sentinel == ServicePolicy())
        #expect(error("command = [\"/bin/web\"]\n[sentinel]\npressure-kill = \"yes\"\n")
                == "/etc/spirit/services/web.toml:3: sentinel.pressure-kill: expected true or false, found a string")
        #expect(error("command = [\"/bin/web\"]\n[sentinel]\nauto-restart = [\"a rule\"]\n")
                == "/etc/spirit/services/web.toml:3: sentinel.auto-restart: 'a rule' is not a rule id (letters, digits, '-' and '_')")
        #expect(error("command = [\"/bin/web\"]\n[sentinel]\nauto-restrat = []\n").hasPrefix("/etc/spirit/services/web.toml:3: sentinel.auto-restrat: unknown field"))
    }

    /// The `[sandbox]` table and `pids-max`: what they become for the
    /// spawned child, and a mistake named like any other.
    @Test func theSandboxTable() throws {
        let file = """
            command = ["/bin/ai"]
            [cgroup]
            pids-max = 64
            [sandbox]
            no-new-privileges = true
            capabilities = ["CAP_NET_BIND_SERVICE", "syslog"]
            read-only-root = true
            writable-paths = ["/run/spirit", "/run/log"]
            read-only-paths = ["/etc"]
            private-tmp = true
            """
        let definition = try ServiceDefinition(name: "ai", file: try ServiceFile.parse(file, path: "ai.toml"))
        #expect(definition.pidsMax == 64)
        let sandbox = definition.sandbox
        #expect(sandbox.noNewPrivileges && sandbox.readOnlyRoot && sandbox.privateTmp && sandbox.needsMountNamespace)
        #expect(sandbox.capabilities == [.netBindService, .syslog])
        #expect(sandbox.capabilityMask == (1 << 10) | (1 << 34))
        #expect(sandbox.writablePaths == ["/run/spirit", "/run/log"] && sandbox.readOnlyPaths == ["/etc"])
        #expect(sandbox.summary == "no-new-privileges, keeps net_bind_service syslog, read-only / but /run/spirit /run/log, read-only /etc, private /tmp")
        #expect(sandbox.missingPaths(exists: { $0 != "/run/log" }) == ["/run/log"])

        let none = try ServiceDefinition(name: "web", file: try ServiceFile.parse("command = [\"/bin/web\"]\n[sandbox]\ncapabilities = []\n", path: "web.toml"))
        #expect(none.sandbox.capabilities == [] && none.sandbox.capabilityMask == 0 && !none.sandbox.needsMountNamespace)
        #expect(none.sandbox.summary == "no capabilities")
        let plain = try ServiceDefinition(name: "web", file: try ServiceFile.parse("command = [\"/bin/web\"]\n", path: "web.toml"))
        #expect(plain.sandbox == Sandbox() && plain.sandbox.capabilities == nil && plain.sandbox.summary == "none")

        #expect(error("command = [\"/bin/web\"]\n[sandbox]\ncapabilities = [\"net_admn\"]\n")
                == "/etc/spirit/services/web.toml:3: sandbox.capabilities: 'net_admn' is not a capability (capabilities(7): net_admin, sys_admin, …)")
        #expect(error("command = [\"/bin/web\"]\n[sandbox]\nread-only-paths = [\"etc\"]\n")
                == "/etc/spirit/services/web.toml:3: sandbox.read-only-paths: 'etc' is not an absolute path without '..'")
        #expect(error("command = [\"/bin/web\"]\n[sandbox]\nwritable-paths = [\"/run\"]\n")
                == "/etc/spirit/services/web.toml:3: sandbox.writable-paths: writable-paths are the exceptions to read-only-root = true")
        #expect(error("command = [\"/bin/web\"]\n[sandbox]\nprivate-tmp = 1\n")
                == "/etc/spirit/services/web.toml:3: sandbox.private-tmp: expected true or false, found an integer")
        #expect(error("command = [\"/bin/web\"]\n[cgroup]\npids-max = 0\n")
                == "/etc/spirit/services/web.toml:3: cgroup.pids-max: 0 is out of range (1–4194304)")
        #expect(Capability.allCases.count == 41 && Capability(name: "CHECKPOINT_RESTORE") == .checkpointRestore)
    }

    /// Each capability's name and number as the kernel's header defines them
    /// (`#define CAP_DAC_READ_SEARCH 2`), where the build machine has it.
    @Test func capabilityNamesAreTheKernels() throws {
        #expect(Capability.sysTtyConfig.name == "sys_tty_config" && Capability(name: "cap_net_bind_service") == .netBindService)
        guard let header = try? Kernel.readText("/usr/include/linux/capability.h") else { return }
        var checked = 0
        for line in header.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 3, fields[0] == "#define", fields[1].hasPrefix("CAP_"), let number = Int(fields[2]),
                  let capability = Capability(rawValue: number) else { continue }
            #expect("CAP_" + capability.name.uppercased() == fields[1])
            checked += 1
        }
        #expect(checked == Capability.allCases.count)
    }

    @Test func cyclesAreLeftOutWithAnError() {
        var a = ServiceDefinition(name: "a", command: ["/bin/a"])
        a.after = ["b"]
        a.path = "a.toml"
        var b = ServiceDefinition(name: "b", command: ["/bin/b"])
        b.requires = ["a"]
        b.path = "b.toml"
        let c = ServiceDefinition(name: "c", command: ["/bin/c"])
        let (services, errors) = ServiceDirectory.check([a, b, c])
        #expect(services.map(\.name) == ["c"])
        #expect(errors.map(\.description) == ["a.toml:1: after: a dependency cycle through a, b", "b.toml:1: after: a dependency cycle through a, b"])
    }
}

@Suite struct ControlProtocolTests {
    @Test func requestsGoThereAndBack() {
        let requests = [
            ControlRequest(command: .status),
            ControlRequest(command: .status, json: true),
            ControlRequest(command: .start, service: "nodus"),
            ControlRequest(command: .logs, service: "nodus", lines: 20, follow: true, json: false),
            ControlRequest(command: .events, follow: true, json: true),
            // Why it is stopped: `spirit gpu passthrough` gave the display to vfio-pci.
            ControlRequest(command: .stop, service: "nexus", json: true, reason: "gpu 0000:00:02.0 passed through (spirit gpu passthrough)"),
        ]
        for request in requests { #expect(ControlRequest(line: request.line) == request, "\(request.line)") }
        #expect(ControlRequest(line: "start") == nil)
        #expect(ControlRequest(line: "start ../etc") == nil)
        #expect(ControlRequest(line: "reboot now") == nil)
        // `events` streams; it names no service.
        #expect(ControlRequest(line: "events json") == nil)
        #expect(ControlRequest(line: "events nodus follow json") == nil)
        #expect(ControlRequest(line: "stop nexus because the gpu went")?.reason == "the gpu went")
    }

    /// A daemon that takes the request and never answers: a client with an
    /// idle limit (the HUD's widgets) gets an error instead of waiting for ever.
    @Test func aSilentServerIsGivenUpOn() throws {
        let path = "/tmp/spirit-control-silent-\(Kernel.pid)-\(UInt32.random(in: 0...UInt32.max)).sock"
        let listener = try Socket.listenUnix(path)
        defer { listener.close(); Kernel.remove(path) }
        let release = DispatchSemaphore(value: 0)
        // The thread that takes the connection owns it: it closes it once
        // the client has given up.
        try Threads.start {
            guard let (connection, _, _) = ControlChannel.accept(on: listener) else { return }
            release.wait()
            connection.close()
        }
        let head = ControlChannel.send("list json", to: path, server: "sentinel", idleMilliseconds: 200) { _ in true }
        release.signal()
        #expect(head == .error(code: ControlChannel.silentCode, message: "the sentinel at \(path) did not answer within 200 ms"))
    }
}
