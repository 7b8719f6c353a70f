import BootCascade
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
