"""Add-on layers on a real kernel: the vm layer (Debian's QEMU, from `make
layer NAME=vm`) stacked at boot from a CROM_SPIRIT stick with crom.layers=,
and added at run time from an HTTP server with `spirit layer add`; a layer
that fails its signature or its SHA-256 is refused with the reason and
leaves nothing behind; a layer in use is not removed."""

import functools
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_media
from harness import Disk

QEMU_RUNS = "echo quit | qemu-system-x86_64 -machine none -nodefaults -display none -monitor stdio 2>&1"


@pytest.fixture(scope="module")
def vm_layer() -> dict:
    directory = Path(os.environ.get("SPIRIT_LAYERS", ROOT / "out" / "layers"))
    image, manifest = directory / "vm.squashfs", directory / "vm.json"
    if not image.exists() or not manifest.exists():
        pytest.fail(f"no vm layer in {directory}: run the VM tests through 'make test' (it makes the layer)")
    return {"image": image, "manifest": manifest, "sha256": json.loads(manifest.read_text())["sha256"]}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Folder:
    """A plain HTTP server for a directory on the host (10.0.2.2 in the guest)."""

    def __init__(self, directory: Path):
        handler = functools.partial(QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://10.0.2.2:{self.port}/{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def layer_mounts(vm) -> list[list[str]]:
    return [m.split() for m in vm.check("cat /proc/mounts").splitlines() if "/run/spirit/layers" in m or m.split()[1] == "/usr"]


def test_layers_stack_at_boot(boot, tmp_path, system_image, vm_layer):
    # A layer whose manifest was changed after signing (its name), beside the good one.
    forged = json.loads(vm_layer["manifest"].read_text())
    forged.update(name="broken", image="broken.squashfs")
    (tmp_path / "broken.json").write_text(json.dumps(forged))
    disk = make_media(tmp_path, {
        "rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"],
        "layers/vm.squashfs": vm_layer["image"], "layers/vm.json": vm_layer["manifest"],
        "layers/broken.squashfs": vm_layer["image"], "layers/broken.json": tmp_path / "broken.json",
    })
    vm = boot("crom.layers=vm,broken,absent", disks=[Disk(str(disk), id="media")])
    vm.expect(r"^spirit: layer broken: left out: the manifest's signature is not valid")
    vm.expect(r"^spirit: layer absent: left out: there is no layer absent in /dev/\S+ \(ext4, CROM_SPIRIT\)/layers")
    vm.expect(r"^spirit: layers: vm 0\.1\.0 stacked over the image$")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)

    # QEMU from the layer runs, TCG module and all, in the shell.
    assert re.search(r"^QEMU emulator version 7\.2", vm.check("qemu-system-x86_64 --version"), re.M)
    assert "monitor - type 'help'" in vm.check(QEMU_RUNS)
    # With QEMU on the machine the VM manager's service runs (without it, it is not applicable).
    assert vm.run("spirit vm list")[0] == 0
    # The root's overlay has the layer as its topmost lower layer.
    root = [m for m in vm.check("cat /proc/mounts").splitlines() if m.split()[1] == "/"][-1]
    assert "lowerdir=/run/spirit/layers/vm:/run/spirit/lower" in root, root
    listed = json.loads(vm.check("spirit layer list --json"))
    assert [(l["name"], l["stacking"], l["sha256"], l["mounted"]) for l in listed] == [("vm", "boot", vm_layer["sha256"], True)]
    status, out = vm.run("spirit layer remove vm 2>&1")
    assert status == 111 and "stacked at boot" in out, out
    assert not vm.run("ls /run/spirit/image/layers/broken.squashfs")[0] == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_layer_added_at_run_time_and_removed(boot, tmp_path, media_disk, system_image, vm_layer):
    good = tmp_path / "good" / "layers"
    good.mkdir(parents=True)
    shutil.copy(vm_layer["image"], good)
    shutil.copy(vm_layer["manifest"], good)
    (good / "index").write_text("vm\n")
    bad = tmp_path / "bad" / "layers"
    bad.mkdir(parents=True)
    tampered = bytearray(vm_layer["image"].read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    (bad / "vm.squashfs").write_bytes(tampered)
    shutil.copy(vm_layer["manifest"], bad)
    server = Folder(tmp_path)
    try:
        vm = boot("", disks=[Disk(str(media_disk), id="media")], nics=["user,model=virtio-net-pci"])
        vm.expect(r"^spirit: ready$")
        vm.expect(r"spirit:/# ", partial=True)
        assert vm.run("command -v qemu-system-x86_64")[0] != 0
        # The network: stage 1's lease when its DHCP finished before the stick won, else by hand.
        vm.check("ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; ip addr show eth0 | grep -q 'inet 10.0.2.'")

        # A tampered layer: refused with the reason, nothing left behind.
        status, out = vm.run(f"spirit layer add vm --from {server.url('bad/')} 2>&1", timeout=180)
        assert status == 111 and "the layer vm from http://10.0.2.2" in out and "is refused: the layer does not match its manifest: vm.squashfs's SHA-256 is" in out and vm_layer["sha256"] in out and "nothing was kept" in out, out
        assert layer_mounts(vm) == [], layer_mounts(vm)
        assert vm.run("ls /run/spirit/image/layers/vm.squashfs")[0] != 0
        assert "no layers" in vm.check("spirit layer list")

        out = vm.check(f"spirit layer add vm --from {server.url('good/layers/')} 2>&1", timeout=180)
        assert re.search(r"layer vm 0\.1\.0 added from http://10\.0\.2\.2:\d+/good/layers/: \d+ KiB, SHA-256 "
                         + vm_layer["sha256"][:12] + r", merged over /usr in [\d.]+ ms", out), out
        assert re.search(r"^QEMU emulator version 7\.2", vm.check("qemu-system-x86_64 --version"), re.M)
        assert "monitor - type 'help'" in vm.check(QEMU_RUNS)
        # The VM manager, not applicable at boot (no QEMU), was started again by the add.
        assert "service vm: was not applicable here; started again" in out, out
        vm.check("for i in $(seq 30); do spirit vm list >/dev/null 2>&1 && break; sleep 1; done; spirit vm list")
        listed = json.loads(vm.check("spirit layer list --json"))
        assert [(l["name"], l["stacking"], l["mounted"]) for l in listed] == [("vm", "run", True)]
        status, out = vm.run(f"spirit layer add vm --from {server.url('good/')} 2>&1")
        assert status == 111 and "already here" in out, out

        # In use: a QEMU waiting (-S) keeps the layer.
        vm.check("qemu-system-x86_64 -machine none -nodefaults -display none -monitor none -S & echo $! > /tmp/qemu.pid; sleep 2")
        pid = vm.check("cat /tmp/qemu.pid")
        status, out = vm.run("spirit layer remove vm 2>&1")
        assert status == 111 and re.search(rf"in use by {pid} \(qemu-system-x86", out), out
        vm.check(f"kill {pid}; wait {pid} 2>/dev/null; true")
        out = vm.check("spirit layer remove vm 2>&1")
        assert "layer vm 0.1.0 removed" in out, out
        assert vm.run("test -e /usr/bin/qemu-system-x86_64")[0] != 0
        assert [m for m in layer_mounts(vm) if m[0] in ("spirit-layers",) or "/layers/vm" in m[1]] == []
        # /usr is the root's own again, and writable.
        vm.check("touch /usr/after-remove && rm /usr/after-remove")
        assert "no layers" in vm.check("spirit layer list")

        # From a Nodus peer (here `spirit nodus serve` on the host), as a running Spirit serves its layers.
        port = free_port()
        peer = subprocess.Popen([str(ROOT / "out" / "spirit"), "nodus", "serve", "--image", str(system_image["image"]),
                                 "--manifest", str(system_image["manifest"]), "--layers", str(good), "--listen", "127.0.0.1",
                                 "--nbd-port", str(port), "--discovery-port", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                assert time.monotonic() < deadline, "the Nodus peer did not listen"
                time.sleep(0.2)
            out = vm.check(f"spirit layer add vm --from nodus://10.0.2.2:{port} 2>&1", timeout=180)
            assert f"layer vm 0.1.0 added from nodus peer 10.0.2.2:{port}" in out, out
            assert re.search(r"^QEMU emulator version 7\.2", vm.check("qemu-system-x86_64 --version"), re.M)
            vm.check("spirit layer remove vm")
        finally:
            peer.kill()
            peer.wait()
    finally:
        server.close()
