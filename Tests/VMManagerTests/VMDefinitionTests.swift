import SpiritCore
import Testing
import VMManager

@Suite struct VMDefinitionTests {
    static let windows = """
        # The Windows install on the NVMe disk, as a VM.
        memory-mib = 8192
        cpus = 4
        machine = "q35"
        firmware = "uefi-secure"
        tpm = true
        agent = "isa-serial"
        os = "windows"
        vga = "std"

        [disk.system]
        path = "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_1TB_S467NX0M"
        format = "raw"
        bus = "ahci"

        [network]
        mode = "user"
        model = "e1000e"

        [gpu]
        devices = ["0000:01:00.0", "0000:01:00.1"]

        [input]
        evdev = ["/dev/input/by-id/usb-kbd-event-kbd", "/dev/input/by-id/usb-mouse-event-mouse"]
        """

    static let testvm = """
        memory-mib = 256
        machine = "pc"
        accel = "tcg"
        agent = "virtio-serial"
        kernel = "/cache/vmlinuz"
        initrd = "/cache/guest.cpio.zst"
        append = "console=ttyS0 quiet"
        vga = "none"

        [disk.data]
        path = "/cache/data.raw"
        bus = "ide"
        """

    static let paths = VMPaths(root: "/t")

    @Test func aWindowsDefinition() throws {
        let vm = try VMDefinition.parse(Self.windows, path: "/etc/spirit/vms/windows.toml")
        #expect(vm.name == "windows" && vm.memoryMiB == 8192 && vm.cpus == 4)
        #expect(vm.firmware == .uefiSecure && vm.tpm && vm.agent == .isaSerial && vm.os == .windows)
        #expect(vm.ovmfCode == "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd" && vm.ovmfVars == "/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
        #expect(vm.disks == [.init(name: "system", path: "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_1TB_S467NX0M", format: .raw, bus: .ahci, overlay: true, readOnly: false)])
        #expect(vm.gpuDevices == ["0000:01:00.0", "0000:01:00.1"])
        #expect(vm.input?.grabToggle == "ctrl-scrolllock")
        #expect(vm.accelerator == "kvm:tcg")
    }

    @Test func defaults() throws {
        let vm = try VMDefinition.parse("", path: "/etc/spirit/vms/small.toml")
        #expect(vm.memoryMiB == 1024 && vm.cpus == 1 && vm.machine == "q35" && vm.firmware == .bios && !vm.tpm)
        #expect(vm.agent == .virtioSerial && vm.os == .linux && vm.network.mode == .none && vm.disks.isEmpty)
    }

    @Test(arguments: [
        ("memory-mib = \"lots\"", "/v/x.toml:1: memory-mib: expected an integer, found a string"),
        ("memory-mib = 4", "/v/x.toml:1: memory-mib: 4 is out of range (16–1048576)"),
        ("\nfirmware = \"efi\"", "/v/x.toml:2: firmware: 'efi' is not one of bios, uefi, uefi-secure"),
        ("machine = \"pc\"\nfirmware = \"uefi-secure\"", "/v/x.toml:2: firmware: Secure Boot needs machine = \"q35\" (SMM)"),
        ("colour = \"red\"", "/v/x.toml:1: colour: unknown field"),
        ("[disk.a]\nformat = \"raw\"", "/v/x.toml:1: disk.a.path: a disk needs a path"),
        ("[disk.a]\npath = \"disk.img\"", "/v/x.toml:2: disk.a.path: 'disk.img' is not an absolute path"),
        ("[disk.a]\npath = \"/d\"\nbus = \"scsi\"", "/v/x.toml:3: disk.a.bus: 'scsi' is not one of virtio, ahci, ide"),
        ("[disk.a]\npath = \"/d\"\nsize = 3", "/v/x.toml:3: disk.a.size: not a disk field (bus, format, overlay, path, read-only)"),
        ("[gpu]\ndevices = [\"01:00.0\"]", "/v/x.toml:2: gpu.devices: '01:00.0' is not a PCI address (0000:01:00.0)"),
        ("agent = \"vsock\"", "/v/x.toml:1: agent: 'vsock' is not one of virtio-serial, isa-serial, none"),
        ("tpm = true", "/v/x.toml:1: tpm: a TPM is for UEFI guests (firmware = \"uefi\" or \"uefi-secure\")"),
        ("append = \"quiet\"", "/v/x.toml:1: append: only with kernel = \"…\" (direct kernel boot)"),
        ("[sound]\nmodel = \"hda\"", "/v/x.toml:2: sound.model: unknown field"),
    ])
    func errorsNameFileLineAndField(text: String, message: String) {
        #expect(throws: ConfigError.self) { try VMDefinition.parse(text, path: "/v/x.toml") }
        do {
            _ = try VMDefinition.parse(text, path: "/v/x.toml")
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func theNameIsTheFiles() {
        #expect(throws: ConfigError(path: "/v/Bad Name.toml", line: 1, field: "name",
                                    "'Bad Name' is not a VM name: the file is NAME.toml, NAME in a-z, 0-9, '-' and '_', at most 32")) {
            try VMDefinition.parse("", path: "/v/Bad Name.toml")
        }
    }

    @Test func goldenWindowsCommandLine() throws {
        let vm = try VMDefinition.parse(Self.windows, path: "/etc/spirit/vms/windows.toml")
        let argv = QEMUCommandLine.arguments(vm, instance: Self.paths.instance("windows"))
        let d = "/t/run/spirit/vms/windows"
        #expect(argv == [
            "/usr/bin/qemu-system-x86_64", "-name", "guest=windows", "-no-user-config", "-nodefaults",
            "-machine", "q35,accel=kvm:tcg,smm=on", "-m", "8192", "-smp", "4", "-display", "none", "-vga", "std",
            "-pidfile", "\(d)/qemu.pid", "-qmp", "unix:\(d)/qmp.sock,server=on,wait=off",
            "-chardev", "socket,id=console0,path=\(d)/console.sock,server=on,wait=off,logfile=\(d)/console.log,logappend=on",
            "-serial", "chardev:console0", "-rtc", "base=localtime",
            "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            "-drive", "if=pflash,format=raw,unit=1,file=/t/var/lib/spirit/vms/windows/OVMF_VARS.fd",
            "-chardev", "socket,id=tpm0-chr,path=\(d)/swtpm.sock", "-tpmdev", "emulator,id=tpm0,chardev=tpm0-chr",
            "-device", "tpm-crb,tpmdev=tpm0",
            "-drive", "if=none,id=disk-system,file=\(d)/disk-system.qcow2,format=qcow2",
            "-device", "ide-hd,drive=disk-system,bus=ide.0,bootindex=0",
            "-netdev", "user,id=net0", "-device", "e1000e,netdev=net0",
            "-chardev", "socket,id=agent0,path=\(d)/agent.sock,server=on,wait=off", "-device", "isa-serial,chardev=agent0,index=1",
            "-device", "vfio-pci,host=0000:01:00.0", "-device", "vfio-pci,host=0000:01:00.1",
            "-object", "input-linux,id=input0,evdev=/dev/input/by-id/usb-kbd-event-kbd,grab_all=on,repeat=on,grab-toggle=ctrl-scrolllock",
            "-object", "input-linux,id=input1,evdev=/dev/input/by-id/usb-mouse-event-mouse",
        ])
        #expect(QEMUCommandLine.overlayCreation(vm.disks[0], Self.paths.instance("windows")) ==
                ["/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", vm.disks[0].path, "\(d)/disk-system.qcow2"])
        #expect(QEMUCommandLine.tpmCommand(Self.paths.instance("windows")) ==
                ["/usr/bin/swtpm", "socket", "--tpm2", "--tpmstate", "dir=/t/var/lib/spirit/vms/windows/tpm",
                 "--ctrl", "type=unixio,path=\(d)/swtpm.sock", "--terminate"])
    }

    @Test func goldenTestGuestCommandLineAndItsRestore() throws {
        let vm = try VMDefinition.parse(Self.testvm, path: "/etc/spirit/vms/testvm.toml")
        let d = "/t/run/spirit/vms/testvm"
        let start = QEMUCommandLine.arguments(vm, instance: Self.paths.instance("testvm"))
        #expect(start == [
            "/usr/bin/qemu-system-x86_64", "-name", "guest=testvm", "-no-user-config", "-nodefaults",
            "-machine", "pc,accel=tcg", "-m", "256", "-smp", "1", "-display", "none", "-vga", "none",
            "-pidfile", "\(d)/qemu.pid", "-qmp", "unix:\(d)/qmp.sock,server=on,wait=off",
            "-chardev", "socket,id=console0,path=\(d)/console.sock,server=on,wait=off,logfile=\(d)/console.log,logappend=on",
            "-serial", "chardev:console0",
            "-kernel", "/cache/vmlinuz", "-initrd", "/cache/guest.cpio.zst", "-append", "console=ttyS0 quiet",
            "-drive", "if=none,id=disk-data,file=\(d)/disk-data.qcow2,format=qcow2", "-device", "ide-hd,drive=disk-data,bus=ide.0",
            "-device", "virtio-serial-pci,id=agent-serial0",
            "-chardev", "socket,id=agent0,path=\(d)/agent.sock,server=on,wait=off",
            "-device", "virtserialport,bus=agent-serial0.0,chardev=agent0,name=org.qemu.guest_agent.0",
        ])
        let restore = QEMUCommandLine.arguments(vm, instance: Self.paths.instance("testvm"), incoming: true)
        #expect(restore == start + ["-incoming", "defer"])
    }

    @Test func plainUEFIAndAnAHCIDiskOnPC() throws {
        let vm = try VMDefinition.parse("machine = \"pc\"\nfirmware = \"uefi\"\n[disk.a]\npath = \"/a.qcow2\"\nformat = \"qcow2\"\nbus = \"ahci\"\noverlay = false\nread-only = true\n",
                                        path: "/v/u.toml")
        let argv = QEMUCommandLine.arguments(vm, instance: VMPaths().instance("u"))
        #expect(!argv.contains("-global"))
        #expect(argv.contains("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"))
        #expect(argv.contains("if=none,id=disk-a,file=/a.qcow2,format=qcow2,readonly=on"))
        #expect(argv.contains("ahci,id=ahci0") && argv.contains("ide-hd,drive=disk-a,bus=ahci0.0,bootindex=0"))
    }
}

@Suite struct DiskSafetyTests {
    static let mountinfo = """
        22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/run/lower
        36 22 259:3 / /mnt/windows rw,relatime - fuseblk /dev/nvme0n1p3 rw,user_id=0
        37 22 8:1 / /media/usb\\040stick rw - vfat /dev/sdb1 rw
        """

    @Test func aMountedPartitionRefusesTheDisk() {
        let why = DiskSafety.refusal(disk: "/dev/disk/by-id/nvme-x", device: "/dev/nvme0n1",
                                     partitions: ["/dev/nvme0n1p1", "/dev/nvme0n1p2", "/dev/nvme0n1p3"], mountinfo: Self.mountinfo)
        #expect(why == "the disk /dev/disk/by-id/nvme-x is mounted in Spirit (/dev/nvme0n1p3 on /mnt/windows): unmount it first, two systems must not write one disk")
    }

    @Test func ntfsAndItsHibernationMark() {
        var sector = [UInt8](repeating: 0, count: 512)
        sector.replaceSubrange(0..<11, with: [0xEB, 0x52, 0x90] + Array("NTFS    ".utf8))
        #expect(DiskSafety.isNTFS(bootSector: sector))
        sector.replaceSubrange(3..<11, with: Array("MSDOS5.0".utf8))
        #expect(!DiskSafety.isNTFS(bootSector: sector))
        #expect(!DiskSafety.isNTFS(bootSector: [0xEB, 0x52]))
        #expect(DiskSafety.isHibernated(hiberfileHead: Array("HIBR".utf8) + [0, 0]))
        #expect(DiskSafety.isHibernated(hiberfileHead: Array("wake".utf8)))
        #expect(!DiskSafety.isHibernated(hiberfileHead: [0, 0, 0, 0]))
        #expect(!DiskSafety.isHibernated(hiberfileHead: Array("hib".utf8)))
    }

    @Test func anUnmountedDiskIsFree() {
        #expect(DiskSafety.refusal(disk: "/dev/sda", device: "/dev/sda", partitions: ["/dev/sda1"], mountinfo: Self.mountinfo) == nil)
        #expect(DiskSafety.mounts(of: "/dev/sdb", partitions: ["/dev/sdb1"], mountinfo: Self.mountinfo).map(\.mountPoint) == ["/media/usb stick"])
    }
}
