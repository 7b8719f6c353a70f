"""A PC with no disk boots from a running Spirit (issue 20, item 1): a LAN of
its own (network namespaces, a bridge, a tap for the VM), dnsmasq in a
namespace of its own as the LAN's ordinary DHCP server, and on the Spirit
side `spirit serve netboot --media <this build>` beside `spirit nodus serve`.
QEMU boots with -boot n and no disk: its iPXE ROM (Debian's ipxe-qemu) takes
its address from dnsmasq and the boot script's URL from Spirit's proxy DHCP
(the iPXE user class), loads Spirit's kernel and initramfs over HTTP, and
the kernel boots with crom.mode=nodus from the peer to `spirit: ready`."""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_media
from harness import Disk

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
SERVER = "10.76.0.1"


def sh(*args) -> None:
    subprocess.run([str(a) for a in args], check=True)


@pytest.fixture
def lan(tmp_path, kernel, initramfs, system_image):
    tag = os.getpid()
    ns, dhcp_ns, tap = f"nbvm-lan-{tag}", f"nbvm-dhcp-{tag}", "nbvtap0"
    processes: list[subprocess.Popen] = []

    def start(namespace: str, args: list, log: str) -> Path:
        path = tmp_path / log
        processes.append(subprocess.Popen(["ip", "netns", "exec", namespace, *map(str, args)], stdout=open(path, "w"),
                                          stderr=subprocess.STDOUT))
        return path

    # The media as a booted Spirit holds them, from this build.
    media = tmp_path / "media"
    media.mkdir()
    for name, source in [("kernel", kernel), ("initramfs.zst", initramfs), ("rootfs.squashfs", system_image["image"]),
                         ("manifest.json", system_image["manifest"])]:
        (media / name).symlink_to(Path(source).resolve())

    sh("ip", "netns", "add", ns)
    sh("ip", "netns", "add", dhcp_ns)
    try:
        def inside(*args) -> None:
            sh("ip", "netns", "exec", ns, *args)

        inside("ip", "link", "set", "lo", "up")
        inside("ip", "link", "add", "br0", "type", "bridge")
        inside("ip", "addr", "add", f"{SERVER}/24", "dev", "br0")
        inside("ip", "link", "set", "br0", "up")
        inside("ip", "tuntap", "add", tap, "mode", "tap")
        inside("ip", "link", "set", tap, "master", "br0")
        inside("ip", "link", "set", tap, "up")
        inside("ip", "link", "add", "vdhcp", "type", "veth", "peer", "name", "eth0")
        inside("ip", "link", "set", "eth0", "netns", dhcp_ns)
        inside("ip", "link", "set", "vdhcp", "master", "br0")
        inside("ip", "link", "set", "vdhcp", "up")
        sh("ip", "netns", "exec", dhcp_ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", dhcp_ns, "ip", "addr", "add", "10.76.0.2/24", "dev", "eth0")
        sh("ip", "netns", "exec", dhcp_ns, "ip", "link", "set", "eth0", "up")

        dnsmasq_log = start(dhcp_ns, ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
                                      "--bind-interfaces", "--dhcp-range=10.76.0.100,10.76.0.150,255.255.255.0,1h",
                                      f"--dhcp-leasefile={tmp_path}/dnsmasq.leases", "--log-dhcp", "--user=root",
                                      f"--pid-file={tmp_path}/dnsmasq.pid"], "dnsmasq.log")
        peer_log = start(ns, [SPIRIT, "nodus", "serve", "--image", media / "rootfs.squashfs", "--manifest", media / "manifest.json"],
                         "peer.log")
        netboot_log = start(ns, [SPIRIT, "serve", "netboot", "--media", media, "--append", "console=ttyS0 crom.network.timeout=30"],
                            "netboot.log")
        deadline = time.monotonic() + 60
        while not ("nodus: serving" in peer_log.read_text() and "netboot: serving" in netboot_log.read_text()):
            assert time.monotonic() < deadline, peer_log.read_text() + netboot_log.read_text()
            assert all(p.poll() is None for p in processes), peer_log.read_text() + netboot_log.read_text() + dnsmasq_log.read_text()
            time.sleep(0.2)
        yield {"wrapper": ["ip", "netns", "exec", ns], "nic": f"tap,ifname={tap},script=no,downscript=no,model=e1000",
               "netboot_log": netboot_log, "dnsmasq_log": dnsmasq_log}
    finally:
        for process in processes:
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "del", ns])
        subprocess.run(["ip", "netns", "del", dhcp_ns])


def test_a_diskless_pc_boots_from_a_running_spirit(boot_firmware, lan, system_image):
    vm = boot_firmware(nics=[lan["nic"] + ",mac=52:54:00:4e:42:01"], extra_args=["-boot", "n"], wrapper=lan["wrapper"])
    vm.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 1", 400)
    log = lan["netboot_log"].read_text()
    # iPXE (the ROM) got the script from the proxy DHCP, not iPXE again...
    assert re.search(r"offered http://10\.76\.0\.1/boot\.ipxe to 52:54:00:4e:42:01 \(architecture 0, iPXE\)", log), log
    # ...its address from dnsmasq...
    assert re.search(r"DHCPACK\(eth0\) 10\.76\.0\.1\d\d 52:54:00:4e:42:01", lan["dnsmasq_log"].read_text())
    # ...and the script, the kernel and the initramfs from Spirit over HTTP.
    for path in ["/boot.ipxe", "/kernel", "/initramfs.zst"]:
        assert re.search(rf"GET {re.escape(path)} 200", log), (path, log)
    outcome = vm.expect(r"^spirit: boot source=(\S+) image=(\w+)$", 300)
    assert (outcome.group(1), outcome.group(2)) == ("nodus", system_image["sha256"][:12]), outcome.group(0)
    vm.expect(r"^spirit: ready$", 300)
    vm.expect(r"spirit:/# ", partial=True)
    # The booted PC has the netboot service too, read by its supervisor and
    # off until someone turns it on.
    status = vm.check("spiritctl status netboot")
    assert re.search(r"netboot\s+stopped.*disabled", status), status


def test_a_spirit_booted_with_crom_netboot_serves_its_own_media(boot, tmp_path, kernel, initramfs, system_image):
    # A stick with the kernel and initramfs beside the image: with
    # crom.netboot=on stage 1 keeps both in RAM, and the netboot service,
    # turned on for this boot, serves them without --media.
    stick = make_media(tmp_path, {"rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"],
                                  "kernel": Path(kernel), "initramfs.zst": Path(initramfs)})
    vm = boot("crom.netboot=on", disks=[Disk(str(stick))])
    vm.expect(r"^spirit: netboot: kept kernel and initramfs\.zst of /dev/vda \(ext4, CROM_SPIRIT\) in /run/spirit/boot "
              r"\(crom\.netboot=on\)$")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    vm.check("! grep -q ' /run/spirit/media' /proc/mounts")  # the medium is let go as on any boot
    vm.check("spiritctl start netboot")
    deadline = time.monotonic() + 60
    while not re.search(r"netboot\s+running", vm.check("spiritctl status netboot")):
        assert time.monotonic() < deadline, vm.check("spiritctl status netboot; spiritctl logs netboot")
        time.sleep(0.5)
    script = vm.check("wget -q -O - http://127.0.0.1/boot.ipxe")
    assert script.startswith("#!ipxe") and "crom.mode=nodus" in script, script
    vm.check("wget -q -O /tmp/kernel http://127.0.0.1/kernel && cmp /tmp/kernel /run/spirit/boot/kernel")
    vm.check("wget -q -O /tmp/initramfs http://127.0.0.1/initramfs.zst && cmp /tmp/initramfs /run/spirit/boot/initramfs.zst")
