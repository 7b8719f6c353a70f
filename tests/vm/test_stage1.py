"""Stage 1 on a real kernel: PID 1, the early mounts, the flags, the break
shell, reaping, a crashing worker, the rescue shell and the shutdown path.
Each boot checks several things: a TCG boot costs seconds."""

import re

import pytest

PANIC = re.compile(r"Kernel panic|Attempted to kill init")


def assert_no_panic(vm):
    match = PANIC.search(vm.console)
    assert not match, f"the kernel panicked: {match.group(0)}; log: {vm.log_path}"


def test_break_shell_orphans_crash_and_poweroff(boot):
    vm = boot("crom.debug=1 crom.bogus=2 crom.ram.limit=abc crom.http=\"http://mirror.example/spirit/\" crom.break=cascade",
              nics=["user,model=e1000"])

    # PID 1 is Spirit's init and says so.
    vm.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 1, kernel \S+$")
    # Bad flags: named, with the value used instead; the boot goes on.
    vm.expect(r"^spirit: warning: crom.bogus=2: unknown flag, ignored")
    vm.expect(r"^spirit: warning: crom.ram.limit=abc: expected a whole number of MiB above 0; using no limit$")
    # crom.debug=1 echoes the parsed flags, quoting resolved.
    flags = vm.expect(r"^spirit: debug: flags: (.*)$").group(1).split()
    assert "crom.debug=1" in flags and "crom.ram.limit=(none)" in flags and "crom.break=cascade" in flags
    assert "crom.http=http://mirror.example/spirit/" in flags
    vm.expect(r"^spirit: modules: \d+ loaded")
    vm.expect(r"^spirit: break before cascade: shell on /dev/ttyS0")

    # A shell on the serial console that answers.
    vm.send("echo OK-$((6*7))\n")
    vm.expect(r"^OK-42$")

    # PID 1 is spirit-init, under 1 MB, and the early mounts are there.
    assert vm.check("readlink /proc/1/exe") == "/init"
    assert int(vm.check("awk '/^VmRSS/ {print $2}' /proc/1/status")) < 1000
    mounts = {tuple(line.split()[1:3]) for line in vm.check("cat /proc/mounts").splitlines()}
    for target, fstype in [("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs"), ("/dev/pts", "devpts"),
                           ("/dev/shm", "tmpfs"), ("/run", "tmpfs")]:
        assert (target, fstype) in mounts, f"{target} ({fstype}) is not mounted: {sorted(mounts)}"

    # The boot list is loaded, and the drivers of the devices there (found
    # by coldplug: the PIIX disk controller, the e1000 NIC), not the drivers
    # of hardware this VM lacks (no virtio device, no other NIC).
    modules = {line.split()[0] for line in vm.check("cat /proc/modules").splitlines()}
    assert {"squashfs", "overlay", "zram", "loop", "ata_piix", "e1000"} <= modules, modules
    assert not {"virtio_pci", "r8169", "igb", "e1000e"} & modules, modules
    # The boot media's filesystems and the listed storage drivers are
    # carried, not loaded, on a machine without such media or devices.
    assert not {"vfat", "isofs", "ntfs3", "fuse", "nvme", "ahci", "usb_storage"} & modules, modules
    # They load at the first mount that needs them: the kernel asks
    # busybox's modprobe for the filesystem and the character sets it is
    # mounted with (code page 437, utf8), for spirit-mount and busybox's
    # mount alike.
    vm.check("dd if=/dev/zero of=/run/fat.img bs=1M count=8 2>/dev/null && mkdosfs /run/fat.img >/dev/null"
             " && losetup /dev/loop7 /run/fat.img")
    assert vm.check("spirit-mount /dev/loop7") == "mounted loop7 (vfat) read-only on /mnt/loop7"
    modules = {line.split()[0] for line in vm.check("cat /proc/modules").splitlines()}
    assert {"vfat", "fat", "nls_cp437", "nls_utf8"} <= modules, modules
    vm.check("umount /mnt/loop7 && rmmod vfat fat && mkdir -p /mnt/again && mount -t vfat -o ro,iocharset=utf8 /dev/loop7 /mnt/again"
             " && grep -q ' /mnt/again vfat ' /proc/mounts && umount /mnt/again && losetup -d /dev/loop7")
    # They came from the initramfs's binary index (modules.spirit): the
    # worker said nothing of falling back to the text files, and `spirit
    # modules` answers from it without them.
    assert "binary module index" not in vm.console, vm.log_path
    assert vm.check("spirit modules lookup --binary-index fs-squashfs 2>&1") == "fs-squashfs\tsquashfs"
    # /bin/spirit here is the boot binary (out/spirit-boot): of a command of
    # a running system it says that it is not in the initramfs.
    status, out = vm.run("spirit vm list 2>&1")
    assert status == 100 and "'spirit vm' is not in the initramfs" in out, out

    # Devices left without a driver are listed with their modalias: QEMU's
    # VGA (the initramfs carries no graphics driver), not the e1000 NIC
    # (its driver claimed it).
    status, missing = vm.run("spirit modules missing 2>&1")
    assert status == 0 and re.search(r"^spirit: \d+ device\(s\) without a driver", missing, re.M), missing
    assert re.search(r"^/sys/devices/pci\S+\tpci:v00001234d00001111", missing, re.M), missing
    assert "pci:v00008086d0000100E" not in missing, missing
    # ACPI and platform nodes and the chipset's host and ISA bridges need no
    # driver: counted, not listed as missing.
    assert not re.search(r"\t(acpi|platform|cpu|dmi):|bc06sc0[01]", missing), missing
    assert re.search(r"^spirit: \d+ ACPI, platform and CPU node\(s\) and PCI host and ISA bridge\(s\) without a driver: "
                     r"none needed$", missing, re.M), missing

    # The timeline so far: the kernel, the runtime's start and PID 1's
    # mounts, the worker's steps; each step starts where the one before ended
    # or later.
    steps = vm.timeline()["steps"]
    names = [step["step"] for step in steps]
    assert names[:4] == ["kernel", "runtime", "early-mounts", "flags"], names
    # The module steps: the priority groups in order (storage and network
    # as one step), then coldplug; the virtualization group waits for stage
    # 2 (nothing here needs kvm).
    module_steps = [name for name in names if name.startswith("modules:")]
    assert module_steps[0] in ("modules:storage", "modules:storage+network") and "modules:virtualization" not in module_steps, names
    assert not {"kvm", "kvm_amd", "kvm_intel", "vfio_pci"} & {line.split()[0] for line in vm.check("cat /proc/modules").splitlines()}
    assert module_steps[-1] == "modules:coldplug", names
    for before, step in zip(steps, steps[1:]):
        assert 0 <= step["start_ms"] <= step["end_ms"], step
        assert step["start_ms"] >= before["end_ms"], (before, step)
    assert steps[0]["process"] == "kernel" and steps[1]["pid"] == 1 and steps[2]["pid"] == 1

    # An orphan is handed to PID 1 and reaped: no zombie is left.
    orphan = vm.check("sh -c 'sleep 2 >/dev/null & echo $!'")
    assert vm.check(f"awk '/^PPid:/ {{print $2}}' /proc/{orphan}/status") == "1"
    vm.check("sleep 4")
    status, _ = vm.run(f"test -e /proc/{orphan}")
    assert status != 0, f"process {orphan} is still in /proc after it ended (a zombie)"
    assert vm.check("grep -l '^State:.*Z' /proc/[0-9]*/status || true") == ""

    # The worker crashes: PID 1 names the signal and opens the rescue shell.
    vm.send("kill -SEGV $(cat /run/spirit/worker.pid)\n")
    vm.expect(r"^spirit: rescue: the boot worker was killed by SIGSEGV \(Segmentation fault\)$")
    vm.expect(r"^spirit: rescue shell on /dev/ttyS0")
    vm.send("echo OK-$((6*7))\n")
    vm.expect(r"^OK-42$")
    assert_no_panic(vm)

    # poweroff (busybox's, which signals PID 1) stops the VM cleanly.
    vm.send("poweroff\n")
    vm.expect(r"^spirit: shutdown: poweroff, asked by SIGUSR2")
    vm.expect(r"^spirit: shutdown: every process stopped, .*; poweroff now$")
    assert vm.wait_exit(60) == 0
    assert_no_panic(vm)


def test_boot_goes_on_after_break_and_rescue_retries(boot):
    vm = boot("crom.break=modules crom.modules=no_such_module,loop")
    vm.expect(r"^spirit: break before modules: shell on /dev/ttyS0")
    # Before the modules step nothing of the boot list is loaded.
    assert "squashfs" not in vm.check("cat /proc/modules")
    vm.send("exit\n")
    vm.expect(r"^spirit: break shell exited with status 0; going on with modules$")
    vm.expect(r"^spirit: warning: module no_such_module: not found for kernel \S+; skipped$")
    vm.expect(r"^spirit: modules: \d+ loaded, .* 1 not found$")
    # Today no boot source exists: the boot ends in the rescue shell, saying so.
    vm.expect(r"^spirit: rescue: no system image found")
    vm.expect(r"^spirit: rescue shell on ")
    steps = [step["step"] for step in vm.timeline()["steps"]]
    assert steps[-2:] == ["modules:coldplug", "cascade"], steps
    cascade = vm.timeline()["steps"][-1]
    assert cascade["ok"] is False and "no system image found" in cascade["detail"]

    # Leaving the rescue shell tries the boot again.
    vm.send("exit\n")
    vm.expect(r"^spirit: the rescue shell ended; trying the boot again$")
    # The new attempt honours crom.break again.
    vm.expect(r"^spirit: break before modules: shell on /dev/ttyS0")
    vm.send("exit\n")
    vm.expect(r"^spirit: modules: 0 loaded, \d+ already there, \d+ not for this machine, 0 failed, 1 not found$")
    vm.expect(r"^spirit: rescue: no system image found")
    vm.expect(r"^spirit: rescue shell on ")

    # reboot (SIGTERM to PID 1) takes the same shutdown path; -no-reboot
    # makes QEMU exit instead of restarting.
    vm.send("reboot\n")
    vm.expect(r"^spirit: shutdown: reboot, asked by SIGTERM")
    vm.expect(r"; reboot now$")
    assert vm.wait_exit(60) == 0
    assert_no_panic(vm)
