"""A parasite install boots: `spirit install parasite` (on the host) puts
the media into CromSpirit\\ on an NTFS partition (mkntfs, mounted with
ntfs-3g), and a boot with the kernel line of the GRUB entry it wrote finds
the image there."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from harness import Disk

SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))


@pytest.fixture
def windows_partition(tmp_path, kernel, initramfs, system_image):
    """An NTFS filesystem with a parasite install made by `spirit install
    parasite`; returns the image and the installed files, copied out."""
    image = tmp_path / "windows.img"
    with open(image, "wb") as f:
        f.truncate(system_image["image"].stat().st_size + (64 << 20))
    subprocess.run(["mkntfs", "-q", "-F", "-f", "-L", "Windows", str(image)], check=True, capture_output=True)
    media = tmp_path / "media"
    media.mkdir()
    for name, source in [("kernel", kernel), ("initramfs.zst", initramfs),
                         ("rootfs.squashfs", system_image["image"]), ("manifest.json", system_image["manifest"])]:
        shutil.copyfile(source, media / name)
    mount = tmp_path / "c"
    mount.mkdir()
    device = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True).stdout.strip()
    installed = tmp_path / "installed"
    try:
        subprocess.run(["ntfs-3g", device, str(mount)], check=True)
        try:
            result = subprocess.run([str(SPIRIT), "install", "parasite", str(mount), "--media", str(media)],
                                    capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            shutil.copytree(mount / "CromSpirit", installed)
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
    return image, installed


def test_the_grub_entry_of_a_parasite_install_boots_it(boot_firmware, windows_partition, system_image):
    image, installed = windows_partition
    grub = (installed / "40_custom").read_text()
    linux = re.search(r"^\s*linux /CromSpirit/kernel (.*)$", grub, re.M)
    initrd = re.search(r"^\s*initrd /CromSpirit/(\S+)$", grub, re.M)
    assert linux and initrd, grub
    vm = boot_firmware(kernel=str(installed / "kernel"), initrd=str(installed / initrd.group(1)),
                       append=f"console=ttyS0 {linux.group(1)}", disks=[Disk(str(image))])
    vm.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 1")
    outcome = vm.expect(r"^spirit: boot source=(\S+) image=(\w+)$")
    assert (outcome.group(1), outcome.group(2)) == ("parasite", system_image["sha256"][:12]), outcome.group(0)
    vm.expect(r"^spirit: ready$")
