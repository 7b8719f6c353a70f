"""Anti-rollback (issue 15, part 4): the initramfs carries a minimum version
(/etc/spirit/minimum-version, MIN_VERSION at build time), and an image whose
signed manifest says an older version is refused on every source. One boot
offers the same replayed old image everywhere at once: a USB stick, a
Windows disk (parasite, NTFS), an HTTP server and a Nodus peer (both on the
host, reached through QEMU's user networking); each source refuses it with
both versions in the reason and the boot ends in the rescue shell. There
`spirit-fetch` refuses it too, and then takes the same image with its
current manifest: the refusals were the version's, nothing else's."""

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_media
from harness import Disk
from test_cascade import MediaServer, make_ntfs_disk, source_reasons

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
SIGNING_KEY = Path(os.environ.get("SIGNING_KEY", Path.home() / ".config/crom-spirit/signing.key"))
OLD_VERSION = "0.0.1"


def initramfs_minimum(initramfs: str) -> str:
    """The minimum version the initramfs under test carries."""
    listing = subprocess.run(f"zstd -dc {initramfs} | cpio -i --quiet --to-stdout etc/spirit/minimum-version",
                             shell=True, check=True, capture_output=True, text=True)
    return listing.stdout.strip()


def numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-")[0].split("."))


@pytest.fixture
def old_image(tmp_path, system_image) -> dict:
    """The system image with a manifest signed with the real key that says
    version 0.0.1: what an attacker replaying an old signed image offers."""
    manifest = tmp_path / "old" / "manifest.json"
    manifest.parent.mkdir()
    subprocess.run([SPIRIT, "image", "manifest", "--image", system_image["image"], "--key", SIGNING_KEY,
                    "--version", OLD_VERSION, "--build-time", "1000000000", "--out", manifest], check=True)
    return {"rootfs.squashfs": system_image["image"], "manifest.json": manifest}


@pytest.fixture
def old_peer(tmp_path, old_image):
    """A Nodus peer on the host serving the old image (discovery off: QEMU's
    user networking carries no broadcast; the guest names it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "peer.log"
    peer = subprocess.Popen([SPIRIT, "nodus", "serve", "--image", old_image["rootfs.squashfs"], "--manifest",
                             old_image["manifest.json"], "--listen", "127.0.0.1", "--nbd-port", str(port),
                             "--discovery-port", "0"], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "nodus: serving" not in log.read_text():
            assert peer.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield port
    finally:
        peer.kill()
        peer.wait()


def test_an_image_below_the_minimum_is_refused_on_every_source(boot, tmp_path, initramfs, system_image, old_image, old_peer):
    minimum = initramfs_minimum(initramfs)
    assert minimum, f"{initramfs} has no /etc/spirit/minimum-version (built with MIN_VERSION=none?)"
    assert numbers(OLD_VERSION) < numbers(minimum), minimum
    refusal = (rf"the image's version {re.escape(OLD_VERSION)} is below this initramfs's minimum {re.escape(minimum)} "
               r"\(a replayed old image is refused\)")

    stick = make_media(tmp_path, old_image)
    windows = make_ntfs_disk(tmp_path, old_image)
    with MediaServer(old_image) as server:
        vm = boot(f"crom.http={server.url('ok')} crom.nodus.server=10.0.2.2:{old_peer} crom.network.timeout=10",
                  disks=[Disk(str(stick), interface="usb", id="stick"), Disk(str(windows), id="windows")],
                  nics=["user,model=e1000"])
        vm.expect(r"^spirit: No Spirit found\. Awaiting network or media\.\.\.$", timeout=180)
        # Each refusal was said as it happened (in whatever order the
        # sources found the image), with both versions.
        for source in ["parasite", "usb", "http"]:
            assert re.search(rf"^spirit: warning: {source}: .*: refused: {refusal}$", vm.console, re.M), vm.log_path
        assert re.search(rf"^spirit: warning: nodus: peer 10\.0\.2\.2:{old_peer}.*: {refusal}; skipped$",
                         vm.console, re.M), vm.log_path
        vm.expect(r"^spirit: rescue: no system image found \(tried parasite, usb, http, nodus\)$")
        reasons = source_reasons(vm)
        assert sorted(reasons) == ["http", "nodus", "parasite", "usb"], reasons
        assert re.fullmatch(rf"/dev/vda1 \(ntfs, Windows, .*\): refused: {refusal}", reasons["parasite"]), reasons
        assert re.fullmatch(rf"/dev/sd[a-z] \(ext4, CROM_SPIRIT\): refused: {refusal}", reasons["usb"]), reasons
        assert re.fullmatch(rf".*/ok/.*: refused: {refusal}", reasons["http"]), reasons
        assert re.fullmatch(rf"no peer had a usable image \(10\.0\.2\.2:{old_peer}: {refusal}\)", reasons["nodus"]), reasons
        assert "boot source=" not in vm.console
        vm.expect(r"^spirit: rescue shell on ")

        # spirit-diag says what the sources checked against.
        assert f"anti-rollback: images below version {minimum} are refused" in vm.check("spirit-diag"), vm.log_path
        # The rescue tool refuses it as the boot did.
        status, out = vm.run(f"spirit-fetch {server.url('ok')} 2>&1")
        assert status == 111 and re.search(refusal, out), out
        # The same image with its current manifest (version >= the minimum)
        # is taken: the refusals were for the version alone.
        server.files["manifest.json"] = Path(system_image["manifest"]).read_bytes()
        vm.send(f"spirit-fetch {server.url('ok')}\n")
        vm.expect(r"signature valid$", partial=True)
        vm.expect(rf"^spirit: boot source=http image={system_image['sha256'][:12]}$")
