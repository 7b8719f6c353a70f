"""scripts/mkiso.sh (make iso) on the host: two builds of the same inputs,
seconds apart, give the same bytes; the image is hybrid (BIOS and UEFI El
Torito, MBR + GPT), labelled CROM_SPIRIT, with the media files at its root.
The inputs are stand-ins: what is checked is the build, not their content
(the VM tests boot the real ISO)."""

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    directory = tmp_path_factory.mktemp("iso-inputs")
    files = []
    for name, size in [("vmlinuz", 3 << 20), ("initramfs.zst", 2 << 20), ("rootfs.squashfs", 4 << 20)]:
        path = directory / name
        path.write_bytes(hashlib.sha256(name.encode()).digest() * (size // 32))
        files.append(path)
    manifest = directory / "manifest.json"
    manifest.write_text('{"image": "rootfs.squashfs"}\n')
    return files + [manifest]


def build(inputs: list[Path], output: Path, epoch: str = "1700000000") -> str:
    environment = dict(os.environ, SOURCE_DATE_EPOCH=epoch)
    subprocess.run([str(ROOT / "scripts/mkiso.sh"), *map(str, inputs), str(output)], check=True, env=environment,
                   capture_output=True)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def test_two_builds_give_the_same_bytes(inputs, tmp_path):
    first = build(inputs, tmp_path / "one.iso")
    time.sleep(2.5)  # past FAT's 2-second and ISO 9660's 1-second date steps
    second = build(inputs, tmp_path / "two.iso")
    assert first == second, "two builds of the same inputs differ: the ISO is not reproducible"
    # SOURCE_DATE_EPOCH is what dates the image: another one, other bytes.
    assert build(inputs, tmp_path / "three.iso", epoch="1600000000") != first


def test_the_iso_is_hybrid_and_labelled(inputs, tmp_path):
    iso = tmp_path / "spirit.iso"
    build(inputs, iso)
    report = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain", "-report_system_area", "plain",
                             "-pvd_info", "-find", "/", "-maxdepth", "1", "-type", "f", "--"],
                            check=True, capture_output=True, text=True)
    text = report.stdout + report.stderr
    assert "Volume Id    : CROM_SPIRIT" in text, text
    assert "El Torito boot img :   1  BIOS" in text and "El Torito boot img :   2  UEFI" in text, text
    assert "MBR" in text and "GPT" in text, text
    listing = subprocess.run(["xorriso", "-indev", str(iso), "-ls", "/"], check=True, capture_output=True, text=True).stdout
    for name in ["kernel", "initramfs.zst", "rootfs.squashfs", "manifest.json", "bootx64.efi", "boot"]:
        assert f"'{name}'" in listing, listing
    # The media files are the inputs, byte for byte.
    extracted = tmp_path / "kernel"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/kernel", str(extracted)],
                   check=True, capture_output=True)
    assert extracted.read_bytes() == inputs[0].read_bytes()
    # GRUB's menu has the five entries, on the serial port as well.
    config = tmp_path / "grub.cfg"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/boot/grub/grub.cfg", str(config)],
                   check=True, capture_output=True)
    grub = config.read_text()
    # On a BIOS, the screen is written by vga_text, not through int 10h,
    # which SeaBIOS copies to the serial port under QEMU's -nographic: a
    # second, garbled copy of every line on the serial console.
    assert 'if [ "$grub_platform" = pc ]; then\n    terminal_output vga_text serial\nelse\n' \
           '    terminal_output console serial\nfi' in grub, grub
    for entry, flag in [("Spirit", None), ("Spirit (debug)", "crom.debug=1"), ("Spirit rescue", "crom.mode=rescue"),
                        ("Spirit from the network (HTTP)", "crom.mode=http"),
                        ("Spirit from the network (Nodus peers)", "crom.mode=nodus")]:
        block = grub.split(f'menuentry "{entry}"')[1].split("}")[0]
        assert "console=tty0 console=ttyS0" in block and (flag is None or flag in block), block
    subprocess.run(["grub-script-check", str(config)], check=True)
