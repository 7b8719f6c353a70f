"""The streaming boot (crom.nodus.stream=1) for real: a LAN of its own (a
network namespace, a bridge, a tap for the VM held to a slow rate with
tbf, busybox udhcpd) and one peer serving the image with `spirit nodus
serve`. The guest mounts its root from the peer's export through the
kernel's nbd client and `spirit nodus hydrate`, reaches `spirit: ready`
while the image is still being copied into RAM behind the reads (the
timeline and `spiritctl status` show both), and once the copy is whole and
checked the root's loop device reads the RAM copy: the peer is stopped and
every file of the root still reads."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
# Slow enough that the background copy outlasts the boot under TCG.
RATE = os.environ.get("SPIRIT_STREAM_RATE", "6mbit")


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def streaming_lan(tmp_path, image: str, manifest: str, rate: str, subnet: int, tap: str):
    """A bridge LAN 10.77.<subnet>.0/24 with a peer on 10.77.<subnet>.1;
    the guest's link held to `rate`. Yields the QEMU settings and the peer."""
    ns = f"spirit-stream{subnet}-{os.getpid()}"
    processes: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}

    def start(name: str, args: list) -> None:
        logs[name] = tmp_path / f"{name}.log"
        processes[name] = subprocess.Popen(["ip", "netns", "exec", ns, *map(str, args)], stdout=open(logs[name], "w"),
                                           stderr=subprocess.STDOUT)

    sh("ip", "netns", "add", ns)
    try:
        def inside(*args: str) -> None:
            sh("ip", "netns", "exec", ns, *args)

        inside("ip", "link", "set", "lo", "up")
        inside("ip", "link", "add", "br0", "type", "bridge")
        inside("ip", "addr", "add", f"10.77.{subnet}.1/24", "dev", "br0")
        inside("ip", "link", "set", "br0", "up")
        inside("ip", "tuntap", "add", tap, "mode", "tap")
        inside("ip", "link", "set", tap, "master", "br0")
        inside("ip", "link", "set", tap, "up")
        # What leaves the tap goes to the guest: the peer's blocks.
        inside("tc", "qdisc", "add", "dev", tap, "root", "tbf", "rate", rate, "burst", "64kb", "latency", "400ms")
        leases = tmp_path / "udhcpd.leases"
        leases.touch()
        config = tmp_path / "udhcpd.conf"
        config.write_text(f"start 10.77.{subnet}.100\nend 10.77.{subnet}.150\ninterface br0\nlease_file {leases}\n"
                          f"pidfile {tmp_path}/udhcpd.pid\nopt subnet 255.255.255.0\nopt router 10.77.{subnet}.1\n")
        start("udhcpd", ["busybox", "udhcpd", "-f", config])
        start("peer", [SPIRIT, "nodus", "serve", "--image", image, "--manifest", manifest])
        deadline = time.monotonic() + 60
        while "nodus: serving" not in logs["peer"].read_text():
            assert time.monotonic() < deadline, logs["peer"].read_text()
            assert processes["peer"].poll() is None, logs["peer"].read_text()
            time.sleep(0.2)
        assert "block list" in logs["peer"].read_text(), logs["peer"].read_text()
        yield {"wrapper": ["ip", "netns", "exec", ns], "nic": f"tap,ifname={tap},script=no,downscript=no,model=e1000",
               "server": f"10.77.{subnet}.1", "processes": processes, "logs": logs}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "del", ns])


@pytest.fixture
def slow_peer(tmp_path, system_image):
    yield from streaming_lan(tmp_path, system_image["image"], system_image["manifest"], RATE, 5, "sptap5")


def test_streaming_boot_is_ready_before_its_copy_ends_and_outlives_the_peer(boot, slow_peer, system_image):
    vm = boot(f"crom.mode=nodus crom.nodus.server={slow_peer['server']} crom.nodus.stream=1 crom.network.timeout=20",
              nics=[slow_peer["nic"]], wrapper=slow_peer["wrapper"])
    vm.expect(r"^spirit: nodus: crom\.nodus\.stream=1: the root will read the image from 10\.77\.5\.1:10809 while it is copied")
    vm.expect(rf"^spirit: boot source=nodus image={system_image['sha256'][:12]}$")
    vm.expect(r"^spirit: nodus: streaming rootfs\.squashfs \S+ from 10\.77\.5\.1:10809 as /dev/nbd\d+ under /dev/loop\d+")
    vm.expect(r"^spirit: ready$", timeout=400)
    vm.expect(r"spirit:/# ", partial=True)
    # The copy is still going: ready came first.
    state = json.loads(vm.answer("cat /run/spirit/hydrate.json"))
    assert state["state"] == "streaming" and state["blocks_present"] < state["blocks_total"], (state, vm.log_path)
    status = vm.answer("spiritctl status")
    assert "image: streaming " in status and "blocks (" in status and "10.77.5.1:10809" in status, status
    # The root reads through nbd now.
    assert vm.check("cat /sys/block/nbd0/pid 2>/dev/null || echo none") != "none"

    # Not anchored: the line may come right after the shell's prompt.
    vm.expect(r"spirit: nodus: rootfs\.squashfs is in RAM and checked \(SHA-256 \w+\): the root reads it through /dev/loop\d+",
              timeout=900)
    timeline = vm.timeline()["steps"]
    ready = [s for s in timeline if s["step"] == "ready"][-1]
    hydrate = [s for s in timeline if s["step"] == "hydrate"][-1]
    assert hydrate["ok"] and ready["end_ms"] < hydrate["end_ms"], (ready, hydrate)
    state = json.loads(vm.answer("cat /run/spirit/hydrate.json"))
    assert state["state"] == "done" and state["blocks_present"] == state["blocks_total"], state
    assert "image: done " in vm.answer("spiritctl status")

    # The peer goes away; the root's loop reads the RAM copy, nbd is free.
    slow_peer["processes"]["peer"].kill()
    slow_peer["processes"]["peer"].wait()
    assert vm.check("cat /sys/block/nbd0/pid 2>/dev/null || echo none") == "none"
    loop = vm.check("grep ' /run/spirit/lower ' /proc/mounts | cut -d' ' -f1 || true")
    backing = vm.check("cat /sys/block/$(grep -m1 squashfs /proc/mounts | cut -d' ' -f1 | cut -d/ -f3)/loop/backing_file")
    assert backing.endswith("/run/spirit/image/rootfs.squashfs"), (loop, backing)
    # Every file of the root reads, from RAM, with the page cache dropped.
    vm.check("sync; echo 3 > /proc/sys/vm/drop_caches")
    out = vm.check("find / -xdev -type f -exec cat {} + > /dev/null 2>/tmp/errors; echo rc=$?; wc -l < /tmp/errors", timeout=300)
    assert out.split()[0] == "rc=0", out
    image_sum = vm.check("sha256sum /run/spirit/image/rootfs.squashfs | cut -d' ' -f1", timeout=120)
    assert image_sum == system_image["sha256"]
    # Nodus serves the RAM copy later without hashing it again.
    assert vm.check("cat /run/spirit/image/rootfs.squashfs.verified | cut -d' ' -f1") == system_image["sha256"]
    assert "I/O error" not in vm.check("dmesg | tail -50")


@pytest.fixture
def vanishing_peer(tmp_path, system_image):
    # Slower still: the copy must be far from its end when the peer goes.
    yield from streaming_lan(tmp_path, system_image["image"], system_image["manifest"], "3mbit", 7, "sptap7")


def test_a_streaming_boot_whose_only_peer_vanishes_says_why_and_does_not_hang(boot, vanishing_peer):
    vm = boot(f"crom.mode=nodus crom.nodus.server={vanishing_peer['server']} crom.nodus.stream=1 crom.network.timeout=20",
              nics=[vanishing_peer["nic"]], wrapper=vanishing_peer["wrapper"])
    vm.expect(r"^spirit: ready$", timeout=600)
    vm.expect(r"spirit:/# ", partial=True)
    assert json.loads(vm.answer("cat /run/spirit/hydrate.json"))["state"] == "streaming"
    vanishing_peer["processes"]["peer"].kill()
    vanishing_peer["processes"]["peer"].wait()
    # The peer is named with why, and the copy's end is said: no silent hang.
    vm.expect(r"spirit: warning: nodus: dropped peer 10\.77\.7\.1:10809: .*; no peer is left", timeout=120)
    vm.expect(r"spirit: error: nodus: the image cannot be brought into RAM: no peer is left to read the image from "
              r"\(10\.77\.7\.1:10809: .*\); the root keeps reading what is in RAM through /dev/nbd0, and reads of the rest fail \(EIO\)",
              timeout=60)
    state = json.loads(vm.answer("cat /run/spirit/hydrate.json"))
    assert state["state"] == "failed" and "no peer is left" in state["problem"], state
    assert "image: failed " in vm.answer("spiritctl status")
    # What is in RAM still reads.
    assert vm.check("echo still here") == "still here"
