"""The layers figure of `make bench`: `spirit layer add vm` from an HTTP
server on the host (the layer from `make layer NAME=vm`), timed by the
command itself from its start to the merge over /usr (manifest fetched and
checked, 19 MiB copied into RAM and hashed, loop mount, overlay), and the
remove that follows; N times in one boot from the media disk."""

import functools
import http.server
import re
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
from harness import VM, Disk, VMConfig  # noqa: E402


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def measure(kernel: str, initramfs: str, disk: Path, layers: Path, runs: int, log: Path) -> dict:
    """`layers` holds vm.squashfs and vm.json; served as BASE/layers/."""
    root = layers.parent
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://10.0.2.2:{httpd.server_address[1]}/{layers.name}/"
    adds, removes = [], []
    try:
        vm = VM(VMConfig(kernel=kernel, initrd=initramfs, append="console=ttyS0 quiet", disks=[Disk(str(disk), id="media")],
                         nics=["user,model=virtio-net-pci"]), log)
        with vm:
            vm.expect(r"^spirit: ready$", timeout=300)
            vm.expect(r"spirit:/# ", partial=True)
            vm.check("ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; true")
            for run in range(runs):
                out = vm.check(f"spirit layer add vm --from {base} 2>&1", timeout=300)
                adds.append(float(re.search(r"merged over /usr in ([\d.]+) ms", out).group(1)))
                started = time.monotonic()
                vm.check("spirit layer remove vm 2>&1")
                removes.append((time.monotonic() - started) * 1000)
                print(f"bench: layer add vm run {run + 1}/{runs}: {adds[-1]:.0f} ms", flush=True)
            vm.send("spirit poweroff\n")
            vm.wait_exit(120)
    finally:
        httpd.shutdown()
        httpd.server_close()
    return {"layer": "vm", "bytes": (layers / "vm.squashfs").stat().st_size, "runs": runs,
            "add_ms": {"min": min(adds), "median": statistics.median(adds), "all": adds},
            "remove_ms_with_console": {"median": statistics.median(removes)}}


def markdown(result: dict) -> str:
    return f"""## Layers

`spirit layer add vm --from http://10.0.2.2:…/layers/` in a Spirit booted from its media disk, {result['runs']} times
(each followed by `spirit layer remove vm`): the manifest fetched and checked, the {result['bytes'] / 2**20:.1f} MiB
layer copied into RAM over QEMU's user network while hashed, loop-mounted and merged over /usr, timed by the
command from its start: **{result['add_ms']['median']:.0f} ms** at the median ({result['add_ms']['min']:.0f} ms at best).
A remove, timed from the host through the serial console (so with its round trip), took
{result['remove_ms_with_console']['median']:.0f} ms at the median.
"""
