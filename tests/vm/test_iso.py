"""The hybrid ISO (make iso) boots by itself, with no -kernel: GRUB from
the firmware, the kernel and initramfs from the ISO, and the system image
from the same ISO found by its label, CROM_SPIRIT. As a CD under SeaBIOS,
as a CD under OVMF (UEFI), and written to a USB stick under SeaBIOS."""

import json
import re
import shutil

from harness import Disk
from test_nexus import assert_hud, screen

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd"
# Firmware, GRUB's 5 s menu and loading 60 MB through the BIOS under TCG on
# a shared machine: generous.
BOOT_TIMEOUT = 400


def reaches_ready(vm, system_image) -> None:
    """GRUB's menu on the serial port, its default entry, then the boot from
    the ISO's own files to stage 2."""
    for entry in ["Spirit", "Spirit (debug)", "Spirit rescue", "Spirit from the network (HTTP)",
                  "Spirit from the network (Nodus peers)"]:
        vm.expect(re.escape(entry), BOOT_TIMEOUT, partial=True)
    vm.expect(r"spirit: loading the kernel and the initramfs$", BOOT_TIMEOUT)
    vm.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 1", BOOT_TIMEOUT)
    vm.expect(rf"^spirit: boot source=usb image={system_image['sha256'][:12]}$", BOOT_TIMEOUT)
    vm.expect(r"^spirit: ready$", BOOT_TIMEOUT)
    vm.expect(r"spirit:/# ", BOOT_TIMEOUT, partial=True)
    cmdline = vm.check("cat /proc/cmdline")
    assert "console=tty0" in cmdline and "console=ttyS0" in cmdline and "crom.mode" not in cmdline, cmdline


def test_iso_boots_as_a_cd_under_seabios(boot_firmware, iso, system_image):
    vm = boot_firmware(disks=[Disk(str(iso), interface="cdrom", bootindex=0)])
    reaches_ready(vm, system_image)
    # The CD's drivers came from the initramfs (Debian's kernel has them as
    # modules): ata_piix for the IDE controller, sr_mod + cdrom, isofs.
    modules = vm.check("cut -d' ' -f1 /proc/modules")
    for module in ["ata_piix", "sr_mod", "cdrom", "isofs"]:
        assert module in modules.split(), f"{module} not loaded: {modules}"
    # The medium is not mounted any more: the system runs from RAM.
    assert "/dev/sr0" not in vm.check("cat /proc/mounts")
    assert vm.check("cat /sys/block/sr0/device/model 2>/dev/null || echo none") != "none"


def test_iso_boots_as_a_cd_under_uefi(boot_firmware, iso, system_image, tmp_path):
    vm = boot_firmware(uefi_code=OVMF_CODE, uefi_vars=OVMF_VARS,
                       disks=[Disk(str(iso), interface="cdrom", bootindex=0)])
    reaches_ready(vm, system_image)
    # Booted through UEFI: the kernel sees the EFI system table.
    assert vm.check("test -d /sys/firmware/efi && echo efi") == "efi"
    # The HUD starts beside the modules service while the firmware's
    # framebuffer card (simpledrm, on the platform bus) is there: it waits
    # for the GPU's own card (bochs-drm, on PCI), which replaces that one,
    # and is still drawing there, not left on a card that went away.
    steps = {step["step"]: step for step in vm.timeline()["steps"]}
    assert "bochs" in steps["nexus:first-frame"]["detail"], steps["nexus:first-frame"]
    services = {s["name"]: s for s in json.loads(vm.check("spiritctl --json status"))["services"]}
    assert services["nexus"]["state"] == "running" and services["nexus"]["ready"], services["nexus"]
    assert services["nexus"]["restarts"] == 0, services["nexus"]
    # (The HUD's own process, as its timeline step names it: the service's
    # process is its sandbox's.)
    hud = steps["nexus:first-frame"]["pid"]
    held = vm.check(f"ls -l /proc/{hud}/fd | grep -o '/dev/dri/card[0-9]*' | sort -u").split()
    log = vm.answer("spiritctl logs nexus")
    print("the HUD's log under UEFI:\n" + log)
    assert held, "the HUD holds no DRM card open; its log: " + log
    for card in held:
        driver = vm.check(f"basename $(readlink /sys/class/drm/{card.rsplit('/', 1)[1]}/device/driver)")
        assert driver == "bochs-drm", f"the HUD holds {card}, driven by {driver}"
    # And the screen shows it: the dashboard, not a blank or black screen.
    _, _, pixels = screen(vm, tmp_path, "uefi")
    assert_hud(pixels, "the HUD under UEFI")


def test_iso_written_to_a_usb_stick_boots_under_seabios(boot_firmware, iso, system_image, tmp_path):
    stick = tmp_path / "stick.img"
    shutil.copyfile(iso, stick)  # what `dd if=crom-spirit.iso of=/dev/sdX` writes
    with open(stick, "ab") as f:
        f.truncate(256 << 20)  # a stick is larger than the image
    vm = boot_firmware(disks=[Disk(str(stick), interface="usb", bootindex=0)])
    reaches_ready(vm, system_image)
    modules = vm.check("cut -d' ' -f1 /proc/modules").split()
    for module in ["xhci_pci", "usb_storage", "sd_mod", "isofs"]:
        assert module in modules, f"{module} not loaded: {modules}"
    # The kernel reads the ISO's partition table (GPT: the ISO data, the
    # EFI image) on the stick; nothing of it stays mounted.
    partitions = vm.check("ls /sys/block/sda").split()
    assert "sda1" in partitions and "sda2" in partitions, partitions
    assert "/dev/sd" not in vm.check("cat /proc/mounts")
