import Dispatch
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
        Kernel.listDirectory(sys + "/class/net").filter { name in
            name != "lo" && Kernel.exists(sys + "/class/net/\(name)/device")
        }
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
        // The NIC drivers come from coldplug and uevents: wait for devices
        // to settle, not longer than a quarter of the time.
        let now = Kernel.bootTimeMicros()
        _ = context.devices.waitUntilSettled(deadline: now + (deadline - now) / 4)
        let names = interfaces()
        guard !names.isEmpty else {
            throw SpiritError("no network interface (no driver found a network card; 'spirit modules missing' lists devices without one)")
        }
        try Kernel.makeDirectory(leaseDirectory, parents: true)
        let seconds = max(1, Int((deadline - Kernel.bootTimeMicros()) / 1_000_000))
        let attempts = max(1, seconds / 2)
        final class Outcome: @unchecked Sendable {
            let monitor = Monitor()
            var lease: Lease?
            var failures: [String] = []
            var pids: [pid_t] = []
        }
        let outcome = Outcome()
        for name in names {
            Kernel.remove(leaseDirectory + "/\(name).lease")
            _ = try? Spawn.run(ip, ["ip", "link", "set", name, "up"])
        }
        DispatchQueue.concurrentPerform(iterations: names.count) { index in
            let name = names[index]
            let pid: pid_t
            do {
                // -f foreground, -q quit once bound, -n fail without a lease,
                // -t discovers 2 s apart (-T 2) to fit the timeout.
                pid = try Spawn.spawn(udhcpc, ["udhcpc", "-i", name, "-f", "-q", "-n", "-t", String(attempts), "-T", "2",
                                               "-A", "1", "-s", script])
            } catch {
                outcome.monitor.withLock { outcome.failures.append("\(name): \(error)") }
                return
            }
            outcome.monitor.withLock { outcome.pids.append(pid) }
            let status = (try? Spawn.wait(pid))??.status
            let leaseText = try? Kernel.readText(leaseDirectory + "/\(name).lease")
            outcome.monitor.withLock {
                if status == .exited(0), let text = leaseText, let lease = Lease.parse(text) {
                    if outcome.lease == nil {
                        outcome.lease = lease
                        // The first lease wins: the other clients stop.
                        for other in outcome.pids where other != pid { try? Kernel.kill(other, SIGTERM) }
                    }
                } else if outcome.lease == nil {
                    let carrier = (try? Kernel.readText(sys + "/class/net/\(name)/carrier"))?.trimmed
                    let link = carrier == "1" ? "link up" : "no link (cable unplugged, or no carrier)"
                    outcome.failures.append("\(name): no DHCP lease within \(seconds) s (\(link))")
                }
            }
            if context.cancel.isSet { return }
        }
        if let lease = outcome.monitor.withLock({ outcome.lease }) { return lease }
        throw SpiritError("no network: " + outcome.monitor.withLock { outcome.failures.sorted() }.joined(separator: "; "))
    }
}
