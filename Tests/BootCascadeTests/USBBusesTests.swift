import BootCascade
import Glibc
import SpiritCore
import Testing

/// When the USB source may give up: the hubs' settling time, and a storage
/// device still waiting for its disk, read from a fake /sys/bus/usb.
@Suite struct USBBusesTests {
    /// A /sys with /bus/usb/devices in a temporary directory.
    final class FakeSys {
        let path: String
        init() {
            var template = Array("/tmp/spirit-usb-sys-XXXXXX".utf8CString)
            path = String(cString: mkdtemp(&template)!)
        }
        deinit { _ = system("rm -rf '\(path)'") }

        func file(_ relative: String, _ text: String) throws {
            let full = path + "/bus/usb/devices/" + relative
            let directory = String(full[..<full.lastIndex(of: "/")!])
            try Kernel.makeDirectory(directory, parents: true)
            try Kernel.writeFile(full, text + "\n")
        }
    }

    @Test func noHubsGiveUpAtOnce() {
        #expect(USBBuses(hubsConnectedAt: [], storageWithoutDisk: []).givesUpAt == USBBuses.hubSettleMicros)
    }

    @Test func theLastHubSetsTheTime() {
        let buses = USBBuses(hubsConnectedAt: [2_000_000, 5_000_000, 3_000_000], storageWithoutDisk: [])
        #expect(buses.givesUpAt == 5_000_000 + USBBuses.hubSettleMicros)
    }

    @Test func aStorageDeviceWithoutItsDiskKeepsTheSourceWaiting() {
        #expect(USBBuses(hubsConnectedAt: [1], storageWithoutDisk: ["2-1:1.0"]).givesUpAt == nil)
    }

    @Test func readsHubsAndStorageFromSysfs() throws {
        let sys = FakeSys()
        // Two root hubs, connected 7 s and 6.5 s before now; an external hub
        // connected 0.2 s ago; a stick whose disk is there, and a second one
        // still waiting for usb-storage's scan.
        try sys.file("usb1/power/connected_duration", "7000")
        try sys.file("usb2/power/connected_duration", "6500")
        try sys.file("1-1/bDeviceClass", "09")
        try sys.file("1-1/power/connected_duration", "200")
        try sys.file("2-1/bDeviceClass", "00")
        try sys.file("2-1/power/connected_duration", "100")
        try sys.file("2-1:1.0/bInterfaceClass", "08")
        try sys.file("2-1:1.0/host2/target2:0:0/2:0:0:0/block/sda/size", "16384")
        try sys.file("2-2:1.0/bInterfaceClass", "08")
        try sys.file("2-2:1.0/host3/scsi_host/host3/uevent", "")
        // A keyboard: neither a hub nor storage.
        try sys.file("1-2:1.0/bInterfaceClass", "03")
        let buses = USBBuses.read(sys: sys.path, now: 10_000_000, fallback: 9_000_000)
        #expect(buses.hubsConnectedAt.sorted() == [3_000_000, 3_500_000, 9_800_000])
        #expect(buses.storageWithoutDisk == ["2-2:1.0"])
        #expect(buses.givesUpAt == nil)
    }

    @Test func aDeviceStillBeingConfiguredKeepsTheSourceWaiting() throws {
        let sys = FakeSys()
        try sys.file("usb1/power/connected_duration", "7000")
        try sys.file("1-1/bDeviceClass", "00")
        #expect(USBBuses.read(sys: sys.path, now: 10_000_000, fallback: 0).storageWithoutDisk == ["1-1"])
        // Once its interface is there, and it is not storage, it is not waited for.
        try sys.file("1-1:1.0/bInterfaceClass", "03")
        #expect(USBBuses.read(sys: sys.path, now: 10_000_000, fallback: 0).givesUpAt == 3_000_000 + USBBuses.hubSettleMicros)
    }

    @Test func aHubWithoutItsConnectionTimeCountsFromTheFallback() throws {
        let sys = FakeSys()
        try sys.file("usb1/bDeviceClass", "09")
        let buses = USBBuses.read(sys: sys.path, now: 10_000_000, fallback: 9_500_000)
        #expect(buses.givesUpAt == 9_500_000 + USBBuses.hubSettleMicros)
    }
}
