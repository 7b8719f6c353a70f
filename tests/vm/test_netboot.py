"""The network boot folder (make netboot): iPXE, from Debian's ipxe-qemu ROM
on QEMU's e1000, gets boot.ipxe over QEMU user networking's TFTP, fetches
the kernel and the initramfs from an HTTP server on the host (10.0.2.2 from
the guest), and boots them with crom.mode=http crom.http=<that server>.
The HTTP boot source then fetches the manifest and the image from the same
server, and the boot reaches `spirit: ready`."""

import functools
import http.server
import re
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import ROOT

BOOT_TIMEOUT = 400


class RecordingServer(http.server.ThreadingHTTPServer):
    """A static file server that remembers each path it answered, and how."""

    def __init__(self, directory: Path):
        self.requests: list[tuple[str, int]] = []
        handler = functools.partial(RecordingHandler, directory=str(directory))
        super().__init__(("127.0.0.1", 0), handler)


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        self.server.requests.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, *args):
        pass


@pytest.fixture
def netboot_server(tmp_path, kernel, initramfs, system_image):
    """The folder of `make netboot`, served over HTTP on a free port, and
    built (by the same script) for that server's address as the guest sees it."""
    folder = tmp_path / "netboot"
    server = RecordingServer(folder)
    address = f"http://10.0.2.2:{server.server_address[1]}/"
    subprocess.run([str(ROOT / "scripts/mknetboot.sh"), kernel, initramfs, str(system_image["image"]),
                    str(system_image["manifest"]), address, str(folder)], check=True, stdout=subprocess.DEVNULL)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, address, server
    server.shutdown()
    server.server_close()


def test_netboot_folder_has_the_media_and_the_ipxe_script(netboot_server, system_image):
    folder, address, _ = netboot_server
    assert sorted(p.name for p in folder.iterdir()) == ["boot.ipxe", "initramfs.zst", "kernel", "manifest.json", "rootfs.squashfs"]
    script = (folder / "boot.ipxe").read_text()
    assert script.startswith("#!ipxe\n")
    assert f"set spirit-server {address}\n" in script
    kernel_line = re.search(r"^kernel \$\{kernel-url\} (.*) \|\| goto fallback$", script, re.M)
    assert kernel_line and "crom.mode=http" in kernel_line.group(1) and "crom.http=${spirit-server}" in kernel_line.group(1)
    assert (folder / "rootfs.squashfs").stat().st_size == system_image["image"].stat().st_size


def test_ipxe_boots_the_netboot_folder(boot_firmware, netboot_server, system_image):
    folder, address, server = netboot_server
    vm = boot_firmware(nics=[f"user,model=e1000,tftp={folder},bootfile=boot.ipxe"], extra_args=["-boot", "n"])
    # What this issue delivers: iPXE ran boot.ipxe, fetched the kernel and
    # the initramfs over HTTP, and the kernel started Spirit's PID 1 with the
    # script's command line.
    vm.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 1", BOOT_TIMEOUT)
    fetched = {path: code for path, code in server.requests}
    assert fetched.get("/kernel") == 200 and fetched.get("/initramfs.zst") == 200, server.requests

    # The HTTP source takes the manifest and the image from the same server.
    outcome = vm.expect(r"^spirit: boot source=(\S+) image=(\w+)$", BOOT_TIMEOUT)
    assert (outcome.group(1), outcome.group(2)) == ("http", system_image["sha256"][:12]), outcome.group(0)
    vm.expect(r"^spirit: ready$", BOOT_TIMEOUT)
    fetched = {path: code for path, code in server.requests}
    assert fetched.get("/manifest.json") == 200 and fetched.get("/rootfs.squashfs") == 200, server.requests
    vm.expect(r"spirit:/# ", BOOT_TIMEOUT, partial=True)
    cmdline = vm.check("cat /proc/cmdline")
    assert f"crom.http={address}" in cmdline and "crom.mode=http" in cmdline, cmdline
