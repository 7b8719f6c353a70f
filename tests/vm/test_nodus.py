"""Nodus with the kernel's own NBD client: a guest reaches `spirit nodus
serve` on the host through QEMU's user network, hands the connection to the
kernel (`spirit nodus attach`), and /dev/nbd0 reads as the exported image."""

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nodus_server(system_image, tmp_path):
    port = free_port()
    log = open(tmp_path / "nodus.log", "w+")
    process = subprocess.Popen([SPIRIT, "nodus", "serve", "--image", system_image["image"], "--manifest",
                                system_image["manifest"], "--listen", "127.0.0.1", "--nbd-port", str(port),
                                "--discovery-port", "0"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, open(tmp_path / "nodus.log").read()
            time.sleep(0.1)
    yield port
    process.kill()
    process.wait()


def test_kernel_nbd_device_reads_our_export(boot, nodus_server, system_image):
    vm = boot("crom.break=cascade", nics=["user,model=e1000"])
    vm.expect(r"^spirit: break before cascade: shell on /dev/ttyS0")
    # QEMU's user network: the guest is 10.0.2.15, the host 10.0.2.2.
    vm.check("ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0")
    server = f"10.0.2.2:{nodus_server}"

    # The manifest export, read by Spirit's own client.
    manifest = vm.check(f"spirit nodus fetch --server {server} --export manifest 2>/dev/null")
    assert system_image["sha256"] in manifest

    # The image export, as a kernel block device.
    vm.check(f"spirit nodus attach --server {server} --device /dev/nbd0 2>/tmp/attach.log & true")
    # (nbd is loaded by the attach itself: /dev/nbd0 appears with it.)
    vm.check("for i in $(seq 100); do [ \"$(cat /sys/block/nbd0/size 2>/dev/null || echo 0)\" != 0 ] && break; sleep 0.2; done; "
             "[ \"$(cat /sys/block/nbd0/size)\" != 0 ]")
    size = int(vm.check("cat /sys/block/nbd0/size")) * 512
    assert size == system_image["image"].stat().st_size
    assert vm.check("cat /sys/block/nbd0/ro") == "1"  # the export is read-only, and the kernel knows
    digest = vm.check("sha256sum /dev/nbd0", timeout=180).split()[0]
    assert digest == system_image["sha256"]
    # It mounts: the squashfs of the image, over the network.
    vm.check("mkdir -p /mnt/peer && mount -t squashfs -o ro /dev/nbd0 /mnt/peer && grep -q '^NAME=\"Crom-OS Spirit\"' /mnt/peer/etc/os-release"
             " && umount /mnt/peer")

    # Detach: the attach command returns, the device is empty again.
    vm.check("spirit nodus detach /dev/nbd0")
    vm.check("wait; grep -q 'detached' /tmp/attach.log")
    assert vm.check("cat /sys/block/nbd0/size") == "0"
