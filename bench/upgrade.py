"""The upgrade figure of `make bench`: a stick made by `make stick`, booted
by its own GRUB, upgraded N times from an HTTP server on the host (each
release the same files with the next version), each time timed from the
host from `spirit upgrade` to the console's `marked good` on the next boot
(the write, the reboot through GRUB and the firmware, the boot, the health
check); the write alone as `spirit upgrade` reports it. The peer, in the
last boot: `cp -r` of the running slot to another folder of the same
stick, then one sync: the disk's floor for the same bytes, with no network,
no signature, no hashing, no fsync per file and nothing atomic (Debian 12's
busybox-static wget, the obvious peer, ends in SIGSEGV in the image, where
it reached the host's server; on the host it does when a connection is
refused)."""

import functools
import http.server
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
from harness import VM, Disk, VMConfig  # noqa: E402
from test_upgrade import make_release  # noqa: E402


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def boot(disk: Path, log: Path) -> VM:
    vm = VM(VMConfig(disks=[Disk(str(disk), bootindex=0)], nics=["user,model=virtio-net-pci"]), log).start()
    vm.expect(r"^spirit: ready$", timeout=300)
    vm.expect(r"spirit:/# ", partial=True)
    vm.check("ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; true")
    return vm


def measure(kernel: str, initramfs: str, rootfs: Path, manifest: Path, stick: Path, runs: int, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "stick.img"
    subprocess.run(["cp", "--sparse=always", stick, disk], check=True)
    version = json.loads(manifest.read_text())["version"]
    for run in range(1, runs + 1):
        folder = work / f"r{run}"
        if folder.exists():
            subprocess.run(["rm", "-rf", folder], check=True)
        make_release(folder, kernel, initramfs, rootfs, f"{version}.{run}")
    handler = functools.partial(QuietHandler, directory=str(work))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://10.0.2.2:{httpd.server_address[1]}"
    totals, writes = [], []
    vm = None
    try:
        vm = boot(disk, work / "boot-0.log")
        for run in range(1, runs + 1):
            started = time.monotonic()
            out = vm.check(f"spirit upgrade --from {base}/r{run}/ 2>&1", timeout=600)
            writes.append(float(re.search(r"written in ([\d.]+) ms", out).group(1)))
            vm.send("spirit reboot\n")
            vm.wait_exit(120)
            vm = VM(VMConfig(disks=[Disk(str(disk), bootindex=0)], nics=["user,model=virtio-net-pci"]), work / f"boot-{run}.log").start()
            vm.expect(r"spirit: upgrade: slot [ab] \(\S+\) marked good", timeout=300)
            totals.append((time.monotonic() - started) * 1000)
            vm.send("\n")  # the prompt came before the verdict's line
            vm.expect(r"spirit:/# ", partial=True)
            vm.check("ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; true")
            print(f"bench: upgrade run {run}/{runs}: written in {writes[-1]:.0f} ms, marked good {totals[-1]:.0f} ms after the start", flush=True)
        # The peer: a plain copy of the running slot (the same bytes but the
        # manifests) to another folder of the stick, then one sync.
        slot = re.search(r"crom\.slot=([ab])", vm.check("cat /proc/cmdline")).group(1)
        out = vm.check(f"mkdir -p /mnt/s && mount /dev/vda2 /mnt/s && a=$(cut -d' ' -f1 /proc/uptime); "
                       f"cp -r /mnt/s/{slot} /mnt/s/peer && sync; b=$(cut -d' ' -f1 /proc/uptime); "
                       f"rm -rf /mnt/s/peer; umount /mnt/s; echo \"peer $a $b\"", timeout=600)
        a, b = map(float, re.search(r"^peer ([\d.]+) ([\d.]+)$", out, re.M).groups())
        peer = (b - a) * 1000
        vm.send("spirit poweroff\n")
        vm.wait_exit(120)
    finally:
        if vm is not None:
            vm.kill()
        httpd.shutdown()
        httpd.server_close()
    size = sum(f["size"] for f in json.loads((work / f"r{runs}" / "release.json").read_text())["files"])
    return {"runs": runs, "release_bytes": size,
            "start_to_marked_good_ms": {"min": min(totals), "median": statistics.median(totals), "all": totals},
            "write_ms": {"min": min(writes), "median": statistics.median(writes), "all": writes},
            "peer_copy_sync_ms": peer, "write_over_peer": statistics.median(writes) / peer}


def markdown(result: dict) -> str:
    return f"""## Upgrades

A stick from `make stick` booted by its own GRUB (SeaBIOS), upgraded {result['runs']} times from an HTTP server on the
host ({result['release_bytes'] / 2**20:.1f} MiB a release: kernel, initramfs, image, manifests), each time timed from
the host from `spirit upgrade` to `spirit: upgrade: slot … marked good` on the next boot (the write, the reboot through
GRUB, the boot, the services' health check): **{result['start_to_marked_good_ms']['median'] / 1000:.1f} s** at the
median ({result['start_to_marked_good_ms']['min'] / 1000:.1f} s at best). The write alone (signature, room, every file
copied, hashed and fsync'd, the rename, GRUB's environment): {result['write_ms']['median']:.0f} ms at the median,
against {result['peer_copy_sync_ms']:.0f} ms for `cp -r` of a slot to another folder of the stick and one sync
(no network, no check of anything): **{result['write_over_peer']:.2f}x** the peer's time.
"""
