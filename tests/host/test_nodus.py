"""Nodus against peers no one here wrote: our NBD server read by libnbd's
nbdinfo and nbdcopy and by qemu-img; our client reading from nbdkit and
qemu-nbd; the server under malformed, hostile and abrupt clients; discovery
in the seed format and the extended one. Everything on loopback."""

import concurrent.futures
import contextlib
import re
import hashlib
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))

OPTION_MAGIC = 0x49484156454F5054
REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN, ERR_TOO_BIG = 0x80000001, 0x80000003, 0x80000006, 0x80000009
CMD_READ, CMD_WRITE, CMD_DISC = 0, 1, 2
EPERM, EINVAL = 1, 22


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """An 8 MiB image of random bytes and its signed manifest (a key made
    for this test)."""
    directory = tmp_path_factory.mktemp("nodus")
    path = directory / "rootfs.squashfs"
    data = os.urandom(8 << 20)
    path.write_bytes(data)
    key = directory / "test-only.key"
    subprocess.run([SPIRIT, "image", "keygen", key], check=True, capture_output=True)
    manifest = directory / "manifest.json"
    subprocess.run([SPIRIT, "image", "manifest", "--image", path, "--key", key, "--version", "9.9.9-test",
                    "--build-time", "1700000000", "--out", manifest], check=True)
    return {"path": path, "manifest": manifest, "sha256": hashlib.sha256(data).hexdigest(), "data": data,
            "public_key": Path(str(key) + ".pub")}


@pytest.fixture(scope="module")
def server(image):
    """`spirit nodus serve` on loopback, NBD and discovery on free ports."""
    nbd_port, discovery_port = free_port(), free_port(socket.SOCK_DGRAM)
    log = open(image["path"].parent / "serve.log", "w+")
    process = subprocess.Popen([SPIRIT, "nodus", "serve", "--image", image["path"], "--manifest", image["manifest"],
                                "--listen", "127.0.0.1", "--nbd-port", str(nbd_port), "--discovery-port", str(discovery_port),
                                "--public-key", image["public_key"]], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(nbd_port)
        yield {"port": nbd_port, "discovery": discovery_port, "process": process, "log": log}
    finally:
        process.kill()
        process.wait()


def read_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def handshake(port: int, flags: int = 3) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    greeting = read_exact(s, 18)
    assert greeting[:16] == b"NBDMAGICIHAVEOPT"
    s.sendall(struct.pack(">I", flags))
    return s


def send_option(s: socket.socket, option: int, data: bytes = b"") -> None:
    s.sendall(struct.pack(">QII", OPTION_MAGIC, option, len(data)) + data)


def option_reply(s: socket.socket):
    magic, option, kind, length = struct.unpack(">QIII", read_exact(s, 20))
    assert magic == REPLY_MAGIC
    return option, kind, read_exact(s, length)


def go(s: socket.socket, name: str = "") -> int:
    encoded = name.encode()
    send_option(s, OPT_GO, struct.pack(">I", len(encoded)) + encoded + struct.pack(">H", 0))
    size = None
    while True:
        _, kind, data = option_reply(s)
        if kind == REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
            size = struct.unpack(">Q", data[2:10])[0]
        if kind == REP_ACK:
            return size
        assert kind == REP_INFO, hex(kind)


def request(s: socket.socket, command: int, cookie: int, offset: int, length: int, payload: bytes = b"") -> None:
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, command, cookie, offset, length) + payload)


def simple_reply(s: socket.socket, length: int = 0):
    magic, error, cookie = struct.unpack(">IIQ", read_exact(s, 16))
    assert magic == SIMPLE_REPLY_MAGIC
    return error, cookie, read_exact(s, length) if error == 0 and length else b""


def assert_closed(s: socket.socket) -> None:
    """The server closed this connection (a FIN, or a reset when our bytes
    were left unread)."""
    try:
        assert s.recv(1) == b""
    except ConnectionResetError:
        pass


def assert_alive(server, image) -> None:
    """The server still serves a whole, correct read."""
    assert server["process"].poll() is None, "the server died"
    with handshake(server["port"]) as s:
        assert go(s, image["sha256"]) == len(image["data"])
        request(s, CMD_READ, 1, 4096, 4096)
        assert simple_reply(s, 4096)[2] == image["data"][4096:8192]


# -- our server, read by others ----------------------------------------------

def test_nbdinfo_lists_the_image_and_its_manifest(server, image):
    out = subprocess.run(["nbdinfo", "--list", f"nbd://127.0.0.1:{server['port']}"], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    assert f'export="{image["sha256"]}"' in out and 'export="manifest"' in out
    assert f"export-size: {len(image['data'])}" in out
    assert "is_read_only: true" in out and "can_multi_conn: true" in out


def test_nbdcopy_and_qemu_img_read_the_exact_bytes(server, image, tmp_path):
    for export in [image["sha256"], ""]:
        copy = tmp_path / "copy.img"
        subprocess.run(["nbdcopy", f"nbd://127.0.0.1:{server['port']}/{export}", str(copy)], check=True, timeout=120)
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == image["sha256"]
        copy.unlink()
    manifest = subprocess.run(["nbdcopy", f"nbd://127.0.0.1:{server['port']}/manifest", "-"], check=True,
                              capture_output=True, timeout=60).stdout
    assert manifest == image["manifest"].read_bytes()

    info = subprocess.run(["qemu-img", "info", f"nbd://127.0.0.1:{server['port']}/{image['sha256']}"], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    assert f"({len(image['data'])} bytes)" in info
    converted = tmp_path / "converted.raw"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", f"nbd://127.0.0.1:{server['port']}/", str(converted)],
                   check=True, timeout=120)
    assert hashlib.sha256(converted.read_bytes()).hexdigest() == image["sha256"]


# -- our client, reading from others -----------------------------------------

@pytest.mark.parametrize("peer", ["nbdkit", "qemu-nbd"])
def test_our_client_reads_nbdkit_and_qemu_nbd(peer, image, tmp_path):
    port = free_port()
    if peer == "nbdkit":
        command = ["nbdkit", "--foreground", "--readonly", "-i", "127.0.0.1", "-p", str(port), "file", str(image["path"])]
    else:
        command = ["qemu-nbd", "--read-only", "--persistent", "--shared=4", "-b", "127.0.0.1", "-p", str(port), "-f", "raw",
                   str(image["path"])]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        out = tmp_path / "fetched.img"
        result = subprocess.run([SPIRIT, "nodus", "fetch", "--server", f"127.0.0.1:{port}", "--out", out],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert f"sha256 {image['sha256']}" in result.stderr
        assert hashlib.sha256(out.read_bytes()).hexdigest() == image["sha256"]
        info = subprocess.run([SPIRIT, "nodus", "info", "--server", f"127.0.0.1:{port}"], capture_output=True, text=True,
                              timeout=60)
        assert f"{len(image['data'])} bytes" in info.stdout and "read-only" in info.stdout, info
        if peer == "nbdkit":
            return  # nbdkit's file plugin serves its file under any name
        # A name the peer does not have is a clear error, not a hang.
        missing = subprocess.run([SPIRIT, "nodus", "fetch", "--server", f"127.0.0.1:{port}", "--export", "nope", "--out",
                                  tmp_path / "x"], capture_output=True, text=True, timeout=60)
        assert missing.returncode == 111 and "no export named 'nope'" in missing.stderr, missing.stderr
    finally:
        process.kill()
        process.wait()


def test_client_errors_name_the_server(tmp_path):
    port = free_port()  # nothing listens there
    result = subprocess.run([SPIRIT, "nodus", "fetch", "--server", f"127.0.0.1:{port}", "--out", tmp_path / "x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 111
    assert f"unable to connect to 127.0.0.1:{port}: Connection refused" in result.stderr
    usage = subprocess.run([SPIRIT, "nodus", "fetch", "--server", "not-an-address"], capture_output=True, text=True)
    assert usage.returncode == 111 and "'not-an-address' is not a numeric IPv4 or IPv6 address" in usage.stderr


# -- robustness ----------------------------------------------------------------

def test_options_errors_and_limits(server, image):
    with handshake(server["port"]) as s:
        send_option(s, 999, b"abc")
        assert option_reply(s)[1] == ERR_UNSUP
        send_option(s, OPT_LIST, b"x")
        assert option_reply(s)[1] == ERR_INVALID
        send_option(s, OPT_INFO, struct.pack(">I", 4097) + b"x" * 4097 + struct.pack(">H", 0))
        assert option_reply(s)[1] == ERR_TOO_BIG
        send_option(s, OPT_INFO, struct.pack(">I", 1000) + b"abc")  # lengths that do not add up
        assert option_reply(s)[1] == ERR_INVALID
        send_option(s, OPT_GO, struct.pack(">I", 4) + b"nope" + struct.pack(">H", 0))
        assert option_reply(s)[1] == ERR_UNKNOWN
        send_option(s, OPT_LIST)
        names = []
        while True:
            _, kind, data = option_reply(s)
            if kind == REP_ACK:
                break
            assert kind == REP_SERVER
            names.append(data[4:4 + struct.unpack(">I", data[:4])[0]].decode())
        assert names == [image["sha256"], "manifest", "blocks"]
        send_option(s, OPT_ABORT)
        assert option_reply(s)[1] == REP_ACK
        assert_closed(s)

    # An option length of 4 GiB: the connection is closed, nothing is read.
    with handshake(server["port"]) as s:
        s.sendall(struct.pack(">QII", OPTION_MAGIC, OPT_GO, 0xFFFFFFF0))
        assert_closed(s)
    # An unknown name with NBD_OPT_EXPORT_NAME: closed, as the document says.
    with handshake(server["port"]) as s:
        send_option(s, OPT_EXPORT_NAME, b"nope")
        assert_closed(s)
    # Not NBD at all.
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        read_exact(s, 18)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_closed(s)
    assert_alive(server, image)


def test_requests_are_bounds_checked(server, image):
    size = len(image["data"])
    with handshake(server["port"]) as s:
        assert go(s) == size
        request(s, CMD_READ, 1, size - 10, 11)  # one byte past the end
        assert simple_reply(s)[:2] == (EINVAL, 1)
        request(s, CMD_READ, 2, 2**64 - 4, 8)  # an offset that wraps
        assert simple_reply(s)[:2] == (EINVAL, 2)
        request(s, CMD_READ, 3, 0, 0xFFFFFFFF)  # far past the request cap
        assert simple_reply(s)[:2] == (EINVAL, 3)
        request(s, CMD_WRITE, 4, 0, 4, b"evil")  # a read-only export
        assert simple_reply(s)[:2] == (EPERM, 4)
        request(s, 42, 5, 0, 4)  # an unknown command
        assert simple_reply(s)[:2] == (EINVAL, 5)
        request(s, CMD_READ, 6, size - 10, 10)  # the last bytes
        assert simple_reply(s, 10) == (0, 6, image["data"][-10:])
        request(s, CMD_DISC, 7, 0, 0)
        assert_closed(s)
    assert_alive(server, image)


def test_many_connections_interleaved_and_abrupt_ends(server, image):
    data = image["data"]
    clients = [handshake(server["port"]) for _ in range(16)]
    try:
        for s in clients:
            assert go(s) == len(data)
        # Every client asks before any reads its answer.
        for i, s in enumerate(clients):
            request(s, CMD_READ, i, i * 65536, 65536)
        for i, s in reversed(list(enumerate(clients))):
            assert simple_reply(s, 65536) == (0, i, data[i * 65536:(i + 1) * 65536])
        # Half of them vanish mid-request: a header cut short, a write's
        # data cut short, a read whose answer is never read.
        for i, s in enumerate(clients[:8]):
            if i % 3 == 0:
                s.sendall(struct.pack(">IHH", REQUEST_MAGIC, 0, CMD_READ))
            elif i % 3 == 1:
                s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 9, 0, 1 << 20) + b"x" * 1000)
            else:
                request(s, CMD_READ, 9, 0, 8 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
            s.close()
        # A client that stalls in the handshake holds only its own thread.
        staller = socket.create_connection(("127.0.0.1", server["port"]), timeout=10)
        read_exact(staller, 18)
        for i, s in enumerate(clients[8:], start=8):
            request(s, CMD_READ, 100 + i, 0, 4096)
            assert simple_reply(s, 4096) == (0, 100 + i, data[:4096])
        assert_alive(server, image)
        staller.close()
    finally:
        for s in clients:
            s.close()


# -- discovery -------------------------------------------------------------------

def seek(port: int, datagram: bytes, count: int = 1, wait: float = 1.0) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        for _ in range(count):
            s.sendto(datagram, ("127.0.0.1", port))
        answers = []
        try:
            while True:
                answers.append(s.recvfrom(2048)[0])
        except socket.timeout:
            return answers


def test_discovery_seed_and_extended_formats(server, image):
    port = server["discovery"]
    # The design's seed format, word for word.
    assert seek(port, b"CROM_SPIRIT_SEEK") == [f"CROM_SPIRIT_HERE:127.0.0.1:{server['port']}".encode()]
    extended_seek = b"CROM_SPIRIT_SEEK\nv=1\npad=" + b"." * 200 + b"\n"
    answers = seek(port, extended_seek)
    assert len(answers) == 1 and len(answers[0]) <= len(extended_seek)
    lines = answers[0].decode().splitlines()
    assert lines[0] == f"CROM_SPIRIT_HERE:127.0.0.1:{server['port']}"
    fields = dict(line.split("=", 1) for line in lines[1:])
    assert fields == {"v": "1", "sha256": image["sha256"], "version": "9.9.9-test", "built": "1700000000",
                      "size": str(len(image["data"]))}
    # Malformed datagrams get nothing.
    for junk in [b"", b"HELLO", b"CROM_SPIRIT_SEEKX", b"\xff" * 600, b"CROM_SPIRIT_HERE:1.2.3.4:5"]:
        assert seek(port, junk, wait=0.3) == []
    # `spirit net scan` finds the peer with its image.
    scan = subprocess.run([SPIRIT, "net", "scan", "--to", "127.0.0.1", "--port", str(port), "--timeout", "600"],
                          capture_output=True, text=True, timeout=30)
    assert scan.returncode == 0, scan.stderr
    assert f"127.0.0.1:{server['port']} version 9.9.9-test image {image['sha256'][:12]}" in scan.stdout


def test_discovery_is_rate_limited_and_counts_what_it_drops(server, image):
    time.sleep(5)  # let this source's bucket fill after the other test
    answers = seek(server["discovery"], b"CROM_SPIRIT_SEEK", count=50, wait=1.0)
    assert 1 <= len(answers) <= 10, len(answers)
    # The daemon reports its counters on its log (at most every 10 s).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seek(server["discovery"], b"junk", wait=0.2)
        server["log"].seek(0)
        log = server["log"].read()
        if "rate-limited" in log and " 0 rate-limited" not in log.splitlines()[-1]:
            break
    assert "malformed dropped" in log and "rate-limited" in log, log
    assert_alive(server, image)


def test_serve_refuses_an_image_its_manifest_does_not_describe(image, tmp_path):
    tampered = tmp_path / "rootfs.squashfs"
    data = bytearray(image["data"])
    data[12345] ^= 1
    tampered.write_bytes(bytes(data))
    result = subprocess.run([SPIRIT, "nodus", "serve", "--image", tampered, "--manifest", image["manifest"], "--listen",
                             "127.0.0.1", "--nbd-port", str(free_port()), "--discovery-port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 111
    assert f"refusing to serve {tampered}" in result.stderr and "SHA-256" in result.stderr, result.stderr


@contextlib.contextmanager
def serving(image, tmp_path, *shelves):
    """`spirit nodus serve` on loopback with `shelves` (--layers DIR,
    --models DIR), discovery off: its port and log, killed at the end."""
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([SPIRIT, "nodus", "serve", "--image", image["path"], "--manifest", image["manifest"],
                                    "--listen", "127.0.0.1", "--nbd-port", str(port), "--discovery-port", "0", *shelves],
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield port, log, process
    finally:
        process.kill()
        process.wait()


def export_list(port: int) -> str:
    return subprocess.run(["nbdinfo", "--list", f"nbd://127.0.0.1:{port}"], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def test_layers_are_served_beside_the_image_and_a_bad_one_is_not(image, tmp_path):
    layers = tmp_path / "layers"
    layers.mkdir()
    key = image["path"].parent / "test-only.key"
    for name in ["extra", "broken"]:
        (layers / f"{name}.squashfs").write_bytes(os.urandom(1 << 20))
        subprocess.run([SPIRIT, "layer", "manifest", "--image", layers / f"{name}.squashfs", "--key", key, "--version", "1.0",
                        "--bases", "*", "--out", layers / f"{name}.json"], check=True)
    with open(layers / "broken.squashfs", "r+b") as f:
        f.write(b"tampered")
    with serving(image, tmp_path, "--layers", layers) as (port, log, _):
        listing = export_list(port)
        assert 'export="layer/extra"' in listing and 'export="layer/extra.json"' in listing and 'export="layers"' in listing
        assert "broken" not in listing
        copied = tmp_path / "copy"
        subprocess.run(["nbdcopy", f"nbd://127.0.0.1:{port}/layer/extra", str(copied)], check=True, timeout=60)
        assert copied.read_bytes() == (layers / "extra.squashfs").read_bytes()
        subprocess.run(["nbdcopy", f"nbd://127.0.0.1:{port}/layers", str(copied)], check=True, timeout=60)
        assert copied.read_text() == "extra\n"
        text = log.read_text()
        assert "not serving the layer broken" in text and "SHA-256" in text, text
        assert "layers extra over NBD" in text, text


def test_model_packs_are_served_pulled_byte_exact_and_a_tampered_one_is_refused(image, tmp_path):
    """`spirit nodus serve --models` on loopback: each pack checked before it
    is served (a tampered one and a GGUF without its manifest are left out,
    by name); `spirit ai pull --from nodus://` copies a pack byte-exact and
    checks its signature and SHA-256, and refuses what fails either."""
    models = tmp_path / "models"
    key = image["path"].parent / "test-only.key"
    other = tmp_path / "other.key"
    subprocess.run([SPIRIT, "image", "keygen", other], check=True, capture_output=True)
    weights = {}
    for name, signer in [("tiny", key), ("broken", key), ("stranger", other)]:
        gguf = tmp_path / f"{name}.gguf"
        weights[name] = b"GGUF" + os.urandom(1 << 20)
        gguf.write_bytes(weights[name])
        subprocess.run([SPIRIT, "ai", "pack", "--gguf", gguf, "--name", name, "--key", signer, "--license", "MIT",
                        "--source", "a test", "--out", models], check=True, capture_output=True)
    with open(models / "broken.gguf", "r+b") as f:
        f.write(b"GGUFtampered")
    (models / "orphan.gguf").write_bytes(b"GGUF")
    with serving(image, tmp_path, "--models", models) as (port, log, process):
        listing = export_list(port)
        for export in ["model/tiny", "model/tiny.json", "models"]:
            assert f'export="{export}"' in listing, listing
        assert "broken" not in listing and "orphan" not in listing
        text = log.read_text()
        assert f"not serving the model broken in {models}" in text and "SHA-256" in text, text
        assert f"not serving the model orphan in {models}: orphan.gguf has no manifest (orphan.json)" in text, text
        assert "models stranger, tiny over NBD" in text, text
        assert process.poll() is None

        def machine(name):
            root = tmp_path / name
            (root / "etc/spirit").mkdir(parents=True)
            (root / "etc/spirit/signing.pub").write_bytes(image["public_key"].read_bytes())
            return root

        def pull(root, name):
            return subprocess.run([SPIRIT, "ai", "--root", root, "pull", name, "--from", f"nodus://127.0.0.1:{port}"],
                                  capture_output=True, text=True, timeout=60)

        root = machine("client")
        result = pull(root, "tiny")
        assert result.returncode == 0, result.stderr
        assert f"model tiny pulled from nodus peer 127.0.0.1:{port}" in result.stderr, result.stderr
        assert (root / "run/spirit/models/tiny.gguf").read_bytes() == weights["tiny"]
        assert (root / "run/spirit/models/tiny.json").read_bytes() == (models / "tiny.json").read_bytes()
        listed = subprocess.run([SPIRIT, "ai", "--root", root, "models"], check=True, capture_output=True, text=True).stdout
        assert listed.startswith("tiny  1 MiB  MIT"), listed
        # Served (the peer does not judge keys), refused by the client: another key.
        result = pull(root, "stranger")
        assert result.returncode == 111 and "the model stranger" in result.stderr and "signature" in result.stderr, result.stderr
        assert "nothing was kept" in result.stderr and not (root / "run/spirit/models/stranger.json").exists()
        # Not served: the peer left it out, and the client says which.
        result = pull(root, "broken")
        assert result.returncode == 111 and f"the nodus peer 127.0.0.1:{port} serves no model broken" in result.stderr, result.stderr
        # The served GGUF changed after the peer checked it: the copy is refused.
        with open(models / "tiny.gguf", "r+b") as f:
            f.seek(1000)
            f.write(b"X")
        fresh = machine("second")
        result = pull(fresh, "tiny")
        assert result.returncode == 111 and f"the model tiny from nodus peer 127.0.0.1:{port} is refused" in result.stderr, result.stderr
        assert "SHA-256" in result.stderr and "nothing was kept" in result.stderr, result.stderr
        assert not list((fresh / "run/spirit/models").iterdir())
        assert process.poll() is None, log.read_text()


def connect_from(port: int, source: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def test_100_fast_clients_read_exact_bytes_while_100_slow_ones_hang_on(image, tmp_path):
    """Hostile peers: 100 slow clients (silent after connecting, a byte of
    the handshake every second, a request trickled a byte a second after a
    good handshake, idle after one) hold on while 100 fast ones each read
    the whole image; every slow one is cut at its deadline, the fast ones
    are all byte-exact, the server's memory stays bounded, and one address
    is held to its cap with a single warning."""
    data = image["data"]
    deadlines = ["--handshake-ms", "3000", "--stall-ms", "3000", "--idle-seconds", "3", "--max-per-address", "8"]
    with serving(image, tmp_path, *deadlines) as (port, log, process):
        def slow(i: int) -> float:
            """Seconds until the server cut this client."""
            s = connect_from(port, f"127.0.2.{i + 1}")
            started = time.monotonic()
            try:
                kind = i % 4
                if kind == 1:
                    read_exact(s, 18)
                    for byte in struct.pack(">I", 3):
                        s.sendall(bytes([byte]))
                        time.sleep(1)
                    while True:
                        s.sendall(b"\0")
                        time.sleep(1)
                elif kind in (2, 3):
                    read_exact(s, 18)
                    s.sendall(struct.pack(">I", 3))
                    encoded = image["sha256"].encode()
                    send_option(s, OPT_GO, struct.pack(">I", len(encoded)) + encoded + struct.pack(">H", 0))
                    while option_reply(s)[1] != REP_ACK:
                        pass
                    if kind == 2:
                        for byte in struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, 1, 0, 4096):
                            s.sendall(bytes([byte]))
                            time.sleep(1)
                while s.recv(65536):
                    pass
            except (ConnectionError, BrokenPipeError):
                pass
            finally:
                s.close()
            return time.monotonic() - started

        def fast(i: int) -> bool:
            with connect_from(port, f"127.0.1.{i % 50 + 1}") as s:
                read_exact(s, 18)
                s.sendall(struct.pack(">I", 3))
                assert go(s, image["sha256"]) == len(data)
                chunk = 2 << 20
                for n, offset in enumerate(range(0, len(data), chunk)):
                    request(s, CMD_READ, n, offset, chunk)
                    if simple_reply(s, chunk) != (0, n, data[offset:offset + chunk]):
                        return False
            return True

        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            slow_ones = [pool.submit(slow, i) for i in range(100)]
            time.sleep(0.5)
            started = time.monotonic()
            fast_ones = [pool.submit(fast, i) for i in range(100)]
            assert all(f.result(timeout=120) for f in fast_ones), "every fast client read the exact bytes"
            fast_seconds = time.monotonic() - started
            rss = int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{process.pid}/status").read_text()).group(1)) // 1024
            cut = [f.result(timeout=60) for f in slow_ones]
        print(f"100 fast clients read 8 MiB each in {fast_seconds:.1f} s beside 100 slow ones; server VmRSS {rss} MiB; "
              f"slow ones cut after {min(cut):.1f}-{max(cut):.1f} s")
        # Silent or trickling in the handshake: its 3 s; a trickled request: 3 s
        # once begun; idle after the handshake: 3 s.
        assert max(cut) < 10, cut
        assert rss < 128, rss

        # One address: 8 connections, then turned away, said once.
        held = [connect_from(port, "127.0.3.1") for _ in range(12)]
        time.sleep(0.5)
        closed = 0
        for s in held:
            s.settimeout(0.5)
            try:
                if s.recv(18, socket.MSG_PEEK) == b"":
                    closed += 1
            except ConnectionError:
                closed += 1
            except socket.timeout:
                pass
        for s in held:
            s.close()
        assert closed == 4, closed
        text = log.read_text()
        turned = [line for line in text.splitlines() if "127.0.3.1" in line and "turned away" in line]
        assert len(turned) == 1 and turned[0].endswith("turned away: it has 8 connections open already"), text
        assert process.poll() is None
