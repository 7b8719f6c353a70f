import Glibc
import SpiritCore

/// The network for the HTTP (and Nodus) source: every Ethernet-like
/// interface up, DHCP on all of them at once with busybox's udhcpc, the
/// first lease wins. udhcpc configures the interface through the script
/// the initramfs carries (scripts/udhcpc.script), which also writes the
/// lease where this reads it.
public struct Network: Sendable {
    public var sys = "/sys"
    public var udhcpc = "/sbin/udhcpc"
    public var ip = "/sbin/ip"
    public var script = "/etc/spirit/udhcpc.script"
    public var leaseDirectory = "/run/spirit/net"

    public init() {}

    /// What `crom.network.timeout` gives a source that needs the network:
    /// the link and a lease within it, no server silent for longer
    /// (`idleMillis`), and the whole source within three times it and 2 s
    /// more (link and lease, then one silent answer and a retry).
    public static func sourceTimes(timeoutSeconds: Int) -> (idleMillis: Int, sourceMicros: Int64) {
        let seconds = Int64(max(timeoutSeconds, 1))
        return (Int(seconds) * 1000, seconds * 3_000_000 + 2_000_000)
    }

    /// The network up for a source: within one idle time, never past the
    /// source's own deadline.
    public func up(_ context: SourceContext, idleMillis: Int) throws -> Lease {
        try up(deadline: min(context.deadline, Kernel.bootTimeMicros() + Int64(idleMillis) * 1000), context: context)
    }

    /// What DHCP gave an interface.
    public struct Lease: Sendable, Equatable, CustomStringConvertible {
        public var interface: String
        public var address: String
        public var router: String?
        public var dns: [String]

        public var description: String {
            "\(interface) has \(address)" + (router.map { ", router \($0)" } ?? "") + (dns.isEmpty ? "" : ", DNS \(dns.joined(separator: " "))")
        }

        /// The script's lease file: `key=value` lines (interface, ip, mask, router, dns).
        public static func parse(_ text: String) -> Lease? {
            var values: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                values[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            guard let interface = values["interface"], let ip = values["ip"], !ip.isEmpty else { return nil }
            let address = values["mask"].map { ip + "/" + $0 } ?? ip
            return Lease(interface: interface, address: address, router: values["router"].flatMap { $0.isEmpty ? nil : $0 },
                         dns: (values["dns"] ?? "").split(separator: " ").map(String.init))
        }
    }

    /// The interfaces DHCP can run on: not loopback, not virtual bridges
    /// or tunnels (those have no `device` link in sysfs).
    public func interfaces() -> [String] {
        Kernel.listDirectory(sys + "/class/net").filter(isCard)
    }

    /// Sets the link of `name` up (`ip link set NAME up`): its
    /// autonegotiation starts. Setting up a link that is up changes nothing.
    public func setUp(_ name: String) {
        _ = try? Spawn.run(ip, ["ip", "link", "set", name, "up"])
    }

    /// Whether a uevent's interface is one DHCP can run on (as `interfaces`).
    public func isCard(_ name: String) -> Bool {
        name != "lo" && Kernel.exists(sys + "/class/net/\(name)/device")
    }

    /// One DHCP run per boot worker: the HTTP and Nodus sources both need
    /// the network and run at once; the second waits for the first's result.
    final class Shared: @unchecked Sendable {
        static let instance = Shared()
        let monitor = Monitor()
        var running = false
        var result: Result<Lease, SpiritError>?
    }

    /// The first lease any interface gets by `deadline`, or why none did.
    /// Sources that run at once share one DHCP run and its answer.
    public func up(deadline: Int64, context: SourceContext) throws -> Lease {
        let shared = Shared.instance
        let mine: Bool = shared.monitor.withLock {
            while shared.running && Kernel.bootTimeMicros() < deadline { shared.monitor.wait(untilBootMicros: deadline) }
            if shared.running || shared.result != nil { return false }
            shared.running = true
            return true
        }
        if !mine {
            guard let result = shared.monitor.withLock({ shared.result }) else {
                throw SpiritError("no network: another source's DHCP run did not end by the deadline")
            }
            return try result.get()
        }
        let result: Result<Lease, SpiritError>
        do {
            result = .success(try bringUp(deadline: deadline, context: context))
        } catch {
            result = .failure(error as? SpiritError ?? SpiritError("\(error)"))
        }
        shared.monitor.withLock {
            shared.running = false
            shared.result = result
        }
        shared.monitor.broadcast()
        return try result.get()
    }

    func bringUp(deadline: Int64, context: SourceContext) throws -> Lease {
        try Kernel.makeDirectory(leaseDirectory, parents: true)
        let devices = context.devices
        let run = DHCPRun(network: self, deadline: deadline, cancel: context.cancel, console: context.console, devices: devices)
        // The interfaces there now start at once; those of NIC drivers that
        // coldplug or uevents load later join once devices have settled
        // (not later than a quarter of the time), unless a lease came first.
        run.start(interfaces())
        // (A lease wakes this wait: the run calls `devices.wakeAll`.)
        let now = Kernel.bootTimeMicros()
        _ = devices.waitUntilSettled(deadline: now + (deadline - now) / 4, stopping: { run.hasLease })
        if !run.hasLease { run.start(interfaces()) }
        guard run.started else {
            throw SpiritError("no network interface (no driver found a network card; 'spirit modules missing' lists devices without one)")
        }
        return try run.lease()
    }

    /// DHCP on every interface at once; the first lease wins. Each link is
    /// set up and its client started at once; a client started before its
    /// link had a carrier (autonegotiation takes from a fraction of a
    /// second to seconds) starts again when the carrier comes. Each
    /// interface's thread alone starts, signals and reaps its client, so no
    /// signal can reach a pid already reaped.
    final class DHCPRun: @unchecked Sendable {
        let network: Network
        let deadline: Int64
        let cancel: CancelFlag
        let console: Console
        let devices: DeviceActivity
        let began = Kernel.bootTimeMicros()
        let monitor = Monitor()
        var names: Set<String> = []
        var running = 0
        var winner: Lease?
        var failures: [String] = []
        /// lease() has answered: a client still running stops.
        var over = false

        init(network: Network, deadline: Int64, cancel: CancelFlag, console: Console, devices: DeviceActivity) {
            self.network = network
            self.deadline = deadline
            self.cancel = cancel
            self.console = console
            self.devices = devices
        }

        var started: Bool { monitor.withLock { !names.isEmpty } }
        var hasLease: Bool { monitor.withLock { winner != nil } }

        /// Those of `interfaces` not started yet, each on its own thread.
        func start(_ interfaces: [String]) {
            let new: [String] = monitor.withLock {
                let new = interfaces.filter { !names.contains($0) }
                names.formUnion(new)
                running += new.count
                return new
            }
            for name in new {
                console.debug("network: \(name) set up; DHCP on it")
                network.setUp(name)
                Threads.detach { self.run(name) }
            }
        }

        /// The first lease, once one came; or why none did, once every client ended.
        func lease() throws -> Lease {
            try monitor.withLock {
                // udhcpc gives up by itself at the deadline; 5 s more is a backstop.
                while winner == nil && running > 0 && Kernel.bootTimeMicros() < deadline + 5_000_000 {
                    monitor.wait(untilBootMicros: deadline + 5_000_000)
                }
                over = true
                if let winner { return winner }
                let still = running > 0 ? ["\(running) DHCP client(s) still running past the deadline"] : []
                throw SpiritError("no network: " + (failures.sorted() + still).joined(separator: "; "))
            }
        }

        func run(_ name: String) {
            let outcome = dhcp(name)
            monitor.withLock {
                running -= 1
                switch outcome {
                case .success(let lease) where winner == nil:
                    winner = lease
                case .success:
                    break
                case .failure(let reason):
                    failures.append("\(name): \(reason)")
                }
            }
            monitor.broadcast()
            // bringUp may be waiting for devices to settle: a lease ends that wait.
            if case .success = outcome { devices.wakeAll() }
        }

        func carrier(_ name: String) -> Bool {
            (try? Kernel.readText(network.sys + "/class/net/\(name)/carrier"))?.trimmed == "1"
        }

        /// Why this interface's client should stop now, if it should.
        var stopReason: String? {
            let (won, late) = monitor.withLock { (winner != nil, over) }
            if won { return "stopped: another interface has a lease" }
            if late { return "stopped: the time for the network is up" }
            if cancel.isSet { return "stopped: the boot chose another source" }
            return nil
        }

        func dhcp(_ name: String) -> Result<Lease, SpiritError> {
            let leaseFile = network.leaseDirectory + "/\(name).lease"
            Kernel.remove(leaseFile)
            let seconds = max(1, Int((deadline - Kernel.bootTimeMicros()) / 1_000_000))
            var linked = carrier(name)
            func bound(_ status: ExitStatus?) -> Lease? {
                guard status == .exited(0), let text = try? Kernel.readText(leaseFile) else { return nil }
                return Lease.parse(text)
            }
            var pid: pid_t
            do {
                pid = try client(name)
            } catch {
                return .failure(SpiritError("\(error)"))
            }
            while true {
                let ended: (pid: pid_t, status: ExitStatus)?
                do {
                    ended = try Spawn.wait(pid, noHang: true)
                } catch {
                    return .failure(SpiritError("udhcpc: \(error)"))
                }
                if let ended {
                    if let lease = bound(ended.status) { return .success(lease) }
                    return .failure(SpiritError("no DHCP lease within \(seconds) s ("
                        + (linked || carrier(name) ? "link up" : "no link: cable unplugged, or no carrier") + ")"))
                }
                if let reason = stopReason {
                    try? Kernel.kill(pid, SIGTERM)
                    _ = try? Spawn.wait(pid)
                    return .failure(SpiritError(reason))
                }
                // Started before the link had a carrier, its first DISCOVER
                // went nowhere, and udhcpc would send the next only after its
                // 2 s timeout: it starts again the moment the carrier comes
                // (unless it got its lease meanwhile).
                if !linked && carrier(name) {
                    linked = true
                    console.debug("network: \(name) has a link after \((Kernel.bootTimeMicros() - began) / 1000) ms; DHCP starts again")
                    try? Kernel.kill(pid, SIGTERM)
                    if let lease = bound((try? Spawn.wait(pid))?.status) { return .success(lease) }
                    do {
                        pid = try client(name)
                    } catch {
                        return .failure(SpiritError("\(error)"))
                    }
                    continue
                }
                Kernel.sleep(milliseconds: 20)
            }
        }

        /// udhcpc on `name` with the time left.
        func client(_ name: String) throws -> pid_t {
            if let reason = stopReason { throw SpiritError(reason) }
            let seconds = max(1, Int((deadline - Kernel.bootTimeMicros()) / 1_000_000))
            // -f foreground, -q quit once bound, -n fail without a lease,
            // -t discovers 2 s apart (-T 2) to fit the time left.
            return try Spawn.spawn(network.udhcpc, ["udhcpc", "-i", name, "-f", "-q", "-n", "-t", String(max(1, seconds / 2)),
                                                    "-T", "2", "-A", "1", "-s", network.script])
        }
    }
}
