"""A copy from several real `spirit nodus serve` peers on loopback, as a
boot makes it (`spirit nodus fetch --peers`, the same PeerSelection and
MultiPeerReader): the blocks split between the peers, one peer killed in
the middle of the copy, one stopped (a stall), one serving a corrupted copy
of the image. The copy completes from the others, byte-exact, and each
peer that went wrong is named on the console with why."""

import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
BLOCK = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_image(directory: Path, size: int) -> dict:
    path = directory / "rootfs.squashfs"
    data = os.urandom(size)
    path.write_bytes(data)
    key = directory / "test-only.key"
    subprocess.run([SPIRIT, "image", "keygen", key], check=True, capture_output=True)
    manifest = directory / "manifest.json"
    subprocess.run([SPIRIT, "image", "manifest", "--image", path, "--key", key, "--version", "0.5.0",
                    "--build-time", "1700000000", "--out", manifest], check=True)
    return {"path": path, "manifest": manifest, "sha256": hashlib.sha256(data).hexdigest(),
            "public_key": Path(str(key) + ".pub"), "dir": directory}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_image(tmp_path_factory.mktemp("peers"), 160 << 20)


@pytest.fixture(scope="module")
def big_image(tmp_path_factory):
    """640 MiB: a copy from one peer on loopback takes well over a second,
    so a peer stopped as the copy starts is still needed when its 500 ms
    deadline passes (160 MiB could end first, leaving it never asked)."""
    return make_image(tmp_path_factory.mktemp("big-peers"), 640 << 20)


class Peers:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.processes = []

    def serve(self, image_path, manifest) -> tuple[int, subprocess.Popen]:
        port = free_port()
        log = self.tmp_path / f"peer-{port}.log"
        process = subprocess.Popen([SPIRIT, "nodus", "serve", "--image", image_path, "--manifest", manifest, "--listen", "127.0.0.1",
                                    "--nbd-port", str(port), "--discovery-port", "0"], stdout=open(log, "w"), stderr=subprocess.STDOUT)
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while "nodus: serving" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert "block list" in log.read_text(), log.read_text()
        return port, process

    def stop(self):
        for process in self.processes:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()


@pytest.fixture
def peers(tmp_path):
    p = Peers(tmp_path)
    yield p
    p.stop()


def fetch(image, ports, tmp_path, stall_ms=5000, during=None):
    """Runs the copy; `during` is called once the copy has started."""
    out = tmp_path / "copy.img"
    process = subprocess.Popen([SPIRIT, "nodus", "fetch", "--peers", ",".join(f"127.0.0.1:{p}" for p in ports),
                                "--public-key", image["public_key"], "--stall-ms", str(stall_ms), "--out", out],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if during and "reading the image from" in line:
            during()
            during = None
    process.wait(timeout=120)
    console = "\n".join(lines)
    return process.returncode, console, out


def test_blocks_are_read_from_every_peer_serving_the_image(image, peers, tmp_path):
    ports = [peers.serve(image["path"], image["manifest"])[0] for _ in range(2)]
    code, console, out = fetch(image, ports, tmp_path)
    assert code == 0, console
    assert "reading the image from 2 peer(s)" in console, console
    assert hashlib.sha256(out.read_bytes()).hexdigest() == image["sha256"]
    assert "dropped" not in console, console
    # Both peers delivered blocks: the summary names each with its count.
    summary = next(line for line in console.splitlines() if "read the image from" in line)
    counts = [int(n) for n in __import__("re").findall(r"127\.0\.0\.1:\d+ (\d+) blocks?", summary)]
    assert len(counts) == 2 and sum(counts) == 160 and min(counts) > 0, summary


def test_a_peer_killed_mid_copy_and_a_corrupted_one_are_dropped_by_name(image, peers, tmp_path):
    good, _ = peers.serve(image["path"], image["manifest"])
    doomed, doomed_process = peers.serve(image["path"], image["manifest"])
    # A peer serving a corrupted copy: it started from the good bytes (it
    # checks them before it serves), then a byte of every block changed
    # under it, as a failing disk or a malicious peer would.
    bad_path = tmp_path / "corrupted.squashfs"
    bad_path.write_bytes(image["path"].read_bytes())
    corrupted, _ = peers.serve(bad_path, image["manifest"])
    with open(bad_path, "r+b") as f:
        for block in range(160):
            f.seek(block * BLOCK + 4321)
            byte = f.read(1)
            f.seek(block * BLOCK + 4321)
            f.write(bytes([byte[0] ^ 0xFF]))
    code, console, out = fetch(image, [good, doomed, corrupted], tmp_path, during=doomed_process.kill)
    assert code == 0, console
    assert hashlib.sha256(out.read_bytes()).hexdigest() == image["sha256"]
    assert f"dropped peer 127.0.0.1:{corrupted}: block " in console, console
    assert "does not match the signed block list" in console, console
    assert f"dropped peer 127.0.0.1:{doomed}: " in console, console
    assert f"dropped peer 127.0.0.1:{good}" not in console, console
    assert "matches the manifest" in console, console


def test_a_stalled_peer_is_dropped_at_its_deadline(big_image, peers, tmp_path):
    image = big_image
    good, _ = peers.serve(image["path"], image["manifest"])
    slow, slow_process = peers.serve(image["path"], image["manifest"])
    start = time.monotonic()
    code, console, out = fetch(image, [slow, good], tmp_path, stall_ms=500,
                               during=lambda: slow_process.send_signal(signal.SIGSTOP))
    assert code == 0, console
    assert time.monotonic() - start < 60
    assert hashlib.sha256(out.read_bytes()).hexdigest() == image["sha256"]
    assert f"dropped peer 127.0.0.1:{slow}: " in console, console


def test_the_newest_trusted_image_is_chosen_and_the_others_named(image, peers, tmp_path):
    # An older, trusted image: other bytes, the same key, version 0.4.0.
    old_image = tmp_path / "old.squashfs"
    old_image.write_bytes(os.urandom(4 << 20))
    old_manifest = tmp_path / "old.json"
    subprocess.run([SPIRIT, "image", "manifest", "--image", old_image, "--key", image["dir"] / "test-only.key", "--version", "0.4.0",
                    "--build-time", "1600000000", "--out", old_manifest], check=True)
    # A rogue: a newer version, signed with a key the client does not trust.
    rogue_key = tmp_path / "rogue.key"
    subprocess.run([SPIRIT, "image", "keygen", rogue_key], check=True, capture_output=True)
    rogue_manifest = tmp_path / "rogue.json"
    subprocess.run([SPIRIT, "image", "manifest", "--image", image["path"], "--key", rogue_key, "--version", "9.9.9",
                    "--build-time", "1800000000", "--out", rogue_manifest], check=True)
    old, _ = peers.serve(old_image, old_manifest)
    rogue, _ = peers.serve(image["path"], rogue_manifest)
    new, _ = peers.serve(image["path"], image["manifest"])
    code, console, out = fetch(image, [old, rogue, new], tmp_path)
    assert code == 0, console
    assert f"chose peer 127.0.0.1:{new}: version 0.5.0" in console, console
    assert f"skipped peer 127.0.0.1:{old}: version 0.4.0 is older than the chosen 0.5.0" in console, console
    assert f"skipped peer 127.0.0.1:{rogue}: the manifest's signature is not valid" in console, console
