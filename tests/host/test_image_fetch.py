"""`spirit image fetch`: the HTTP boot source's download on the host, from
busybox's httpd (a server no one here wrote). The image arrives whole and
checked; a tampered image, a manifest signed by another key and a wrong URL
each stop it with an error naming what failed, and leave no file behind."""

import os
import subprocess
from pathlib import Path

import pytest

from test_nodus import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))


@pytest.fixture
def server(tmp_path):
    """A served folder with an image and its manifest, and a key pair."""
    served = tmp_path / "served"
    served.mkdir()
    key = tmp_path / "test-only.key"
    subprocess.run([SPIRIT, "image", "keygen", key], check=True, capture_output=True)
    image = served / "rootfs.squashfs"
    image.write_bytes(os.urandom(3 << 20) + b"end")
    subprocess.run([SPIRIT, "image", "manifest", "--image", image, "--key", key, "--version", "0.0.0-test",
                    "--out", served / "manifest.json"], check=True)
    port = free_port()
    process = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", served])
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/", served, key
    finally:
        process.kill()
        process.wait()


def fetch(url: str, public_key: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SPIRIT, "image", "fetch", "--url", url, "--public-key", public_key, "--out", out],
                          capture_output=True, text=True)


def test_the_image_arrives_whole_and_checked(server, tmp_path):
    url, served, key = server
    out = tmp_path / "copy"
    result = fetch(url, Path(f"{key}.pub"), out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (served / "rootfs.squashfs").read_bytes()
    assert "signature and SHA-256" in result.stderr and "match" in result.stderr, result.stderr


def test_a_tampered_image_is_refused_and_removed(server, tmp_path):
    url, served, key = server
    image = served / "rootfs.squashfs"
    data = bytearray(image.read_bytes())
    data[1000] ^= 0xFF
    image.write_bytes(bytes(data))
    out = tmp_path / "copy"
    result = fetch(url, Path(f"{key}.pub"), out)
    assert result.returncode == 111 and "SHA-256" in result.stderr, result.stderr
    assert not out.exists()


def test_another_key_and_a_wrong_url_are_named(server, tmp_path):
    url, _, _ = server
    other = tmp_path / "other.key"
    subprocess.run([SPIRIT, "image", "keygen", other], check=True, capture_output=True)
    out = tmp_path / "copy"
    result = fetch(url, Path(f"{other}.pub"), out)
    assert result.returncode == 111 and "signature" in result.stderr, result.stderr
    assert not out.exists()
    result = fetch(url + "nope/", Path(f"{other}.pub"), out)
    assert result.returncode == 111 and f"{url}nope/manifest.json: 404" in result.stderr, result.stderr
    result = fetch("ftp://example/", Path(f"{other}.pub"), out)
    assert result.returncode != 0 and "ftp://example/" in result.stderr, result.stderr
    assert not out.exists()
