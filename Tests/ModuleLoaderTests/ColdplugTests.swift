@testable import ModuleLoader
import Testing

@Suite struct UnclaimedDeviceTests {
    /// What `spirit modules missing` saw in QEMU's pc machine: the VGA has
    /// no module in the initramfs, nor the PIIX4's power management
    /// function; the e1000 is claimed; a USB stick's module is there; the
    /// rest are the firmware's descriptions and the chipset's bridges.
    static let devices: [Coldplug.Device] = [
        .init(path: "/sys/devices/pci0000:00/0000:00:02.0", modalias: "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00", hasDriver: false),
        .init(path: "/sys/devices/pci0000:00/0000:00:03.0", modalias: "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", hasDriver: true),
        .init(path: "/sys/devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0", modalias: "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", hasDriver: false),
        .init(path: "/sys/devices/LNXSYSTM:00", modalias: "acpi:LNXSYSTM:", hasDriver: false),
        .init(path: "/sys/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A03:00", modalias: "acpi:PNP0A03:", hasDriver: false),
        .init(path: "/sys/devices/platform/pcspkr", modalias: "platform:pcspkr", hasDriver: false),
        .init(path: "/sys/devices/system/cpu", modalias: "cpu:type:x86,ven0000fam0006mod0006:feature:,0000,0001", hasDriver: false),
        .init(path: "/sys/devices/virtual/dmi/id", modalias: "dmi:bvnSeaBIOS:bvr1.16.2:svnQEMU:pnStandardPC(i440FX+PIIX,1996):", hasDriver: false),
        .init(path: "/sys/devices/platform/serial8250", modalias: "platform:serial8250", hasDriver: true),
        .init(path: "/sys/devices/pci0000:00/0000:00:00.0", modalias: "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00", hasDriver: false),
        .init(path: "/sys/devices/pci0000:00/0000:00:01.0", modalias: "pci:v00008086d00007000sv00001AF4sd00001100bc06sc01i00", hasDriver: false),
        .init(path: "/sys/devices/pci0000:00/0000:00:01.3", modalias: "pci:v00008086d00007113sv00001AF4sd00001100bc06sc80i00", hasDriver: false),
    ]

    @Test func onlyDevicesADriverCouldClaimAreMissing() {
        let unclaimed = Coldplug.unclaimed(Self.devices) { $0.hasPrefix("usb:") ? ["usb_storage"] : [] }
        #expect(unclaimed.needingDriver.map(\.path) == ["/sys/devices/pci0000:00/0000:00:02.0", "/sys/devices/pci0000:00/0000:00:01.3"])
        #expect(unclaimed.needingNone.map(\.path) == ["/sys/devices/LNXSYSTM:00", "/sys/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A03:00",
                                                      "/sys/devices/platform/pcspkr", "/sys/devices/system/cpu",
                                                      "/sys/devices/virtual/dmi/id", "/sys/devices/pci0000:00/0000:00:00.0",
                                                      "/sys/devices/pci0000:00/0000:00:01.0"])
    }

    @Test func aFirmwareNodeWithAModuleIsNeitherMissingNorCounted() {
        // A module that matches (pcspkr) is what coldplug loads: not this list's business.
        let unclaimed = Coldplug.unclaimed(Self.devices) { $0 == "platform:pcspkr" ? ["pcspkr"] : [] }
        #expect(!unclaimed.needingNone.contains { $0.modalias == "platform:pcspkr" })
        #expect(unclaimed.needingDriver.count == 3)
    }
}

@Suite struct USBMassStorageTests {
    @Test func interfaceClassEightIsMassStorage() {
        #expect(Coldplug.isUSBMassStorage("usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"))
        #expect(!Coldplug.isUSBMassStorage("usb:v046Dp C52Bd1201dc00dsc00dp00ic03isc01ip01in00"))
        #expect(!Coldplug.isUSBMassStorage("usb:v1D6Bp0003d0601dc09dsc00dp03ic09isc00ip00in00"))
        #expect(!Coldplug.isUSBMassStorage("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"))
    }
}
