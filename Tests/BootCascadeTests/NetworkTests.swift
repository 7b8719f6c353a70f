@testable import BootCascade
import Glibc
import SpiritCore
import Testing

/// The DHCP client's lease file (scripts/udhcpc.script writes it).
@Suite struct NetworkTests {
    @Test func leases() {
        let lease = Network.Lease.parse("interface=eth0\nip=10.0.2.15\nmask=24\nrouter=10.0.2.2\ndns=10.0.2.3\n")
        #expect(lease?.description == "eth0 has 10.0.2.15/24, router 10.0.2.2, DNS 10.0.2.3")
        #expect(Network.Lease.parse("interface=eth0\n") == nil)
    }
}

/// DHCP on every interface at once (Network.DHCPRun) against a fake /sys
/// and a fake udhcpc: a shell script that answers per interface.
@Suite(.serialized) struct DHCPRunTests {
    final class FakeMachine: @unchecked Sendable {
        let path: String
        var network = Network()

        /// `udhcpc` is the fake client's body: $1 is the interface, $LEASES
        /// the lease directory, $STARTS a file it may count its starts in.
        init(interfaces: [String: String], udhcpc body: String) throws {
            var template = Array("/tmp/spirit-dhcp-XXXXXX".utf8CString)
            path = String(cString: mkdtemp(&template)!)
            for (name, carrier) in interfaces {
                try Kernel.makeDirectory(path + "/sys/class/net/\(name)/device", parents: true)
                try Kernel.writeFile(path + "/sys/class/net/\(name)/carrier", carrier + "\n")
            }
            try Kernel.writeFile(path + "/udhcpc", """
                #!/bin/sh
                # udhcpc -i NAME …: the interface is the second argument.
                LEASES=\(path)/leases STARTS=\(path)/starts-$2
                set -- "$2"
                echo started >> "$STARTS"
                \(body)

                """, mode: 0o755)
            network.sys = path + "/sys"
            network.udhcpc = path + "/udhcpc"
            network.ip = "/bin/true"
            network.leaseDirectory = path + "/leases"
        }
        deinit { _ = system("rm -rf '\(path)'") }

        func carrier(_ name: String, _ value: String) throws {
            try Kernel.writeFile(path + "/sys/class/net/\(name)/carrier", value + "\n")
        }

        func starts(_ name: String) -> Int {
            ((try? Kernel.readText(path + "/starts-\(name)")) ?? "").split(separator: "\n").count
        }

        func bringUp(seconds: Int64 = 6) throws -> Network.Lease {
            let context = SourceContext(deadline: Kernel.bootTimeMicros() + seconds * 1_000_000, console: Console(kmsgPath: nil, output: 2),
                                        devices: DeviceActivity(listening: false), cancel: CancelFlag())
            return try network.bringUp(deadline: context.deadline, context: context)
        }
    }

    static let grant = #"printf 'interface=%s\nip=10.0.2.15\nmask=24\n' "$1" > "$LEASES/$1.lease"; exit 0"#

    @Test func theFirstLeaseWinsAndTheOtherClientStops() throws {
        let machine = try FakeMachine(interfaces: ["eth0": "1", "eth1": "1"], udhcpc: """
            if [ "$1" = eth0 ]; then sleep 0.2; \(Self.grant); fi
            exec sleep 30
            """)
        let started = Kernel.bootTimeMicros()
        let lease = try machine.bringUp()
        #expect(lease.description == "eth0 has 10.0.2.15/24")
        // eth1's client was stopped, not waited for.
        #expect(Kernel.bootTimeMicros() - started < 3_000_000)
    }

    @Test func aClientStartedBeforeTheCarrierStartsAgainWhenItComes() throws {
        // The first start's DISCOVER is lost (no carrier): it would wait; the second gets a lease.
        let machine = try FakeMachine(interfaces: ["eth0": "0"], udhcpc: """
            if [ "$(wc -l < "$STARTS")" -ge 2 ]; then \(Self.grant); fi
            exec sleep 30
            """)
        try Threads.start {
            Kernel.sleep(milliseconds: 300)
            try? machine.carrier("eth0", "1")
        }
        let started = Kernel.bootTimeMicros()
        #expect(try machine.bringUp().interface == "eth0")
        #expect(machine.starts("eth0") == 2)
        #expect(Kernel.bootTimeMicros() - started < 3_000_000)
    }

    @Test func aLeaseTakenJustAsTheCarrierCameIsKept() throws {
        // The first client binds at once although the carrier reads 0 (it
        // woke the link), and exits 0 as the carrier comes: not started again.
        let machine = try FakeMachine(interfaces: ["eth0": "0"], udhcpc: """
            printf 'interface=%s\\nip=10.0.2.15\\n' "$1" > "$LEASES/$1.lease"
            trap 'exit 0' TERM
            sleep 30 & wait
            """)
        try Threads.start {
            Kernel.sleep(milliseconds: 300)
            try? machine.carrier("eth0", "1")
        }
        #expect(try machine.bringUp().interface == "eth0")
        #expect(machine.starts("eth0") == 1)
    }

    @Test func everyFailureIsNamedWithItsLink() throws {
        let machine = try FakeMachine(interfaces: ["eth0": "1", "eth1": "0"], udhcpc: "exit 1")
        let error = try #require(throws: SpiritError.self) { try machine.bringUp(seconds: 4) }
        #expect("\(error)" == "no network: eth0: no DHCP lease within 3 s (link up); eth1: no DHCP lease within 3 s (no link: cable unplugged, or no carrier)")
    }

    @Test func noInterfaceIsSaid() throws {
        let machine = try FakeMachine(interfaces: [:], udhcpc: "exit 1")
        try Kernel.makeDirectory(machine.path + "/sys/class/net/lo", parents: true)
        let error = try #require(throws: SpiritError.self) { try machine.bringUp() }
        #expect("\(error)".hasPrefix("no network interface"))
    }
}
