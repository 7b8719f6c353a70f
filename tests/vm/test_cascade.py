"""The boot cascade on a real kernel: parasite (NTFS through ntfs-3g),
usb (a stick attached late, found through uevents), http (a server on the
host through QEMU user networking: 500, redirect loop, silence, a body cut
short and resumed; HTTPS with a test CA, and a certificate refused), the
rescue shell and its tools, crom.mode= forcing a source. Each boot checks
several things: a TCG boot costs seconds."""

import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import make_media
from harness import Disk

REASON_LINE = r"^spirit: {source}: (.*)$"


# -- media -------------------------------------------------------------------

def make_ntfs_disk(directory: Path, files: dict[str, Path], folder: str = "CromSpirit") -> Path:
    """An MBR disk with one NTFS partition (type 7) holding `folder`/files,
    made with mkntfs and filled through a host ntfs-3g (FUSE) mount."""
    total = sum(Path(source).stat().st_size for source in files.values())
    volume = directory / "ntfs-volume.img"
    with open(volume, "wb") as f:
        f.truncate(total + (total >> 2) + (32 << 20))
    subprocess.run(["mkntfs", "-F", "-Q", "-q", "-L", "Windows", "-p", "2048", "-H", "16", "-S", "63", str(volume)],
                   check=True, stderr=subprocess.DEVNULL)
    mount = directory / "ntfs-mount"
    mount.mkdir()
    subprocess.run(["ntfs-3g", str(volume), str(mount)], check=True)
    try:
        (mount / folder).mkdir()
        for name, source in files.items():
            shutil.copyfile(source, mount / folder / name)
        (mount / "Windows").mkdir()
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    disk = directory / "windows-disk.img"
    offset = 2048 * 512
    with open(disk, "wb") as f:
        f.truncate(offset + volume.stat().st_size)
    # The MBR by hand (one partition entry: type 7, LBA start, sector count).
    sectors = volume.stat().st_size // 512
    entry = bytes([0, 0xFF, 0xFF, 0xFF, 0x07, 0xFF, 0xFF, 0xFF]) + (2048).to_bytes(4, "little") + sectors.to_bytes(4, "little")
    with open(disk, "r+b") as f:
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")
    subprocess.run(["dd", f"if={volume}", f"of={disk}", "bs=1M", f"seek={offset}", "oflag=seek_bytes", "conv=notrunc",
                    "status=none"], check=True)
    volume.unlink()
    return disk


def media_files(system_image) -> dict[str, Path]:
    return {"rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"]}


# -- an HTTP server on the host, with misbehaving paths ----------------------

class MediaServer:
    """Serves the media files under several base paths:
    /ok/    as they are, with Range;
    /cut/   the first image request cut at half (Range requests honoured);
    /e500/  500 for everything;
    /loop/  a redirect to itself;
    /slow/  never answers (the client's idle timeout);
    /trickle/ answers, then sends a byte a second (the speed floor)."""

    def __init__(self, files: dict[str, Path], tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.files = {name: Path(path).read_bytes() for name, path in files.items()}
        self.cuts = 0
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(f"{self.path} {self.headers.get('Range', '')}".strip())
                parts = self.path.split("/")
                kind, name = (parts[1], parts[2]) if len(parts) >= 3 else ("", "")
                if kind == "e500":
                    return self.reply(500, b"broken\n", reason="Internal Server Error")
                if kind == "loop":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if kind == "slow":
                    time.sleep(40)
                    return
                if kind == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "4096")
                    self.end_headers()
                    try:
                        for _ in range(60):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(1)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                body = server.files.get(name)
                if kind not in ("ok", "cut") or body is None:
                    return self.reply(404, b"not here\n")
                start = 0
                range_header = self.headers.get("Range")
                if range_header:
                    start = int(re.match(r"bytes=(\d+)-", range_header).group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Connection", "close")
                self.end_headers()
                if kind == "cut" and name.endswith(".squashfs") and not range_header and server.cuts == 0:
                    server.cuts += 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def reply(self, status, body, reason=None):
                self.send_response(status, reason)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, kind: str) -> str:
        # QEMU user networking: the guest reaches the host's loopback as 10.0.2.2.
        return f"{'https' if self.tls else 'http'}://10.0.2.2:{self.port}/{kind}/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def built_test_ca() -> Path:
    """make vm-test's test CA (out/test-ca): ca.pem, ca.key, and
    initramfs.zst, this build's initramfs trusting it too (EXTRA_CA)."""
    directory = Path(os.environ.get("SPIRIT_TEST_CA", "out/test-ca"))
    if not (directory / "initramfs.zst").exists():
        pytest.skip(f"no {directory}/initramfs.zst (make vm-test builds it)")
    return directory


def throwaway_ca(directory: Path) -> Path:
    """A CA that no initramfs trusts: ca.pem and ca.key in `directory`."""
    directory.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", directory / "ca.key", "-out", directory / "ca.pem", "-days", "2", "-subj", "/CN=Throwaway CA"],
                   check=True, capture_output=True)
    return directory


def signed_server_context(directory: Path, ca: Path) -> ssl.SSLContext:
    """A TLS server context with a certificate for 10.0.2.2 (the host, as
    QEMU's guest sees it), signed now by the CA in `ca`, valid from
    yesterday: a TCG guest's clock may run behind the host's."""
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", "/CN=10.0.2.2", "-addext", "subjectAltName=IP:10.0.2.2"],
                   check=True, capture_output=True)
    # `openssl ca`, not `openssl x509 -req`: OpenSSL 3.0 sets a start date only there.
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("1000\n")
    (directory / "ca.cnf").write_text(f"[ca]\ndefault_ca = test\n[test]\ndatabase = {directory}/index.txt\n"
                                      f"new_certs_dir = {directory}\nserial = {directory}/serial\ndefault_md = sha256\n"
                                      "policy = anything\ncopy_extensions = copy\n[anything]\ncommonName = supplied\n")
    yesterday = time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - 86400))
    subprocess.run(["openssl", "ca", "-batch", "-config", directory / "ca.cnf", "-cert", ca / "ca.pem", "-keyfile", ca / "ca.key",
                    "-in", csr, "-out", cert, "-notext", "-startdate", yesterday, "-days", "2"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def source_reasons(vm) -> dict[str, str]:
    """The lines after `No Spirit found`: one `spirit: <source>: <reason>` each."""
    text = vm.console
    start = text.rfind("spirit: No Spirit found. Awaiting network or media...")
    assert start >= 0, f"no 'No Spirit found' message; log: {vm.log_path}"
    reasons = {}
    for line in text[start:].splitlines()[1:]:
        match = re.match(r"^spirit: (parasite|usb|http|nodus): (.*)$", line)
        if not match:
            break
        reasons[match.group(1)] = match.group(2)
    return reasons


# -- the tests -----------------------------------------------------------------

def test_parasite_is_preferred_and_read_only(boot, tmp_path, system_image):
    windows = make_ntfs_disk(tmp_path, media_files(system_image), folder="cromspirit")
    stick = make_media(tmp_path, media_files(system_image))
    vm = boot("", disks=[Disk(str(windows), id="windows"), Disk(str(stick), id="stick")])
    # Both are there; parasite comes first in the order of preference. The
    # folder's case does not matter; Debian's 6.1 has no ntfs3: ntfs-3g.
    vm.expect(rf"^spirit: boot source=parasite image={system_image['sha256'][:12]}$")
    vm.expect(r"^spirit: ready$")
    steps = {step["step"]: step for step in vm.timeline()["steps"]}
    assert re.match(r"parasite: /dev/vda1 \(ntfs, Windows, ntfs-3g, read-only\)", steps["cascade"]["detail"]), steps["cascade"]
    vm.expect(r"spirit:/# ", partial=True)
    # Nothing of either disk stays mounted: the image is in RAM.
    mounts = vm.check("cat /proc/mounts")
    assert "/dev/vd" not in mounts and "fuseblk" not in mounts, mounts
    # The boot recorded its medium, the folder in its own case; persistence
    # does not write to the Windows partition, and says what would work.
    medium = json.loads(vm.check("cat /run/spirit/boot-medium.json"))
    assert medium["source"] == "parasite" and medium["device"] == "/dev/vda1" and medium["directory"] == "cromspirit", medium
    status, out = vm.run("spirit persist commit 2>&1")
    assert status == 111 and "is the Windows partition, which Spirit only ever mounts read-only" in out, out


@pytest.mark.parametrize("controller", ["ahci", "nvme"])
def test_parasite_on_ahci_and_nvme_without_a_window(boot, tmp_path, system_image, controller):
    # A PC's internal disk: complete once coldplug reaches its fixed point
    # (the storage driver's load returns after its probe and partition
    # scan), so the parasite source decides then, with no quiet window.
    windows = make_ntfs_disk(tmp_path, media_files(system_image))
    drive = ["-drive", f"file={windows},format=raw,if=none,id=windows"]
    device = {"ahci": ["-device", "ahci,id=ahci", "-device", "ide-hd,drive=windows,bus=ahci.0"],
              "nvme": ["-device", "nvme,drive=windows,serial=spirit-nvme"]}[controller]
    vm = boot("crom.debug=1", extra_args=drive + device)
    vm.expect(rf"^spirit: boot source=parasite image={system_image['sha256'][:12]}$")
    vm.expect(r"^spirit: ready$")
    steps = {step["step"]: step for step in vm.timeline()["steps"]}
    name = {"ahci": r"/dev/sda1", "nvme": r"/dev/nvme0n1p1"}[controller]
    assert re.match(rf"parasite: {name} \(ntfs, Windows, ntfs-3g, read-only\)", steps["cascade"]["detail"]), steps["cascade"]
    # Coldplug's fixed point settled the devices: no wait for a quiet window.
    assert re.search(r"^spirit: debug: parasite: devices settled: coldplug's fixed point$", vm.console, re.M), vm.log_path


def test_forced_usb_takes_a_late_stick(boot, tmp_path, system_image):
    windows = make_ntfs_disk(tmp_path, media_files(system_image))
    stick = make_media(tmp_path, media_files(system_image), fstype="vfat")
    # A USB controller with nothing on it; the stick comes 3 s after QEMU
    # starts, through QMP. crom.mode=usb: the Windows disk is not used.
    blank = tmp_path / "blank.img"
    with open(blank, "wb") as f:
        f.truncate(system_image["image"].stat().st_size + (32 << 20))
    vm = boot("crom.mode=usb crom.debug=1", disks=[Disk(str(windows))],
              extra_args=["-device", "qemu-xhci,id=xhci", "-drive", f"file={stick},format=raw,if=none,id=stick",
                          "-drive", f"file={blank},format=raw,if=none,id=blank"])
    time.sleep(3)
    answer = vm.qmp("device_add", driver="usb-storage", drive="stick", id="stick-dev", bus="xhci.0")
    assert "error" not in answer, answer
    vm.expect(r"^spirit: debug: cascade: starting usb$")
    vm.expect(rf"^spirit: boot source=usb image={system_image['sha256'][:12]}$")
    assert "boot source=parasite" not in vm.console
    # crom.debug=1 prints the RAM root's plan as shell, as `spirit boot-plan` does,
    # and PID 1's switch_root plan.
    vm.expect(r"^spirit: debug: boot plan:$")
    vm.expect(r"^spirit: debug: # copy: \d+ KiB into RAM$")
    vm.expect(r"^spirit: debug: LOOP=\$\(losetup --find --show --read-only /run/spirit/image/rootfs.squashfs\)$")
    vm.expect(r"^spirit: debug: mount -t overlay -o lowerdir=/run/spirit/lower,upperdir=/run/spirit/rw/upper,workdir=/run/spirit/rw/work overlay /sysroot$")
    vm.expect(r"^spirit: debug: switch_root plan:$")
    vm.expect(r"^spirit: debug: exec /sbin/init --switched-root$")
    vm.expect(r"^spirit: ready$")
    steps = {step["step"]: step for step in vm.timeline()["steps"]}
    assert re.match(r"usb: /dev/sd[a-z] \(vfat, CROM_SPIRIT\)", steps["cascade"]["detail"]), steps["cascade"]
    # The boot worker wrote the flags it checked; stage 2 reads them from there.
    config = json.loads(vm.check("cat /run/spirit/boot-config.json"))
    assert "crom.mode=usb" in config["flags"] and "crom.debug=1" in config["flags"], config
    assert any(parameter.startswith("console=") for parameter in config["kernel"]), config

    # spirit-usb writes the running media to a new stick, after a
    # confirmation that names the device and its size.
    vm.expect(r"spirit:/# ", partial=True)
    answer = vm.qmp("device_add", driver="usb-storage", drive="blank", id="blank-dev", bus="xhci.0")
    assert "error" not in answer, answer
    vm.check("for i in $(seq 30); do test -e /sys/block/sdb && break; sleep 1; done; test -e /sys/block/sdb")
    status, out = vm.run("echo no | spirit usb /dev/sdb")
    assert status == 1 and "Write Crom-OS Spirit" in out and "/dev/sdb (QEMU QEMU HARDDISK" in out and "not written" in out, out
    status, out = vm.run("echo sdb | spirit usb /dev/sdb 2>&1", timeout=180)
    assert status == 0 and "/dev/sdb: written" in out, out
    vm.check("mkdir -p /mnt/check && mount -o ro /dev/sdb /mnt/check")
    assert vm.check("sha256sum /mnt/check/rootfs.squashfs | cut -d' ' -f1") == system_image["sha256"]
    assert '"sha256"' in vm.check("cat /mnt/check/manifest.json")
    vm.check("umount /mnt/check")


def test_rescue_without_media_or_network_then_forced_nodus(boot, tmp_path, system_image):
    stick = make_media(tmp_path, media_files(system_image), fstype="vfat")
    # An empty USB controller: the usb source gives up once its hubs have
    # settled with no storage device on them, not after crom.network.timeout.
    vm = boot("crom.network.timeout=3 crom.http=http://10.0.2.2/spirit/",
              extra_args=["-device", "qemu-xhci,id=xhci", "-drive", f"file={stick},format=raw,if=none,id=stick"])
    vm.expect(r"^spirit: No Spirit found\. Awaiting network or media\.\.\.$", timeout=90)
    vm.expect(r"^spirit: rescue: no system image found \(tried parasite, usb, http, nodus\)$")
    reasons = source_reasons(vm)
    assert reasons == {
        "parasite": "no NTFS partition",
        "usb": reasons["usb"],
        "http": reasons["http"],
        "nodus": reasons["nodus"],
    }, reasons
    assert reasons["usb"].startswith("no block device labelled CROM_SPIRIT appeared once the USB hubs had settled "
                                     "with no storage device left to come"), reasons
    assert reasons["http"].startswith("no network interface"), reasons
    # One DHCP run serves both network sources: the same reason.
    assert reasons["nodus"] == reasons["http"], reasons
    vm.expect(r"^spirit: rescue shell on ")
    # The cascade gave up before crom.network.timeout: no fixed wait for
    # devices, and none for a stick that nothing announced.
    cascade = [step for step in vm.timeline()["steps"] if step["step"] == "cascade"][-1]
    assert cascade["ok"] is False and cascade["end_ms"] - cascade["start_ms"] < 3000, cascade

    diag = vm.check("spirit-diag")
    for section in ["== hardware", "== modules", "== block devices", "== network", "== boot sources (last attempt)", "== timeline"]:
        assert section in diag, diag
    assert "no network interface" in diag and "nodus: no network interface" in diag, diag
    assert re.search(r"^cascade\s+worker", diag, re.M), diag

    # The next attempt with crom.mode=nodus: the Nodus source alone, which
    # finds no network, and then rescue, not another source.
    vm.send("echo crom.mode=nodus > /run/spirit/boot-flags; exit\n")
    vm.expect(r"^spirit: the rescue shell ended; trying the boot again$")
    vm.expect(r"^spirit: rescue: crom.mode=nodus allows only the nodus source, and it found no usable image: no network interface")
    vm.expect(r"^spirit: rescue shell on ")

    # A stick plugged in at the rescue shell is announced; 'exit' boots from it.
    vm.check("true")
    answer = vm.qmp("device_add", driver="usb-storage", drive="stick", id="stick-dev", bus="xhci.0")
    assert "error" not in answer, answer
    vm.expect(r"^spirit: media appeared: /dev/sd[a-z] \(vfat, label CROM_SPIRIT\): 'exit' boots from it$")
    vm.send("exit\n")
    vm.expect(rf"^spirit: boot source=usb image={system_image['sha256'][:12]}$")
    vm.expect(r"^spirit: ready$")


def test_a_stick_still_being_scanned_wins_over_http(boot, tmp_path, system_image):
    # The stick is on xHCI at power-on: it enumerates after the storage
    # drivers' loads have returned and gets its disk one `delay_use` later,
    # while the HTTP server already has the image. The usb source waits for
    # that disk (the hubs' settling time, then the storage device's scan),
    # and the more preferred source wins.
    stick = make_media(tmp_path, media_files(system_image), fstype="vfat")
    with MediaServer(media_files(system_image)) as server:
        vm = boot(f"crom.http={server.url('ok')} crom.network.timeout=30", disks=[Disk(str(stick), interface="usb")],
                  nics=["user,model=e1000"])
        vm.expect(rf"^spirit: boot source=usb image={system_image['sha256'][:12]}$", timeout=180)
        vm.expect(r"^spirit: ready$")
        cascade = [step for step in vm.timeline()["steps"] if step["step"] == "cascade"][-1]
        assert cascade["ok"] and cascade["detail"].startswith("usb: "), cascade


def test_http_failures_then_fetch_resumes(boot, tmp_path, system_image):
    with MediaServer(media_files(system_image)) as server:
        vm = boot(f"crom.mode=http crom.http={server.url('e500')} crom.network.timeout=5", nics=["user,model=e1000"])
        # 500 is retried, then reported; crom.mode=http does not fall through.
        vm.expect(r"^spirit: network: eth0 has 10\.0\.2\.15/24, router 10\.0\.2\.2")
        vm.expect(r"^spirit: http: .*/e500/manifest\.json: server error 500 Internal Server Error; trying again \(2 of 3\)$")
        vm.expect(r"^spirit: No Spirit found")
        vm.expect(r"^spirit: rescue: crom.mode=http allows only the http source, and it found no usable image: ")
        reasons = source_reasons(vm)
        assert list(reasons) == ["http"] and reasons["http"].endswith("server error 500 Internal Server Error"), reasons
        vm.expect(r"^spirit: rescue shell on ")

        # The rescue tools: a redirect loop and a silent server, each said.
        status, out = vm.run(f"spirit-fetch {server.url('loop')} 2>&1")
        assert status == 111 and "redirect loop" in out, out
        status, out = vm.run(f"spirit-fetch http://10.0.2.2:{server.port}/nothing/ 2>&1")
        assert status == 111 and "404" in out, out
        status, out = vm.run(f"spirit-fetch {server.url('slow')} 2>&1", timeout=120)
        assert status == 111 and "timed out: no data for 10 s" in out, out
        # A byte a second never trips the idle timeout: the speed floor does, after one 10 s window.
        status, out = vm.run(f"spirit-fetch {server.url('trickle')} 2>&1", timeout=120)
        assert status == 111 and re.search(r"too slow: \d+ bytes in 1\d s, under 1024 bytes a second", out), out
        # HTTPS: this initramfs trusts Debian's bundle, not a CA made here.
        with MediaServer(media_files(system_image), tls=signed_server_context(tmp_path, throwaway_ca(tmp_path / "ca"))) as secure:
            status, out = vm.run(f"spirit-fetch {secure.url('ok')} 2>&1")
        assert status == 111 and re.search(r"certificate verify failed for 10\.0\.2\.2: .*not signed by a known CA", out), out

        # A boot from a trickling server: the attempt gives up after one
        # speed window (crom.network.timeout's 5 s here), not retried, and says why.
        vm.send(f"echo 'crom.mode=http crom.http={server.url('trickle')}' > /run/spirit/boot-flags; exit\n")
        vm.expect(r"^spirit: the rescue shell ended; trying the boot again$")
        vm.expect(r"^spirit: rescue: crom.mode=http allows only the http source, and it found no usable image: "
                  r".*/trickle/manifest\.json: too slow: \d+ bytes in [56] s, under 1024 bytes a second$", timeout=90)
        vm.expect(r"^spirit: rescue shell on ")

        # spirit-fetch from a server that cuts the image short once: the
        # signature is checked here, the boot continues, the download resumes
        # with Range and the image is verified.
        vm.send(f"spirit-fetch {server.url('cut')}\n")
        vm.expect(r"signature valid$")
        vm.expect(r"^spirit: the rescue shell ended; trying the boot again$")
        vm.expect(rf"^spirit: boot source=http image={system_image['sha256'][:12]}$")
        vm.expect(r"^spirit: http: .*: short body: the connection closed after \d+ of \d+ bytes; resuming at byte \d+ \(retry 1 of 3\)$")
        vm.expect(r"^spirit: http: \d+ of \d+ MiB \(100%\), \d+ KiB/s, done$")
        vm.expect(r"^spirit: ready$")
        assert any(request.startswith("/cut/rootfs.squashfs bytes=") for request in server.requests), server.requests


def test_https_boot_with_the_test_ca(boot, tmp_path, system_image):
    """crom.http=https://…: the initramfs built with EXTRA_CA=the test CA
    checks the server's certificate, then boots the image over TLS."""
    ca = built_test_ca()
    with MediaServer(media_files(system_image), tls=signed_server_context(tmp_path, ca)) as server:
        vm = boot(f"crom.mode=http crom.http={server.url('ok')} crom.network.timeout=5", nics=["user,model=e1000"],
                  initrd=str(ca / "initramfs.zst"))
        vm.expect(rf"^spirit: boot source=http image={system_image['sha256'][:12]}$")
        vm.expect(r"^spirit: http: \d+ of \d+ MiB \(100%\), \d+ KiB/s, done$")
        vm.expect(r"^spirit: ready$")
        assert "/ok/rootfs.squashfs" in server.requests, server.requests
