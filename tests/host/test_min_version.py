"""Anti-rollback at build time: versions as the build takes them
(`spirit image check-version`, `spirit image manifest --version`) and
mkinitramfs, which stops on a MIN_VERSION that is not a version instead of
making an initramfs that would refuse every image."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
KERNEL_DIR = Path(os.environ.get("SPIRIT_KERNEL_DIR", ROOT / ".cache/debian-kernel/current"))


def spirit(*args) -> subprocess.CompletedProcess:
    return subprocess.run([SPIRIT, *map(str, args)], capture_output=True, text=True)


def test_check_version():
    good = spirit("image", "check-version", "0.2.0-rc.1")
    assert good.returncode == 0 and good.stdout == "0.2.0-rc.1\n", good
    bad = spirit("image", "check-version", "0.1.x")
    assert bad.returncode == 1 and bad.stdout == "", bad
    assert '"0.1.x" is not a version: "x" is not a number' in bad.stderr, bad.stderr
    assert spirit("image", "check-version").returncode == 100


def test_a_manifest_takes_only_a_version(tmp_path):
    key = tmp_path / "test-only.key"
    assert spirit("image", "keygen", key).returncode == 0
    image = tmp_path / "rootfs.squashfs"
    image.write_bytes(b"not much of an image")
    bad = spirit("image", "manifest", "--image", image, "--key", key, "--version", "latest", "--out", tmp_path / "m.json")
    assert bad.returncode == 100 and '--version: "latest" is not a version' in bad.stderr, bad.stderr
    assert not (tmp_path / "m.json").exists()
    good = spirit("image", "manifest", "--image", image, "--key", key, "--version", "0.0.1", "--out", tmp_path / "m.json")
    assert good.returncode == 0, good.stderr
    assert '"version": "0.0.1"' in (tmp_path / "m.json").read_text()


def test_mkinitramfs_refuses_a_bad_min_version(tmp_path):
    key = tmp_path / "test-only.key"
    assert spirit("image", "keygen", key).returncode == 0
    output = tmp_path / "initramfs.zst"
    result = subprocess.run([ROOT / "scripts/mkinitramfs.sh", SPIRIT, KERNEL_DIR, ROOT / "initramfs/modules.boot",
                             f"{key}.pub", output], env={**os.environ, "MIN_VERSION": "0.1.x"}, capture_output=True, text=True)
    assert result.returncode == 1, result
    assert result.stderr.startswith('mkinitramfs: MIN_VERSION=0.1.x: "0.1.x" is not a version: "x" is not a number'), result.stderr
    assert not output.exists()
