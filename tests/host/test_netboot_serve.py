"""`spirit serve netboot` answered by real clients on a LAN of network
namespaces: a bridge, dnsmasq as the LAN's ordinary DHCP server in a
namespace of its own, Spirit's proxy DHCP, TFTP and HTTP in another, and the
clients in a third (curl, busybox udhcpc) or in QEMU (OVMF's own PXE client
and the iPXE it loads). The media are stand-ins here (random bytes); the VM
test (tests/vm/test_netboot_serve.py) boots the real ones."""

import hashlib
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
LOADERS = Path("/usr/lib/ipxe")
SPIRIT_IP, DHCP_IP = "10.79.0.2", "10.79.0.1"


def sh(*args, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], check=check, **kwargs)


def wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class LAN:
    """Namespaces on one bridge: lan (the bridge, and a tap for QEMU),
    dhcp (dnsmasq), spirit (the netboot server), client."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        tag = os.getpid()
        self.ns = {name: f"nb-{name}-{tag}" for name in ["lan", "dhcp", "spirit", "client"]}
        self.tap = f"nbtap{tag % 10000}"
        self.processes: list[subprocess.Popen] = []

    def run(self, where: str, *args, **kwargs) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns[where], *args, **kwargs)

    def start(self, where: str, args: list, log: str) -> Path:
        path = self.tmp / log
        self.processes.append(subprocess.Popen(["ip", "netns", "exec", self.ns[where], *map(str, args)],
                                               stdout=open(path, "w"), stderr=subprocess.STDOUT))
        return path

    def up(self) -> None:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        self.run("lan", "ip", "link", "add", "br0", "type", "bridge")
        self.run("lan", "ip", "link", "set", "br0", "up")
        self.run("lan", "ip", "tuntap", "add", self.tap, "mode", "tap")
        self.run("lan", "ip", "link", "set", self.tap, "master", "br0")
        self.run("lan", "ip", "link", "set", self.tap, "up")
        for name, address in [("dhcp", DHCP_IP + "/24"), ("spirit", SPIRIT_IP + "/24"), ("client", None)]:
            self.run("lan", "ip", "link", "add", f"br-{name}", "type", "veth", "peer", "name", "eth0")
            self.run("lan", "ip", "link", "set", "eth0", "netns", self.ns[name])
            self.run("lan", "ip", "link", "set", f"br-{name}", "master", "br0")
            self.run("lan", "ip", "link", "set", f"br-{name}", "up")
            if address:
                self.run(name, "ip", "addr", "add", address, "dev", "eth0")
            self.run(name, "ip", "link", "set", "eth0", "up")

    def down(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns])


@pytest.fixture(scope="module")
def lan(tmp_path_factory):
    for tool in ["dnsmasq", "curl", "busybox", "tcpdump"]:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (scripts/deps.sh installs the test's packages)")
    for loader in ["undionly.kpxe", "ipxe.efi"]:
        if not (LOADERS / loader).exists():
            pytest.fail(f"no {LOADERS / loader}: apt-get install ipxe (scripts/deps.sh)")
    tmp = tmp_path_factory.mktemp("netboot")
    media = tmp / "media"
    media.mkdir()
    (media / "kernel").write_bytes(os.urandom(3 << 20))
    (media / "initramfs.zst").write_bytes(os.urandom(1 << 20) + b"end")
    network = LAN(tmp)
    try:
        network.up()
        leases = tmp / "dnsmasq.leases"
        dnsmasq = network.start("dhcp", ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
                                         "--bind-interfaces", "--dhcp-range=10.79.0.100,10.79.0.150,255.255.255.0,1h",
                                         f"--dhcp-leasefile={leases}", "--log-dhcp", "--user=root",
                                         f"--pid-file={tmp}/dnsmasq.pid"], "dnsmasq.log")
        spirit = network.start("spirit", [SPIRIT, "serve", "netboot", "--media", media, "--loaders", LOADERS,
                                          "--append", "console=ttyS0"], "netboot.log")
        wait_for(lambda: "netboot: serving" in spirit.read_text() or any(p.poll() is not None for p in network.processes),
                 "spirit serve netboot")
        assert all(p.poll() is None for p in network.processes), spirit.read_text() + dnsmasq.read_text()
        network.media = media
        network.log = spirit
        network.dnsmasq_log = dnsmasq
        yield network
    finally:
        network.down()


def curl(lan: LAN, *args: str) -> subprocess.CompletedProcess:
    return lan.run("client", "curl", "-sS", "--max-time", "20", *args, capture_output=True)


@pytest.fixture(scope="module")
def client_address(lan):
    """The client's address from dnsmasq: udhcpc is an ordinary DHCP
    client, and while it asks, tcpdump records every answer on its link."""
    capture = lan.tmp / "client-dhcp.pcap"
    tcpdump = subprocess.Popen(["ip", "netns", "exec", lan.ns["client"], "tcpdump", "-i", "eth0", "-n", "-U", "-w", str(capture),
                                "udp port 67 or udp port 68"], stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    script = lan.tmp / "udhcpc.script"
    script.write_text("#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\" && "
                      f"echo \"$ip $serverid\" > {lan.tmp}/udhcpc.bound\nexit 0\n")
    script.chmod(0o755)
    lan.run("client", "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "5", "-T", "2", "-s", script, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
    time.sleep(2)  # a late answer from anyone would be in the capture too
    tcpdump.terminate()
    tcpdump.wait()
    address, server = (lan.tmp / "udhcpc.bound").read_text().split()
    return {"address": address, "server": server, "capture": capture}


def dhcp_replies(capture: Path) -> list[dict]:
    """The BOOTREPLYs in a pcap: each one's server identifier and yiaddr."""
    data = capture.read_bytes()
    replies, offset = [], 24
    while offset + 16 <= len(data):
        length = struct.unpack("<I", data[offset + 8:offset + 12])[0]
        frame = data[offset + 16:offset + 16 + length]
        offset += 16 + length
        ip = 14
        payload = frame[ip + (frame[ip] & 15) * 4 + 8:]
        if len(payload) < 240 or payload[0] != 2:
            continue
        options, at = {}, 240
        while at < len(payload) and payload[at] != 255:
            if payload[at] == 0:
                at += 1
                continue
            options[payload[at]] = payload[at + 2:at + 2 + payload[at + 1]]
            at += 2 + payload[at + 1]
        replies.append({"server": ".".join(map(str, options.get(54, b""))), "yiaddr": ".".join(map(str, payload[16:20]))})
    return replies


def test_a_plain_dhcp_client_gets_its_address_from_dnsmasq_only(lan, client_address):
    assert client_address["server"] == DHCP_IP
    assert re.fullmatch(r"10\.79\.0\.1[0-5]\d", client_address["address"]), client_address
    replies = dhcp_replies(client_address["capture"])
    assert replies, "tcpdump saw no DHCP answer at all"
    assert {r["server"] for r in replies} == {DHCP_IP}, replies
    # Spirit saw the DISCOVER and said why it kept quiet.
    wait_for(lambda: "not a PXE client (vendor class 'udhcp" in lan.log.read_text(), "Spirit's note on the udhcpc client", 5)


def test_http_range_requests(lan, client_address):
    kernel = (lan.media / "kernel").read_bytes()
    url = f"http://{SPIRIT_IP}/kernel"
    whole = curl(lan, "-o", "-", "-w", "%{http_code}", url)
    assert whole.stdout[-3:] == b"200" and hashlib.sha256(whole.stdout[:-3]).digest() == hashlib.sha256(kernel).digest()
    part = curl(lan, "-o", "-", "-w", "%{http_code}", "-r", "1000-1999", url)
    assert part.stdout[-3:] == b"206" and part.stdout[:-3] == kernel[1000:2000]
    tail = curl(lan, "-o", "-", "-w", "%{http_code}", "-r", "-100", url)
    assert tail.stdout[-3:] == b"206" and tail.stdout[:-3] == kernel[-100:]
    headers = curl(lan, "-D", "-", "-o", "/dev/null", "-r", f"{len(kernel)}-", url).stdout.decode()
    assert headers.startswith("HTTP/1.1 416 "), headers
    assert f"Content-Range: bytes */{len(kernel)}" in headers
    head = curl(lan, "-I", url).stdout.decode()
    assert head.startswith("HTTP/1.1 200 ") and f"Content-Length: {len(kernel)}" in head and "Accept-Ranges: bytes" in head
    missing = curl(lan, "-o", "/dev/null", "-w", "%{http_code}", f"http://{SPIRIT_IP}/etc/passwd")
    assert missing.stdout == b"404"


def test_the_boot_script_names_this_server_and_its_nodus_peer(lan, client_address):
    script = curl(lan, f"http://{SPIRIT_IP}/boot.ipxe").stdout.decode()
    assert script.startswith("#!ipxe\n"), script
    assert f"\nkernel http://{SPIRIT_IP}/kernel initrd=initramfs.zst console=ttyS0 crom.mode=nodus crom.nodus.server={SPIRIT_IP}:10809\n" in script
    assert f"\ninitrd http://{SPIRIT_IP}/initramfs.zst\n" in script and script.endswith("\nboot\n")


def test_tftp_serves_ipxe_byte_exact_and_refuses_paths_outside(lan, client_address, tmp_path):
    expected = (LOADERS / "undionly.kpxe").read_bytes()
    for options in [[], ["--tftp-blksize", "1432"]]:
        out = tmp_path / "undionly.kpxe"
        curl(lan, *options, "-o", str(out), f"tftp://{SPIRIT_IP}/undionly.kpxe")
        assert out.read_bytes() == expected, options
    assert "blksize 1432" in lan.log.read_text()
    refused = lan.run("client", "curl", "-sS", "--max-time", "20", "--path-as-is", "-o", "/dev/null",
                      f"tftp://{SPIRIT_IP}/../../etc/passwd", capture_output=True, check=False)
    assert refused.returncode != 0
    wait_for(lambda: "access violation: '/../../etc/passwd' is outside the TFTP root" in lan.log.read_text()
             or "access violation: '../../etc/passwd' is outside the TFTP root" in lan.log.read_text(), "the refusal", 5)


def test_a_uefi_pxe_client_gets_ipxe_then_ipxe_gets_the_script(lan):
    """OVMF's own PXE client (no iPXE in it: its user class is empty) asks
    with architecture 7 and gets ipxe.efi over TFTP; that iPXE asks again,
    says it is iPXE, and gets the boot script over HTTP: the loop is broken."""
    ovmf = Path("/usr/share/OVMF/OVMF_CODE.fd")
    if not ovmf.exists():
        pytest.fail("no OVMF (apt-get install ovmf)")
    serial = lan.tmp / "ovmf-serial.log"
    before = len(lan.log.read_text())  # the other tests fetched boot.ipxe with curl
    qemu = subprocess.Popen(["ip", "netns", "exec", lan.ns["lan"], "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "512",
                             "-display", "none", "-monitor", "none", "-serial", f"file:{serial}", "-no-reboot", "-boot", "n",
                             "-drive", f"if=pflash,format=raw,readonly=on,file={ovmf}",
                             # No option ROM on the NIC: OVMF's own virtio-net driver and PXE
                             # client, not the iPXE that QEMU's ROMs would bring.
                             "-netdev", f"tap,id=n0,ifname={lan.tap},script=no,downscript=no",
                             "-device", "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:4e:42:07"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "GET /boot.ipxe 200" in lan.log.read_text()[before:], "iPXE (loaded by OVMF's PXE) to fetch boot.ipxe", 300)
    finally:
        qemu.kill()
        qemu.wait()
    log = lan.log.read_text()[before:]
    assert re.search(r"offered ipxe\.efi to 52:54:00:4e:42:07 \(architecture 7\)", log), log
    size = (LOADERS / "ipxe.efi").stat().st_size
    assert re.search(rf"sent ipxe\.efi \({size} bytes", log), log
    assert re.search(r"(offered|acknowledged) http://10\.79\.0\.2/boot\.ipxe to 52:54:00:4e:42:07 \(architecture 7, iPXE\)", log), log
    # The LAN's DHCP server gave the address.
    assert "52:54:00:4e:42:07" in lan.dnsmasq_log.read_text()
