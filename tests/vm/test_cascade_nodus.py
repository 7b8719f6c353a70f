"""The Nodus source for real: a LAN of its own (network namespaces, a
bridge, a tap for the VM, busybox udhcpd), a peer serving the image with
`spirit nodus serve`, and a rogue peer whose image is signed with another
key and claims to be newer. The guest finds both by broadcast, refuses the
rogue, boots from the peer into RAM, and after the boot no NBD device is in
use: nothing depends on the network."""

import json
import os
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
    vm.expect(r"^spirit: warning: nodus: peer 10\.77\.0\.2:10809 version 9\.9\.9-rogue .*: the signature does not match")
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
