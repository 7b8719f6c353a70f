"""`spirit boot-plan`: the stage-1 RAM-root plan and switch_root as shell,
from a manifest and a memory size, on the host and without root."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))


def manifest(tmp_path, size=3 << 20):
    key = tmp_path / "test-only.key"
    subprocess.run([SPIRIT, "image", "keygen", key], check=True, capture_output=True)
    image = tmp_path / "rootfs.squashfs"
    image.write_bytes(b"\0" * size)
    out = tmp_path / "manifest.json"
    subprocess.run([SPIRIT, "image", "manifest", "--image", image, "--key", key, "--version", "9.9", "--out", out], check=True)
    return out


def plan(*arguments):
    return subprocess.run([SPIRIT, "boot-plan", *map(str, arguments)], capture_output=True, text=True)


def test_the_plan_is_printed_as_shell_without_root(tmp_path):
    result = plan("--manifest", manifest(tmp_path), "--mem-total", "2G")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # zram, the image, the loop device, the overlay, switch_root — in that order.
    order = ["mount -t tmpfs -o nosuid,nodev,noexec,mode=0700,size=4m spirit-image /run/spirit/image",
             "echo 1073741824 > /sys/block/zram0/disksize",
             "LOOP=$(losetup --find --show --read-only /run/spirit/image/rootfs.squashfs)",
             "mount -t overlay -o lowerdir=/run/spirit/lower,upperdir=/run/spirit/rw/upper,workdir=/run/spirit/rw/work overlay /sysroot",
             "mount -o move /run /sysroot/run",
             "exec /sbin/init --switched-root"]
    positions = [lines.index(line) for line in order]
    assert positions == sorted(positions), result.stdout
    undo = [line.strip("# ").strip() for line in lines[lines.index("# a failure undoes what was done, in this order:") + 1:]]
    assert undo == ["umount /sysroot", "umount /run/spirit/lower", "losetup -d $LOOP", "umount /run/spirit/rw",
                    "echo 1 > /sys/block/zram0/reset", "umount /run/spirit/image"], undo


def test_other_machines(tmp_path):
    result = plan("--manifest", manifest(tmp_path), "--mem-total", "512M", "--upper", "tmpfs", "--algorithms", "lzo lz4")
    assert result.returncode == 0, result.stderr
    assert "for value in lz4 lzo; do echo $value > /sys/block/zram0/comp_algorithm && break; done" in result.stdout
    assert "swapon /dev/zram0" in result.stdout and "size=256m spirit-rw /run/spirit/rw" in result.stdout
    limited = plan("--manifest", tmp_path / "manifest.json", "--mem-total", "2G", "--ram-limit", "300")
    assert "echo 314572800 > /sys/block/zram0/disksize" in limited.stdout


def test_bad_input_is_named(tmp_path):
    good = manifest(tmp_path)
    for arguments, said in [(["--mem-total", "2G"], "--manifest is required"),
                            (["--manifest", good, "--mem-total", "lots"], "--mem-total lots"),
                            (["--manifest", good, "--mem-total", "2G", "--upper", "disk"], "--upper disk: expected zram or tmpfs"),
                            (["--manifest", good, "--mem-total", "2G", "--algorithms", "842"], "zram offers none of")]:
        result = plan(*arguments)
        assert result.returncode in (100, 111) and said in result.stderr, (arguments, result.stderr)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = plan("--manifest", bad, "--mem-total", "2G")
    assert result.returncode == 111 and "spirit: error:" in result.stderr, result.stderr
