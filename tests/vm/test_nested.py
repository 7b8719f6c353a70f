"""`make test-nested` (opt-in: about ten minutes of TCG inside TCG; skipped
unless SPIRIT_NESTED=1): Spirit on q35 with an emulated Intel IOMMU and the
vm layer stacked at boot gives its e1000 to a VM with `spirit gpu
passthrough VM`; the VM (Debian's kernel and busybox, QEMU from the layer,
TCG inside TCG) drives the e1000 through vfio-pci and gets a DHCP lease from
the outer QEMU's user network: DMA through VFIO works. When the inner guest
powers off, the VM manager gives the e1000 back to Spirit, which gets a
lease on it again."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_media
from harness import Disk
from test_gpu import EXTRA, NIC, driver
from test_layers import vm_layer  # noqa: F401  (a fixture)

pytestmark = pytest.mark.skipif(os.environ.get("SPIRIT_NESTED") != "1", reason="opt-in: make test-nested")

KERNEL_DIR = Path(os.environ.get("SPIRIT_KERNEL_DIR", ROOT / ".cache/debian-kernel/current"))

# The inner guest: the e1000 driver, a lease, a line on its console, off.
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /e1000.ko
ip link set eth0 up
if udhcpc -i eth0 -n -q -t 20 -s /bin/true 2>&1 | tee /dev/console | grep -q 'lease of'; then
    echo "nested-guest: leased through vfio-pci"
else
    echo "nested-guest: no lease"
fi
poweroff -f
"""


def inner_initramfs(directory: Path) -> Path:
    release = (KERNEL_DIR / "release").read_text().strip()
    tree = directory / "inner"
    (tree / "bin").mkdir(parents=True)
    for name in ["proc", "sys", "dev"]:
        (tree / name).mkdir()
    shutil.copy("/bin/busybox", tree / "bin/busybox")
    shutil.copy(KERNEL_DIR / "lib/modules" / release / "kernel/drivers/net/ethernet/intel/e1000/e1000.ko", tree / "e1000.ko")
    (tree / "init").write_text(INIT)
    (tree / "init").chmod(0o755)
    image = directory / "inner.cpio.gz"
    subprocess.run(f"find . | cpio -o -H newc --quiet | gzip -1 > {image}", shell=True, cwd=tree, check=True)
    return image


def test_a_nested_vm_gets_a_dhcp_lease_through_the_e1000_on_vfio(boot, tmp_path, system_image, vm_layer):  # noqa: F811
    disk = make_media(tmp_path, {
        "rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"],
        "layers/vm.squashfs": vm_layer["image"], "layers/vm.json": vm_layer["manifest"],
        "nested/vmlinuz": KERNEL_DIR / "vmlinuz", "nested/inner.cpio.gz": inner_initramfs(tmp_path),
    })
    vm = boot("intel_iommu=on crom.layers=vm", disks=[Disk(str(disk), id="media")], extra_args=EXTRA, memory_mib=1536)
    vm.expect(r"^spirit: ready$", timeout=300)
    vm.expect(r"spirit:/# ", partial=True)
    # The HUD's drawing costs CPU the nested TCG needs.
    vm.check("spiritctl stop nexus")
    # The media disk is not mounted after the boot: the inner guest's files from it, into RAM.
    vm.check("mkdir -p /mnt/media /tmp/nested; for d in /dev/vd?; do mount -o ro $d /mnt/media 2>/dev/null && "
             "test -d /mnt/media/nested && break; umount /mnt/media 2>/dev/null; done; "
             "cp /mnt/media/nested/* /tmp/nested/ && umount /mnt/media")
    definition = ['memory-mib = 160', 'machine = "pc"', 'accel = "tcg"', 'agent = "none"', 'vga = "none"',
                  'kernel = "/tmp/nested/vmlinuz"', 'initrd = "/tmp/nested/inner.cpio.gz"',
                  'append = "console=ttyS0 quiet panic=-1"', '[gpu]', f'devices = ["{NIC}"]']
    vm.check("printf '%s\\n' " + " ".join(f"'{line}'" for line in definition) + " > /tmp/nested.toml")
    vm.check("spirit vm define /tmp/nested.toml")
    started = time.monotonic()
    out = vm.check("spirit gpu passthrough nested 2>&1", timeout=180)
    assert driver(vm, NIC) == "vfio-pci", out
    print(out)

    deadline = time.monotonic() + 900
    log = ""
    while "nested-guest:" not in log:
        assert time.monotonic() < deadline, log[-2000:]
        time.sleep(10)
        log = vm.check("cat /run/spirit/vms/nested/console.log 2>/dev/null; true")
    assert "nested-guest: leased through vfio-pci" in log, log[-2000:]
    assert re.search(r"lease of 10\.0\.2\.\d+ obtained", log), log[-2000:]
    print(f"the inner guest's lease {time.monotonic() - started:.0f} s after the passthrough")

    # It powered off: the VM manager gives the e1000 back to Spirit.
    while driver(vm, NIC) != "e1000":
        assert time.monotonic() < deadline, vm.check("spirit gpu status; spirit vm list")
        time.sleep(2)
    interface = vm.check(f"ls /sys/bus/pci/devices/{NIC}/net").split()[-1]
    vm.check(f"ip link set {interface} up")
    lease = vm.check(f"udhcpc -i {interface} -n -q -t 10 -s /bin/true 2>&1", timeout=120)
    assert re.search(r"lease of 10\.0\.2\.\d+ obtained", lease), lease
