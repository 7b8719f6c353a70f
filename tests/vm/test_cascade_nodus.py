"""The Nodus source for real: a LAN of its own (network namespaces, a
bridge, a tap for the VM, busybox udhcpd), a peer serving the image with
`spirit nodus serve`, and a rogue peer whose image is signed with another
key and claims to be newer. The guest finds both by broadcast, refuses the
rogue, boots from the peer into RAM, and after the boot no NBD device is in
use: nothing depends on the network. Then three peers serving the same
image: the guest reads from all of them at once; one serves a corrupted
copy and is dropped by name, one is killed in the middle of the copy, and
the boot completes from the third."""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import _artifact

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


@pytest.fixture
def lan(tmp_path, system_image):
    ns, rogue_ns = f"spirit-lan-{os.getpid()}", f"spirit-rogue-{os.getpid()}"
    tap = "sptap0"
    processes: list[subprocess.Popen] = []

    def start(namespace: str, args: list, log: str) -> Path:
        path = tmp_path / log
        processes.append(subprocess.Popen(["ip", "netns", "exec", namespace, *map(str, args)], stdout=open(path, "w"),
                                          stderr=subprocess.STDOUT))
        return path

    sh("ip", "netns", "add", ns)
    sh("ip", "netns", "add", rogue_ns)
    try:
        def inside(*args: str) -> None:
            sh("ip", "netns", "exec", ns, *args)

        inside("ip", "link", "set", "lo", "up")
        inside("ip", "link", "add", "br0", "type", "bridge")
        inside("ip", "addr", "add", "10.77.0.1/24", "dev", "br0")
        inside("ip", "link", "set", "br0", "up")
        inside("ip", "tuntap", "add", tap, "mode", "tap")
        inside("ip", "link", "set", tap, "master", "br0")
        inside("ip", "link", "set", tap, "up")
        inside("ip", "link", "add", "vpeer", "type", "veth", "peer", "name", "vrogue")
        inside("ip", "link", "set", "vrogue", "netns", rogue_ns)
        inside("ip", "link", "set", "vpeer", "master", "br0")
        inside("ip", "link", "set", "vpeer", "up")
        sh("ip", "netns", "exec", rogue_ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", rogue_ns, "ip", "addr", "add", "10.77.0.2/24", "dev", "vrogue")
        sh("ip", "netns", "exec", rogue_ns, "ip", "link", "set", "vrogue", "up")

        leases = tmp_path / "udhcpd.leases"
        leases.touch()
        config = tmp_path / "udhcpd.conf"
        config.write_text(f"start 10.77.0.100\nend 10.77.0.150\ninterface br0\nlease_file {leases}\n"
                          f"pidfile {tmp_path}/udhcpd.pid\nopt subnet 255.255.255.0\nopt router 10.77.0.1\n")
        start(ns, ["busybox", "udhcpd", "-f", config], "udhcpd.log")

        # The good peer also serves the model pack (`make model-pack`): a
        # boot from it copies the pack into RAM as a boot from a medium does.
        models = _artifact("SPIRIT_MODELS", "out/packs/models")
        peer_log = start(ns, [SPIRIT, "nodus", "serve", "--image", system_image["image"], "--manifest", system_image["manifest"],
                              "--models", models], "peer.log")
        # The rogue: the same bytes, a manifest signed with a key the
        # initramfs does not trust, and a newer build time to be chosen first.
        rogue_key = tmp_path / "rogue-test-only.key"
        sh(str(SPIRIT), "image", "keygen", str(rogue_key))
        rogue_manifest = tmp_path / "rogue-manifest.json"
        sh(str(SPIRIT), "image", "manifest", "--image", str(system_image["image"]), "--key", str(rogue_key),
           "--version", "9.9.9-rogue", "--build-time", "4000000000", "--out", str(rogue_manifest))
        rogue_log = start(rogue_ns, [SPIRIT, "nodus", "serve", "--image", system_image["image"], "--manifest", rogue_manifest],
                          "rogue.log")
        deadline = time.monotonic() + 60
        while not all("nodus: serving" in log.read_text() for log in [peer_log, rogue_log]):
            assert time.monotonic() < deadline, peer_log.read_text() + rogue_log.read_text()
            assert all(p.poll() is None for p in processes), peer_log.read_text() + rogue_log.read_text()
            time.sleep(0.2)
        yield {"wrapper": ["ip", "netns", "exec", ns], "nic": f"tap,ifname={tap},script=no,downscript=no,model=e1000"}
    finally:
        for process in processes:
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "del", ns])
        subprocess.run(["ip", "netns", "del", rogue_ns])


def test_boots_from_a_peer_found_by_broadcast_and_refuses_a_rogue(boot, lan, system_image):
    vm = boot("crom.mode=nodus crom.network.timeout=20", nics=[lan["nic"]], wrapper=lan["wrapper"])
    vm.expect(r"^spirit: nodus: 2 peer\(s\): ")
    # The rogue claims the newest image and is tried first: its manifest's
    # signature does not match the key in this initramfs.
    vm.expect(r"^spirit: warning: nodus: peer 10\.77\.0\.2:10809 version 9\.9\.9-rogue .*: the signature does not match.*; skipped$")
    vm.expect(r"^spirit: nodus: chose peer 10\.77\.0\.1:10809: version \S+, image \w+, the newest trusted$")
    vm.expect(rf"^spirit: boot source=nodus image={system_image['sha256'][:12]}$")
    vm.expect(r"^spirit: copying rootfs.squashfs into RAM: 100%")
    vm.expect(r"^spirit: ready$", timeout=180)
    vm.expect(r"spirit:/# ", partial=True)
    # The peer's model pack came with the image, checked, before the network was let go.
    models = json.loads(vm.check("spirit ai models --json"))
    assert [m["name"] for m in models] == ["smollm2-135m"], models
    assert "smollm2-135m" in vm.check("cat /run/spirit/models/models 2>/dev/null; ls /run/spirit/models")
    # After the boot no NBD device is in use and no mount is on the network.
    assert vm.check("cat /sys/block/nbd0/size 2>/dev/null || echo 0") == "0"
    assert "nbd" not in vm.check("cat /proc/mounts")


@pytest.fixture
def three_peers(tmp_path, system_image):
    """A bridge LAN with three peers serving the same image: 10.77.1.1 (on
    the bridge), 10.77.1.2 and 10.77.1.3 (each in a namespace of its own
    behind a veth). The .3 peer's copy is corrupted after it started
    serving (it checks its image first): a byte of every MiB block flipped.
    The link to the guest is held to 100 Mbit/s so that the copy lasts long
    enough to kill a peer in the middle of it."""
    pid = os.getpid()
    ns = f"spirit-3lan-{pid}"
    others = {2: f"spirit-p2-{pid}", 3: f"spirit-p3-{pid}"}
    tap = "sptap1"
    processes: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}

    def start(name: str, namespace: str, args: list) -> None:
        logs[name] = tmp_path / f"{name}.log"
        processes[name] = subprocess.Popen(["ip", "netns", "exec", namespace, *map(str, args)], stdout=open(logs[name], "w"),
                                           stderr=subprocess.STDOUT)

    sh("ip", "netns", "add", ns)
    for other in others.values():
        sh("ip", "netns", "add", other)
    try:
        def inside(*args: str) -> None:
            sh("ip", "netns", "exec", ns, *args)

        inside("ip", "link", "set", "lo", "up")
        inside("ip", "link", "add", "br0", "type", "bridge")
        inside("ip", "addr", "add", "10.77.1.1/24", "dev", "br0")
        inside("ip", "link", "set", "br0", "up")
        inside("ip", "tuntap", "add", tap, "mode", "tap")
        inside("ip", "link", "set", tap, "master", "br0")
        inside("ip", "link", "set", tap, "up")
        inside("tc", "qdisc", "add", "dev", tap, "root", "tbf", "rate", "100mbit", "burst", "256kb", "latency", "200ms")
        for last, other in others.items():
            inside("ip", "link", "add", f"vp{last}", "type", "veth", "peer", "name", f"vq{last}")
            inside("ip", "link", "set", f"vq{last}", "netns", other)
            inside("ip", "link", "set", f"vp{last}", "master", "br0")
            inside("ip", "link", "set", f"vp{last}", "up")
            sh("ip", "netns", "exec", other, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", other, "ip", "addr", "add", f"10.77.1.{last}/24", "dev", f"vq{last}")
            sh("ip", "netns", "exec", other, "ip", "link", "set", f"vq{last}", "up")

        leases = tmp_path / "udhcpd.leases"
        leases.touch()
        config = tmp_path / "udhcpd.conf"
        config.write_text(f"start 10.77.1.100\nend 10.77.1.150\ninterface br0\nlease_file {leases}\n"
                          f"pidfile {tmp_path}/udhcpd.pid\nopt subnet 255.255.255.0\nopt router 10.77.1.1\n")
        start("udhcpd", ns, ["busybox", "udhcpd", "-f", config])

        corrupted = tmp_path / "corrupted.squashfs"
        corrupted.write_bytes(Path(system_image["image"]).read_bytes())
        for name, namespace, image in [("peer1", ns, system_image["image"]), ("peer2", others[2], system_image["image"]),
                                       ("peer3", others[3], corrupted)]:
            start(name, namespace, [SPIRIT, "nodus", "serve", "--image", image, "--manifest", system_image["manifest"],
                                    "--models", _artifact("SPIRIT_MODELS", "out/packs/models")])
        deadline = time.monotonic() + 60
        while not all("nodus: serving" in logs[p].read_text() for p in ["peer1", "peer2", "peer3"]):
            assert time.monotonic() < deadline, "".join(log.read_text() for log in logs.values())
            assert all(p.poll() is None for p in processes.values()), "".join(log.read_text() for log in logs.values())
            time.sleep(0.2)
        assert "block list" in logs["peer1"].read_text(), logs["peer1"].read_text()
        size = corrupted.stat().st_size
        with open(corrupted, "r+b") as f:
            for offset in range(4321, size, 1 << 20):
                f.seek(offset)
                byte = f.read(1)
                f.seek(offset)
                f.write(bytes([byte[0] ^ 0xFF]))
        yield {"wrapper": ["ip", "netns", "exec", ns], "nic": f"tap,ifname={tap},script=no,downscript=no,model=e1000",
               "processes": processes, "logs": logs}
    finally:
        for process in processes.values():
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "del", ns])
        for other in others.values():
            subprocess.run(["ip", "netns", "del", other])


def test_reads_from_several_peers_and_survives_a_killed_and_a_lying_one(boot, three_peers, system_image):
    vm = boot("crom.mode=nodus crom.network.timeout=20", nics=[three_peers["nic"]], wrapper=three_peers["wrapper"])
    vm.expect(r"^spirit: nodus: 3 peer\(s\): ")
    vm.expect(r"^spirit: nodus: chose peer 10\.77\.1\.\d:10809: version \S+, image \w+, the newest trusted "
              r"\(and 2 more peer\(s\) serving the same image: ")
    vm.expect(r"^spirit: nodus: reading the image from 3 peer\(s\) .*each 1024 KiB block checked against the signed block list$")
    # A quarter of the image is in RAM (the first progress line): one peer goes away in the middle of the copy.
    vm.expect(r"^spirit: copying rootfs\.squashfs into RAM: \d+% ", timeout=120)
    three_peers["processes"]["peer2"].kill()
    summary = vm.expect(r"^spirit: nodus: read the image from (.*)$", timeout=180).group(1)
    blocks = {peer: int(n) for peer, n in re.findall(r"10\.77\.1\.(\d):10809 (\d+) blocks?", summary)}
    size = Path(system_image["image"]).stat().st_size
    assert sum(blocks.values()) == (size + (1 << 20) - 1) >> 20, summary
    assert blocks["1"] > 0 and blocks["3"] == 0, summary
    assert "10.77.1.2:10809" in summary and "(dropped)" in summary, summary
    # Each peer that went wrong is named with why (in whichever order it happened).
    assert re.search(r"^spirit: warning: nodus: dropped peer 10\.77\.1\.3:10809: block \d+ does not match the signed block list",
                     vm.console, re.M), vm.log_path
    assert re.search(r"^spirit: warning: nodus: dropped peer 10\.77\.1\.2:10809: .*; its blocks go to 10\.77\.1\.1:10809",
                     vm.console, re.M), vm.log_path
    assert not re.search(r"dropped peer 10\.77\.1\.1:", vm.console), vm.log_path
    vm.expect(r"^spirit: ready$", timeout=180)
    vm.expect(r"spirit:/# ", partial=True)
    assert vm.check("cat /sys/block/nbd0/size 2>/dev/null || echo 0") == "0"
    # The model pack came from a peer still there, even when the killed one was the one chosen.
    models = json.loads(vm.check("spirit ai models --json"))
    assert [m["name"] for m in models] == ["smollm2-135m"], models
