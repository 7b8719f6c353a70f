"""HTTPS in Spirit's HTTP client (CTLS over mbedTLS), on the host: the
real `spirit image fetch` against Python's ssl server, with a test CA
made here by `openssl` and trusted through SSL_CERT_FILE. A good
certificate downloads the image whole and checked; a certificate for
another host, an expired one and one from an unknown CA each stop the
fetch with an error naming the host and the reason; a server that never
answers the handshake times out."""

import os
import socket
import ssl
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from test_nodus import free_port

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))

CA_CONFIG = """[ca]
default_ca = test
[test]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = copy
[anything]
commonName = supplied
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    """A CA (EC P-256) with an `openssl ca` database in `directory`."""
    directory.mkdir()
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("1000\n")
    (directory / "ca.cnf").write_text(CA_CONFIG.format(dir=directory))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", f"/CN={name}", cwd=directory)
    return directory


def issue(ca: Path, name: str, san: str, dates: list[str]) -> tuple[Path, Path]:
    """A server certificate and key signed by `ca`, for the names in `san`."""
    key, csr, cert = ca / f"{name}.key", ca / f"{name}.csr", ca / f"{name}.pem"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
            "-out", csr, "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}", cwd=ca)
    openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", csr,
            "-out", cert, "-notext", *dates, cwd=ca)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The test CA, another CA no one trusts, and the four certificates."""
    base = tmp_path_factory.mktemp("pki")
    ca = make_ca(base / "ca", "Spirit Test CA")
    stranger = make_ca(base / "stranger", "Unknown CA")
    fresh = ["-days", "7"]
    return {
        "ca": ca / "ca.pem",
        "good": issue(ca, "good", "IP:127.0.0.1,DNS:localhost", fresh),
        "wrong-host": issue(ca, "wrong-host", "DNS:other.example", fresh),
        "expired": issue(ca, "expired", "IP:127.0.0.1,DNS:localhost",
                         ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]),
        "unknown-ca": issue(stranger, "unknown-ca", "IP:127.0.0.1,DNS:localhost", fresh),
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder with an image, its signed manifest and the key pair."""
    folder = tmp_path_factory.mktemp("served")
    key = folder.parent / "test-only.key"
    subprocess.run([SPIRIT, "image", "keygen", key], check=True, capture_output=True)
    image = folder / "rootfs.squashfs"
    image.write_bytes(os.urandom(2 << 20) + b"end")
    subprocess.run([SPIRIT, "image", "manifest", "--image", image, "--key", key, "--version", "0.0.0-test",
                    "--out", folder / "manifest.json"], check=True, capture_output=True)
    return folder, Path(f"{key}.pub")


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def https_server(folder: Path, cert: Path, key: Path, names: list):
    """Python's HTTPS server on a free port; `names` collects the SNI names asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(Quiet, directory=str(folder)))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def fetch(url: str, public_key: Path, out: Path, ca: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SPIRIT, "image", "fetch", "--url", url, "--public-key", public_key, "--out", out],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "SSL_CERT_FILE": str(ca)})


def test_a_good_certificate_brings_the_image_whole(pki, served, tmp_path):
    folder, public_key = served
    names = []
    server = https_server(folder, *pki["good"], names)
    try:
        port = server.server_address[1]
        for host in ("127.0.0.1", "localhost"):
            out = tmp_path / f"copy-{host}"
            result = fetch(f"https://{host}:{port}/", public_key, out, pki["ca"])
            assert result.returncode == 0, result.stderr
            assert out.read_bytes() == (folder / "rootfs.squashfs").read_bytes()
            assert "signature and SHA-256" in result.stderr, result.stderr
        assert set(names) == {None, "localhost"}  # SNI: the name, never an address
    finally:
        server.shutdown()


@pytest.mark.parametrize("certificate, reason", [
    ("wrong-host", "the certificate is not for this host name"),
    ("expired", "expired"),
    ("unknown-ca", "not signed by a known CA"),
])
def test_a_bad_certificate_is_refused_naming_the_host_and_the_reason(pki, served, tmp_path, certificate, reason):
    folder, public_key = served
    server = https_server(folder, *pki[certificate], [])
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/"
        out = tmp_path / "copy"
        result = fetch(url, public_key, out, pki["ca"])
        assert result.returncode == 111, result.stderr
        assert f"{url}manifest.json: certificate verify failed for 127.0.0.1: {reason}" in result.stderr, result.stderr
        assert not out.exists()
    finally:
        server.shutdown()


def test_a_missing_ca_bundle_is_named(served, tmp_path):
    _, public_key = served
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/"
        result = fetch(url, public_key, tmp_path / "copy", tmp_path / "no-such.pem")
        assert result.returncode == 111 and f"unable to read the CA bundle {tmp_path}/no-such.pem" in result.stderr, result.stderr
    finally:
        listener.close()


def test_a_server_silent_in_the_handshake_times_out(pki, served, tmp_path):
    """A TCP server that accepts and never says a word: the handshake
    waits the idle timeout (10 s), not for ever."""
    _, public_key = served
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/"
        result = fetch(url, public_key, tmp_path / "copy", pki["ca"])
        assert result.returncode == 111 and "timed out in the TLS handshake" in result.stderr, result.stderr
    finally:
        listener.close()
