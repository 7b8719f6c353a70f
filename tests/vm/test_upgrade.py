"""A/B upgrades (issue 15, part 2) on a stick made by `make stick`, booted
by its own GRUB (SeaBIOS, no -kernel): slot a holds version N. Five boots of
the same disk:

1. N on slot a: a release signed with another key, an equal and an older
   version are refused; --dry-run prints the steps as shell; the upgrade to
   N.1 from an HTTP server on the host is written to slot b and armed;
   `spirit reboot`.
2. GRUB tries slot b once; the upgrade service marks it good. An upgrade to
   N.2, whose image has a service that fails on purpose, goes to slot a.
3. Slot a's try: the broken service fails, the try is recorded as failed,
   nothing is marked good.
4. Back on slot b (N.1) by itself; status says why a's try failed. An
   rollback by hand makes slot a the good one, a second brings b back. An
   upgrade to N.3 from a server that trickles its bytes: QEMU is killed
   while the image is being written.
5. Still slot b, N.1, ready; nothing armed; the half-written slot was never
   offered to GRUB, and there is nothing to roll back to.
"""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import Disk

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
SIGNING_KEY = Path(os.environ.get("SIGNING_KEY", Path.home() / ".config/crom-spirit/signing.key"))
NIC = "user,model=virtio-net-pci"


class ReleaseServer(http.server.SimpleHTTPRequestHandler):
    """Release folders over HTTP; under /slow/ the image trickles out
    (256 KiB every 0.1 s) and `sent` counts its bytes."""

    sent = 0

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        if not self.path.startswith("/slow/") or not self.path.endswith(".squashfs"):
            return super().copyfile(source, outputfile)
        try:
            while chunk := source.read(256 << 10):
                outputfile.write(chunk)
                type(self).sent += len(chunk)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the guest was killed mid-download: the point of /slow/


@pytest.fixture
def server(tmp_path):
    handler = functools.partial(ReleaseServer, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://10.0.2.2:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def make_release(folder: Path, kernel: str, initramfs: str, image: Path, version: str, key: Path = SIGNING_KEY) -> Path:
    """A release folder as `make netboot` writes one, for `version`."""
    folder.mkdir(parents=True)
    shutil.copy(kernel, folder / "kernel")
    shutil.copy(initramfs, folder / "initramfs.zst")
    shutil.copy(image, folder / "rootfs.squashfs")
    subprocess.run([SPIRIT, "image", "manifest", "--image", folder / "rootfs.squashfs", "--key", key, "--version", version,
                    "--build-time", "1000000000", "--out", folder / "manifest.json"], check=True)
    subprocess.run([SPIRIT, "image", "release", folder, "--key", key], check=True, capture_output=True)
    return folder


def broken_image(tmp_path: Path, image: str) -> Path:
    """The system image with one more service, which fails at every start."""
    tree = tmp_path / "broken-tree"
    subprocess.run(["unsquashfs", "-q", "-d", tree, image], check=True, capture_output=True)
    (tree / "etc/spirit/services/broken.toml").write_text(
        '# made to fail: the upgrade VM test\ncommand = ["/bin/sh", "-c", "echo broken on purpose; exit 1"]\n')
    out = tmp_path / "broken.squashfs"
    subprocess.run(["mksquashfs", tree, out, "-comp", "zstd", "-quiet", "-no-progress", "-all-root"], check=True, capture_output=True)
    shutil.rmtree(tree)
    return out


def boot_stick(boot_firmware, disk: Path):
    vm = boot_firmware(disks=[Disk(str(disk), bootindex=0)], nics=[NIC])
    vm.expect(r"^spirit: ready$", 240)
    vm.expect(r"spirit:/# ", partial=True)
    vm.check("ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; ip addr show eth0 | grep -q 'inet 10.0.2.'")
    return vm


def running_version(vm) -> str:
    return json.loads(vm.check("cat /run/spirit/image.manifest.json"))["version"]


def reboot(vm):
    vm.send("spirit reboot\n")
    assert vm.wait_exit(120) == 0


def test_upgrade_try_mark_good_failed_try_cut_write_and_rollback(boot_firmware, tmp_path, server, kernel, initramfs, system_image, stick):
    disk = tmp_path / "stick.img"
    subprocess.run(["cp", "--sparse=always", stick, disk], check=True)
    n = json.loads(Path(system_image["manifest"]).read_text())["version"]
    good, broken, cut = f"{n}.1", f"{n}.2", f"{n}.3"
    make_release(tmp_path / "good", kernel, initramfs, system_image["image"], good)
    make_release(tmp_path / "same", kernel, initramfs, system_image["image"], n)
    stranger = tmp_path / "stranger.key"
    subprocess.run([SPIRIT, "image", "keygen", stranger], check=True, capture_output=True)
    make_release(tmp_path / "stranger", kernel, initramfs, system_image["image"], f"{n}.9", key=stranger)
    make_release(tmp_path / "broken", kernel, initramfs, broken_image(tmp_path, system_image["image"]), broken)
    make_release(tmp_path / "slow", kernel, initramfs, system_image["image"], cut)

    # Boot 1: slot a, version N.
    vm = boot_stick(boot_firmware, disk)
    assert "spirit: loading the kernel and the initramfs of slot a" in vm.console
    assert running_version(vm) == n
    status = vm.check("spirit upgrade status")
    assert f"slot a: {n} (booted; good)" in status and "slot b: no release" in status and "next boot: slot a" in status, status
    code, out = vm.run(f"spirit upgrade --from {server}/stranger/ 2>&1")
    assert code == 111 and "not signed with this system's key" in out and "nothing was written" in out, out
    code, out = vm.run(f"spirit upgrade --from {server}/same/ 2>&1")
    assert code == 111 and f"the release is version {n}, the one running; nothing to upgrade" in out, out
    dry = vm.check(f"spirit upgrade --dry-run --from {server}/good/")
    m = "/run/spirit/upgrade-medium"
    assert f"wget -q -O {m}/b.new/rootfs.squashfs {server}/good/rootfs.squashfs" in dry, dry
    assert f"grub-editenv {m}/boot/grub/grubenv set slot_try=b" in dry, dry
    assert "next boot: slot a" in vm.check("spirit upgrade status"), "the dry run changed something"
    started = time.monotonic()
    out = vm.check(f"spirit upgrade --from {server}/good/ 2>&1", timeout=600)
    assert re.search(rf"^spirit: upgrade: slot b holds {re.escape(good)}, armed for one try", out, re.M), out
    status = vm.check("spirit upgrade status")
    assert f"slot b: {good} (armed for one try at the next boot)" in status and "next boot: slot b" in status, status
    assert json.loads(vm.check("tail -n 1 /run/spirit/upgrades.log"))["action"] == "upgrade"
    reboot(vm)

    # Boot 2: slot b's one try, marked good once its services are up.
    vm = boot_stick(boot_firmware, disk)
    assert "spirit: trying slot b once" in vm.console
    vm.wait_line(rf"spirit: (?:\w+: )?upgrade: slot b \({re.escape(good)}\) marked good: \d+ services up", timeout=120)
    upgrade_seconds = time.monotonic() - started
    assert running_version(vm) == good
    status = vm.check("spirit upgrade status")
    assert f"slot b: {good} (booted; good)" in status and f"slot a: {n}" in status and "next boot: slot b" in status, status
    assert f"marked-good a {n} -> b {good}" in status, status
    # The next release has a service that fails on purpose: it goes to slot a.
    vm.check(f"spirit upgrade --from {server}/broken/ 2>&1", timeout=600)
    reboot(vm)

    # Boot 3: slot a's try fails its health check; nothing is marked good.
    vm = boot_firmware(disks=[Disk(str(disk), bootindex=0)], nics=[NIC])
    vm.expect(r"spirit: trying slot a once")
    vm.expect(rf"spirit: (?:\w+: )?upgrade: the try of slot a \({re.escape(broken)}\) failed its health check: failed: broken", 240)
    vm.expect(rf"the next boot is back on slot b \({re.escape(good)}\)")
    # The service's exit, as spiritctl shows it (its console line may be cut
    # by the shell's prompt; the state is what a user asks for).
    deadline = time.monotonic() + 120
    while True:
        upgrade = json.loads(vm.check("spiritctl --json status upgrade"))["services"][0]
        if upgrade["state"] not in ("starting", "running"):
            break
        assert time.monotonic() < deadline, f"the upgrade service still runs: {upgrade}; log: {vm.log_path}"
        time.sleep(1)
    assert "exited with status 1" in (upgrade.get("last_exit") or ""), f"{upgrade}; log: {vm.log_path}"
    vm.kill()

    # Boot 4: back on slot b by itself; a write cut by the power.
    vm = boot_stick(boot_firmware, disk)
    assert "trying slot" not in vm.console
    assert running_version(vm) == good
    status = vm.check("spirit upgrade status")
    assert re.search(rf"slot a: {re.escape(broken)} \(its last try failed: failed: broken failed", status), status
    assert "next boot: slot b" in status, status
    # Rollback by hand: slot a becomes the good one, and a second comes back.
    dry = vm.check("spirit upgrade rollback --dry-run")
    assert "grub-editenv /run/spirit/upgrade-medium/boot/grub/grubenv set slot_good=a" in dry, dry
    out = vm.check("spirit upgrade rollback 2>&1", timeout=120)
    assert f"slot a ({broken}) is the good slot now" in out, out
    assert "next boot: slot a" in vm.check("spirit upgrade status")
    out = vm.check("spirit upgrade rollback 2>&1", timeout=120)
    assert f"slot b ({good}) is the good slot now" in out, out
    vm.send(f"spirit upgrade --from {server}/slow/\n")
    vm.expect(r"spirit: upgrade: writing /run/spirit/upgrade-medium/a\.new/rootfs\.squashfs", 300)
    deadline = time.monotonic() + 120
    while ReleaseServer.sent < (8 << 20) and time.monotonic() < deadline:
        time.sleep(0.2)
    vm.kill()
    assert ReleaseServer.sent >= (8 << 20) and "armed for one try" not in vm.console

    # Boot 5: the half-written slot was never offered to GRUB.
    vm = boot_stick(boot_firmware, disk)
    assert "trying slot" not in vm.console
    assert running_version(vm) == good
    status = vm.check("spirit upgrade status")
    # Slot a was emptied before the cut write: nothing to go back to there.
    assert "next boot: slot b" in status and "slot a: no release" in status, status
    code, out = vm.run("spirit upgrade rollback 2>&1")
    assert code == 111 and "slot a holds no release to go back to" in out, out
    log = [json.loads(line) for line in vm.check("mount -o ro /dev/vda2 /mnt && cat /mnt/upgrades.log; umount /mnt").splitlines()]
    assert [entry["action"] for entry in log] == ["upgrade", "marked-good", "upgrade", "try-failed", "rollback", "rollback"], log
    print(f"upgrade: from `spirit upgrade` to marked good: {upgrade_seconds:.1f} s (TCG, 70 MiB over QEMU's user network)")
