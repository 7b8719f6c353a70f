"""Spirit's own kernel (make kernel: Debian's linux-source-6.12 or a 6.6
tarball, x86_64_defconfig + kernel-config/) boots to `spirit: ready` with
an initramfs and a system image built for its modules. Opt-in, through
`make test-kernel`: building the kernel takes too long for every run."""

import os
import re

import pytest

from harness import Disk

pytestmark = pytest.mark.skipif(os.environ.get("SPIRIT_CUSTOM_KERNEL") != "1",
                                reason="opt-in: 'make test-kernel' boots the kernel of 'make kernel'")


def test_the_custom_kernel_boots_to_ready(boot, media_disk, system_image):
    vm = boot("", disks=[Disk(str(media_disk), id="media")])
    vm.expect(rf"^spirit: boot source=usb image={system_image['sha256'][:12]}$")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    assert vm.check("uname -r").endswith("-spirit")
    # What the fragment asks for is there: built in (no module to load)...
    filesystems = vm.check("cat /proc/filesystems")
    for fs in ["squashfs", "overlay", "iso9660", "vfat", "ext4", "tmpfs", "devtmpfs", "cgroup2", "nfs"]:
        assert re.search(rf"\b{fs}$", filesystems, re.M), f"{fs} is not in /proc/filesystems"
    # ...zram compresses with zstd (its default here) and knows lz4...
    algorithms = vm.check("cat /sys/block/zram0/comp_algorithm")
    assert "[zstd]" in algorithms and "lz4" in algorithms, algorithms
    # ...and ntfs3 (a module) loads from the system image's module tree.
    vm.check("modprobe ntfs3 && grep -w ntfs3 /proc/filesystems")
    steps = {step["step"]: step for step in vm.timeline()["steps"]}
    print(f"custom kernel: /init started at {steps['kernel']['end_ms'] if 'kernel' in steps else '?'} ms of CLOCK_BOOTTIME")
