"""The RAM root on a real kernel: a disk labelled CROM_SPIRIT, the image
copied into RAM and verified, zram + squashfs + overlay, switch_root and
stage 2; a tampered image refused."""

import re

from conftest import make_media
from harness import Disk

DISK_DEVICES = re.compile(r"^/dev/(vd|sd|sr|hd|nvme|mmcblk)")


def test_boots_into_ram_and_outlives_its_disk(boot, media_disk, system_image):
    vm = boot("", disks=[Disk(str(media_disk), id="media")])
    vm.expect(rf"^spirit: boot source=usb image={system_image['sha256'][:12]}$")
    vm.expect(r"^spirit: copying rootfs.squashfs into RAM: 100%")
    vm.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 2")
    vm.expect(r"^spirit: ready$")
    # The boot prints its timeline, with every step of the RAM root.
    summary = vm.expect(r"^spirit: timeline: (.*) \('spirit timeline' shows it all\)$").group(1)
    for step in ["kernel", "modules:storage", "cascade", "copy", "verify", "zram", "mount", "switch_root", "stage2"]:
        assert re.search(rf"\b{step} \d+", summary), f"{step} is not in the timeline: {summary}"
    vm.expect(r"spirit:/# ", partial=True)
    # PID 1 is the root's /sbin/init, spirit-init: under 1 MB at ready.
    assert vm.check("readlink /proc/1/exe") == "/sbin/init"
    memory = {key: int(value) for key, value in (line.split()[:2] for line in vm.check(
        "grep -E '^(VmRSS|RssAnon):' /proc/1/status; grep '^Pss:' /proc/1/smaps_rollup").splitlines())}
    print(f"PID 1 at ready: VmRSS {memory['VmRSS:']} kB, RssAnon {memory['RssAnon:']} kB, Pss {memory['Pss:']} kB")
    assert memory["VmRSS:"] < 1000, memory
    table = vm.check("spirit timeline")
    assert re.search(r"^copy\s+worker\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+ KiB into RAM$", table, re.M), table

    # / is the overlay, and no mount is backed by a disk: pure RAM.
    mounts = [line.split() for line in vm.check("cat /proc/mounts").splitlines()]
    root = [m for m in mounts if m[1] == "/"]
    assert root and root[-1][2] == "overlay", mounts
    assert not [m for m in mounts if DISK_DEVICES.match(m[0])], mounts
    # The virtio disk's driver came from coldplug's second look (the virtio
    # bus appears once virtio_pci is loaded).
    modules = {line.split()[0] for line in vm.check("cat /proc/modules").splitlines()}
    assert "virtio_blk" in modules
    # Stage 2's modules service gave QEMU's VGA (1234:1111) the image's
    # driver, which the initramfs does not carry; no device is left without
    # a driver that the image has.
    assert "bochs" in modules, modules
    status, missing = vm.run("spirit modules missing 2>&1")
    assert status == 0 and "pci:v00001234d00001111" not in missing, missing
    by_target = {m[1]: m for m in mounts}
    assert by_target["/run/spirit/rw"][0].startswith("/dev/zram") and by_target["/run/spirit/rw"][2] == "ext4"
    assert by_target["/run/spirit/lower"][0].startswith("/dev/loop") and by_target["/run/spirit/lower"][2] == "squashfs"
    assert vm.check("cat /etc/os-release | grep ^NAME=") == 'NAME="Crom-OS Spirit"'
    # The rescue tools of stage 1 are on stage 2's PATH too.
    for tool in ["spirit-diag", "spirit-mount", "spirit-fetch", "spirit-usb", "spirit-net"]:
        assert vm.check(f"command -v {tool}") == f"/bin/{tool}", tool
    assert "== block devices" in vm.check("spirit-diag")

    # The timeline has every step of the RAM root, in order.
    steps = [step["step"] for step in vm.timeline()["steps"]]
    expected = ["modules:storage", "modules:coldplug", "cascade", "copy", "verify", "zram", "mount", "switch_root", "stage2",
                "supervisor", "stage2-modules:graphics", "service:modules", "ready"]
    assert [s for s in steps if s in expected] == expected, steps
    # The hypervisor's modules (kvm, and kvm_amd for QEMU's CPU with SVM)
    # claim no device: they load once the modules service is ready, after
    # the graphics driver the HUD waits for, not before it (a kernel with
    # KVM built in has none to load).
    if vm.run("grep -q '/kvm/kvm.ko' /lib/modules/$(uname -r)/modules.dep")[0] == 0:
        vm.check("for i in $(seq 150); do grep -q stage2-modules:hypervisor /run/spirit/timeline.json && break; sleep 0.2; done")
        timed = {step["step"]: step for step in vm.timeline()["steps"]}
        hypervisor = timed["stage2-modules:hypervisor"]
        assert hypervisor["ok"] and hypervisor["start_ms"] >= timed["stage2-modules:graphics"]["end_ms"], timed
        assert hypervisor["start_ms"] >= timed["stage2-modules:coldplug"]["end_ms"], timed
        vm.check("test -e /dev/kvm")

    # A file written under / lands in zram.
    before = int(vm.check("awk '{print $1}' /sys/block/zram0/mm_stat"))
    vm.check("dd if=/dev/urandom of=/root/blob bs=1M count=4 2>/dev/null && sync")
    after = int(vm.check("awk '{print $1}' /sys/block/zram0/mm_stat"))
    assert after >= before + (4 << 20), (before, after)
    assert vm.check("cat /run/spirit/rw/upper/root/blob | wc -c") == str(4 << 20)

    # The disk goes away; the system does not notice.
    answer = vm.qmp("device_del", id="media-dev")
    assert "error" not in answer, answer
    vm.check("for i in 1 2 3 4 5 6 7 8 9 10; do test -e /sys/block/vda || break; sleep 1; done; ! test -e /sys/block/vda")
    assert vm.check("ls /bin/busybox && echo ALIVE-$((40+2))").endswith("ALIVE-42")

    # The console shell comes back when it exits.
    vm.send("exit\n")
    vm.expect(r"^Enter 'help' for a list of built-in commands.$")
    vm.expect(r"spirit:/# ", partial=True)
    assert vm.check("echo again") == "again"

    # spirit poweroff from stage 2: the same shutdown path, QEMU exits 0.
    vm.send("spirit poweroff\n")
    vm.expect(r"^spirit: shutdown: poweroff, asked by SIGUSR2")
    vm.expect(r"^spirit: shutdown: every process stopped, .*; poweroff now$")
    assert vm.wait_exit(60) == 0
    # The console shell left on SIGTERM + SIGHUP: nothing waited for SIGKILL.
    assert "get SIGKILL" not in vm.console, f"a process outlived SIGTERM and SIGHUP; log: {vm.log_path}"


def test_tampered_image_is_refused(boot, tmp_path, system_image):
    tampered = tmp_path / "rootfs.squashfs"
    data = bytearray(system_image["image"].read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    disk = make_media(tmp_path, {"rootfs.squashfs": tampered, "manifest.json": system_image["manifest"]})

    vm = boot("", disks=[Disk(str(disk))])
    vm.expect(r"^spirit: boot source=usb image=")
    # The image is refused and the cascade goes on (no other source here):
    # the rescue lists the usb source's reason.
    mismatch = (r"the image does not match its manifest: the image's SHA-256 is [0-9a-f]{64}, "
                rf"the manifest says {system_image['sha256']}")
    vm.expect(r"^spirit: warning: usb: /dev/vda \(ext4, CROM_SPIRIT\): refused: " + mismatch + "; going on with the cascade$")
    vm.expect(r"^spirit: usb: /dev/vda \(ext4, CROM_SPIRIT\): " + mismatch + "$")
    vm.expect(r"^spirit: rescue: no system image found \(tried parasite, usb, http, nodus\)$")
    vm.expect(r"^spirit: rescue shell on ")
    # Nothing of the refused image is left mounted, and its RAM is given back.
    mounts = vm.check("cat /proc/mounts")
    assert "/run/spirit/image" not in mounts and "/sysroot" not in mounts and "/run/spirit/media" not in mounts, mounts
    steps = {step["step"]: step for step in vm.timeline()["steps"]}
    assert steps["verify"]["ok"] is False and "mount" not in steps, steps
    # zram was set up beside the copy; the failed check undid it too.
    assert steps["zram"]["ok"] is False and steps["zram"]["detail"].endswith("undone: the verify phase failed"), steps["zram"]
    assert "/run/spirit/rw" not in mounts, mounts
    assert vm.check("cat /sys/block/zram0/disksize") == "0"


def test_vfat_stick_tmpfs_upper_with_zram_swap_and_no_console(boot, vfat_media_disk):
    vm = boot("crom.upper=tmpfs crom.console=off crom.break=switch_root crom.ram.limit=256",
              disks=[Disk(str(vfat_media_disk))])
    vm.expect(r"^spirit: boot source=usb image=")
    vm.expect(r"^spirit: break before switch_root: shell on ")
    swaps = vm.check("cat /proc/swaps")
    assert re.search(r"^/dev/zram0\s+partition\s+262140", swaps, re.M), swaps
    mounts = {line.split()[1]: line.split() for line in vm.check("cat /proc/mounts").splitlines()}
    assert mounts["/run/spirit/rw"][2] == "tmpfs" and "size=262144k" in mounts["/run/spirit/rw"][3], mounts["/run/spirit/rw"]
    assert mounts["/sysroot"][2] == "overlay"
    vm.send("exit\n")
    vm.expect(r"^spirit: ready$")
    # crom.console=off: no shell is started on the console.
    vm.expect_absent(r"spirit:/# ", 8, partial=True)
