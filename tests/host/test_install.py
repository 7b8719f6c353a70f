"""`spirit install parasite` on the host against a real NTFS filesystem:
an image made by mkntfs on a loop device, mounted with ntfs-3g (FUSE,
fuseblk), as a Windows partition is when Spirit runs. The media are small
stand-ins with a real signed manifest (made by `spirit image`)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
FILES = ["kernel", "initramfs.zst", "rootfs.squashfs", "manifest.json"]


def run(*arguments, check=False):
    return subprocess.run([str(SPIRIT), *map(str, arguments)], capture_output=True, text=True, check=check)


def make_media(directory: Path, image_bytes: bytes | None = None, sparse_image: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel").write_bytes(os.urandom(1 << 20))
    (directory / "initramfs.zst").write_bytes(os.urandom(512 << 10))
    image = directory / "rootfs.squashfs"
    if sparse_image:
        with open(image, "wb") as f:
            f.truncate(sparse_image)
    else:
        image.write_bytes(image_bytes or os.urandom(2 << 20))
    key = directory.parent / "key"
    if not key.exists():
        run("image", "keygen", key, check=True)
    run("image", "manifest", "--image", image, "--key", key, "--version", "0.0.0-test.1", "--build-time", "0",
        "--out", directory / "manifest.json", check=True)
    return directory


@pytest.fixture
def ntfs(tmp_path):
    """An NTFS filesystem of 64 MB, mounted read-write with ntfs-3g from a
    loop device (so its kind is fuseblk, as for a real partition)."""

    def mount(size_mb: int = 64, options: str = "rw") -> Path:
        image = tmp_path / f"windows-{len(mounted)}.img"
        with open(image, "wb") as f:
            f.truncate(size_mb << 20)
        subprocess.run(["mkntfs", "-q", "-F", "-f", "-L", "Windows", str(image)], check=True, capture_output=True)
        device = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True).stdout.strip()
        target = tmp_path / f"c{len(mounted)}"
        target.mkdir()
        mounted.append((target, device))
        subprocess.run(["ntfs-3g", "-o", options, device, str(target)], check=True)
        return target

    if os.geteuid() != 0 or not Path("/dev/fuse").exists():
        pytest.skip("needs root and /dev/fuse to mount NTFS with ntfs-3g")
    mounted: list[tuple[Path, str]] = []
    yield mount
    for target, device in reversed(mounted):
        subprocess.run(["umount", str(target)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def test_install_copies_the_media_and_writes_both_entries(ntfs, tmp_path):
    media = make_media(tmp_path / "media")
    windows = ntfs()
    assert "fuseblk" in Path("/proc/self/mountinfo").read_text()
    result = run("install", "parasite", windows, "--media", media)
    assert result.returncode == 0, result.stderr
    installed = windows / "CromSpirit"
    for name in FILES:
        assert (installed / name).read_bytes() == (media / name).read_bytes(), name
    assert not list(installed.glob("*.part"))

    grub = (installed / "40_custom").read_text()
    assert grub.startswith("#!/bin/sh\nexec tail -n +3 $0\n")
    assert re.search(r"^\s*search --no-floppy --file --set=root /CromSpirit/kernel$", grub, re.M), grub
    linux = re.search(r"^\s*linux /CromSpirit/kernel (.*)$", grub, re.M)
    assert linux and "crom.mode=parasite" in linux.group(1).split(), grub
    assert re.search(r"^\s*initrd /CromSpirit/initramfs.zst$", grub, re.M), grub
    # GRUB's own parser accepts the entry.
    entry = tmp_path / "entry.cfg"
    entry.write_text("".join(grub.splitlines(keepends=True)[2:]))
    subprocess.run(["grub-script-check", str(entry)], check=True)

    bcd = (installed / "install-bcd.ps1").read_text()
    assert '$loader = "\\CromSpirit\\bootx64.efi"' in bcd, bcd
    assert 'bcdedit /create /d "Crom-OS Spirit" /application osloader' in bcd
    for line in ['bcdedit /set $guid device "partition=$drive"', "bcdedit /set $guid path $loader",
                 "bcdedit /displayorder $guid /addlast"]:
        assert line in bcd, line


def test_dry_run_prints_the_plan_and_writes_nothing(ntfs, tmp_path):
    media = make_media(tmp_path / "media")
    windows = ntfs()
    result = run("install", "parasite", windows, "--media", media, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"mkdir -p '{windows}/CromSpirit'" in result.stdout
    for name in FILES:
        assert f"cp '{media}/{name}' '{windows}/CromSpirit/{name}'" in result.stdout, result.stdout
    assert f"cat > '{windows}/CromSpirit/40_custom'" in result.stdout
    assert f"cat > '{windows}/CromSpirit/install-bcd.ps1'" in result.stdout
    assert "dry run: nothing written" in result.stderr + result.stdout
    assert not (windows / "CromSpirit").exists()


def test_an_install_is_never_overwritten_without_force(ntfs, tmp_path):
    windows = ntfs()
    assert run("install", "parasite", windows, "--media", make_media(tmp_path / "one")).returncode == 0
    newer = make_media(tmp_path / "two")
    refused = run("install", "parasite", windows, "--media", newer)
    assert refused.returncode == 111
    assert "already holds" in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert (windows / "CromSpirit/kernel").read_bytes() == (tmp_path / "one/kernel").read_bytes()
    forced = run("install", "parasite", windows, "--media", newer, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (windows / "CromSpirit/kernel").read_bytes() == (newer / "kernel").read_bytes()


def test_a_target_that_is_not_ntfs_is_refused(tmp_path):
    media = make_media(tmp_path / "media")
    target = tmp_path / "not-windows"
    target.mkdir()
    result = run("install", "parasite", target, "--media", media)
    assert result.returncode == 111
    assert "not an NTFS partition" in result.stderr, result.stderr
    assert not (target / "CromSpirit").exists()


def test_a_target_without_room_is_refused(ntfs, tmp_path):
    media = make_media(tmp_path / "media", sparse_image=200 << 20)
    windows = ntfs()
    result = run("install", "parasite", windows, "--media", media)
    assert result.returncode == 111
    assert re.search(r"has \d+ MiB free; the media need \d+ MiB", result.stderr), result.stderr
    assert not (windows / "CromSpirit").exists()


def test_a_read_only_partition_is_refused(ntfs, tmp_path):
    media = make_media(tmp_path / "media")
    windows = ntfs(options="ro")
    result = run("install", "parasite", windows, "--media", media)
    assert result.returncode == 111
    assert "read-only" in result.stderr, result.stderr


def test_an_image_that_does_not_match_its_manifest_is_not_installed(ntfs, tmp_path):
    media = make_media(tmp_path / "media")
    data = bytearray((media / "rootfs.squashfs").read_bytes())
    data[1000] ^= 1
    (media / "rootfs.squashfs").write_bytes(bytes(data))
    windows = ntfs()
    result = run("install", "parasite", windows, "--media", media)
    assert result.returncode == 111
    assert "rootfs.squashfs" in result.stderr, result.stderr
    left = sorted(p.name for p in (windows / "CromSpirit").iterdir())
    assert "rootfs.squashfs" not in left and "manifest.json" not in left and not [n for n in left if n.endswith(".part")], left


def test_missing_media_are_named(ntfs, tmp_path):
    media = make_media(tmp_path / "media")
    (media / "initramfs.zst").unlink()
    result = run("install", "parasite", ntfs(), "--media", media)
    assert result.returncode == 111
    assert f"no initramfs.zst in {media}" in result.stderr, result.stderr
    assert run("install", "parasite").returncode == 100


def test_a_fuse_mount_that_is_not_an_ntfs_partition_is_refused(tmp_path):
    """ntfs-3g on a plain file (not a block device) mounts as `fuse`, not
    `fuseblk`: not a partition the firmware or GRUB could boot from."""
    if os.geteuid() != 0 or not Path("/dev/fuse").exists():
        pytest.skip("needs root and /dev/fuse to mount NTFS with ntfs-3g")
    media = make_media(tmp_path / "media")
    image = tmp_path / "file.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkntfs", "-q", "-F", "-f", str(image)], check=True, capture_output=True)
    target = tmp_path / "fuse"
    target.mkdir()
    subprocess.run(["ntfs-3g", str(image), str(target)], check=True)
    try:
        result = run("install", "parasite", target, "--media", media)
    finally:
        subprocess.run(["umount", str(target)], check=False)
    assert result.returncode == 111
    assert "(fuse," in result.stderr and "not an NTFS partition" in result.stderr, result.stderr
