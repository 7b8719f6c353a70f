/// The QEMU command line a definition stands for: pure, so that the whole
/// argv is checked by golden tests. The same arguments start a VM and
/// restore it (a migration stream loads only into identical devices); a
/// restore adds `-incoming defer` and nothing else.
public enum QEMUCommandLine {
    /// The disk files QEMU opens: the overlay in RAM when the disk has one.
    public static func driveFile(_ disk: VMDefinition.Disk, _ instance: VMPaths.Instance) -> (path: String, format: String) {
        disk.overlay ? (instance.overlay(disk.name), "qcow2") : (disk.path, disk.format.rawValue)
    }

    public static func arguments(_ vm: VMDefinition, instance: VMPaths.Instance, incoming: Bool = false) -> [String] {
        var machine = "\(vm.machine),accel=\(vm.accelerator)"
        if vm.firmware == .uefiSecure { machine += ",smm=on" }
        var argv = [vm.qemu, "-name", "guest=\(vm.name)", "-no-user-config", "-nodefaults",
                    "-machine", machine, "-m", "\(vm.memoryMiB)", "-smp", "\(vm.cpus)",
                    "-display", "none", "-vga", vm.vga,
                    "-pidfile", instance.pidFile,
                    "-qmp", "unix:\(instance.qmpSocket),server=on,wait=off",
                    "-chardev", "socket,id=console0,path=\(instance.consoleSocket),server=on,wait=off,logfile=\(instance.consoleLog),logappend=on",
                    "-serial", "chardev:console0"]
        if vm.os == .windows { argv += ["-rtc", "base=localtime"] }
        switch vm.firmware {
        case .bios:
            break
        case .uefi, .uefiSecure:
            if vm.firmware == .uefiSecure { argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"] }
            argv += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(vm.ovmfCode)",
                     "-drive", "if=pflash,format=raw,unit=1,file=\(instance.ovmfVars)"]
        }
        if vm.tpm {
            argv += ["-chardev", "socket,id=tpm0-chr,path=\(instance.tpmSocket)",
                     "-tpmdev", "emulator,id=tpm0,chardev=tpm0-chr",
                     "-device", "\(vm.machine == "q35" ? "tpm-crb" : "tpm-tis"),tpmdev=tpm0"]
        }
        if let kernel = vm.kernel {
            argv += ["-kernel", kernel]
            if let initrd = vm.initrd { argv += ["-initrd", initrd] }
            if let append = vm.append { argv += ["-append", append] }
        }
        var ahciBus = false
        for (index, disk) in vm.disks.enumerated() {
            let (file, format) = driveFile(disk, instance)
            let id = "disk-\(disk.name)"
            argv += ["-drive", "if=none,id=\(id),file=\(file),format=\(format)\(disk.readOnly ? ",readonly=on" : "")"]
            switch disk.bus {
            case .virtio:
                argv += ["-device", "virtio-blk-pci,drive=\(id)\(index == 0 && vm.kernel == nil ? ",bootindex=0" : "")"]
            case .ahci, .ide:
                // q35's ICH9 is an AHCI controller (buses ide.0…ide.5); pc
                // has PIIX IDE, and an AHCI controller only if added.
                if disk.bus == .ahci, vm.machine == "pc", !ahciBus {
                    argv += ["-device", "ahci,id=ahci0"]
                    ahciBus = true
                }
                let bus = disk.bus == .ahci && vm.machine == "pc" ? "ahci0.\(index)" : "ide.\(vm.machine == "pc" ? index / 2 : index)"
                argv += ["-device", "ide-hd,drive=\(id),bus=\(bus)\(index == 0 && vm.kernel == nil ? ",bootindex=0" : "")"]
            }
        }
        switch vm.network.mode {
        case .none: break
        case .user: argv += ["-netdev", "user,id=net0", "-device", "\(vm.network.model),netdev=net0"]
        }
        switch vm.agent {
        case .none:
            break
        case .virtioSerial:
            argv += ["-device", "virtio-serial-pci,id=agent-serial0",
                     "-chardev", "socket,id=agent0,path=\(instance.agentSocket),server=on,wait=off",
                     "-device", "virtserialport,bus=agent-serial0.0,chardev=agent0,name=org.qemu.guest_agent.0"]
        case .isaSerial:
            // COM2 (ttyS1, 0x2f8): COM1 is the console.
            argv += ["-chardev", "socket,id=agent0,path=\(instance.agentSocket),server=on,wait=off",
                     "-device", "isa-serial,chardev=agent0,index=1"]
        }
        for device in vm.gpuDevices {
            argv += ["-device", "vfio-pci,host=\(device)"]
        }
        if let input = vm.input {
            for (index, device) in input.evdev.enumerated() {
                // The first device (the keyboard) carries the grab toggle.
                let extra = index == 0 ? ",grab_all=on,repeat=on,grab-toggle=\(input.grabToggle)" : ""
                argv += ["-object", "input-linux,id=input\(index),evdev=\(device)\(extra)"]
            }
        }
        if incoming { argv += ["-incoming", "defer"] }
        return argv
    }

    /// `qemu-img create` of a disk's overlay: a qcow2 in RAM whose backing
    /// file is the disk, which is then only read.
    public static func overlayCreation(_ disk: VMDefinition.Disk, _ instance: VMPaths.Instance, qemuImg: String = "/usr/bin/qemu-img") -> [String] {
        [qemuImg, "create", "-q", "-f", "qcow2", "-F", disk.format.rawValue, "-b", disk.path, instance.overlay(disk.name)]
    }

    /// swtpm for a VM with `tpm = true`: a TPM 2.0 whose state stays in the
    /// VM's persistent directory (BitLocker and Windows Hello keep keys there).
    public static func tpmCommand(_ instance: VMPaths.Instance, swtpm: String = "/usr/bin/swtpm") -> [String] {
        [swtpm, "socket", "--tpm2", "--tpmstate", "dir=\(instance.tpmState)",
         "--ctrl", "type=unixio,path=\(instance.tpmSocket)", "--terminate"]
    }
}
