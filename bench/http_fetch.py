"""The HTTP figure of `make bench`: a 256 MiB image fetched into RAM
(/dev/shm) from busybox's httpd on loopback, by Spirit's boot client
(`spirit image fetch`: the signed manifest first, then the image, hashed
with SHA-256 as it is written and checked, as the HTTP boot source does)
and by busybox's wget (the bytes only, no check; and followed by
sha256sum, the same work with the usual tools), runs interleaved; MB/s from
the wall time of each fetch."""

import os
import subprocess
import tempfile
import time
from pathlib import Path

from servers import free_port, rates, wait_listening

SIZE = 256 << 20
RAM = Path("/dev/shm")


def measure(spirit: Path, key: Path, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="spirit-bench-http-") as directory:
        image = Path(directory) / "rootfs.squashfs"
        with open(image, "wb") as f:
            f.write(os.urandom(SIZE))
        subprocess.run([spirit, "image", "manifest", "--image", image, "--key", key, "--version", "0.0.0-bench",
                        "--out", Path(directory) / "manifest.json"], check=True)
        port = free_port()
        server = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", directory],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = RAM / f"spirit-bench-http-{os.getpid()}"
        base = f"http://127.0.0.1:{port}/"
        clients = {
            "spirit image fetch (manifest, SHA-256 checked)":
                [spirit, "image", "fetch", "--url", base, "--public-key", f"{key}.pub", "--out", target],
            "busybox wget (no check)": ["busybox", "wget", "-q", "-O", target, base + image.name],
            # The same work as Spirit's client with the usual tools.
            "busybox wget, then sha256sum": ["sh", "-c", 'busybox wget -q -O "$1" "$2" && sha256sum "$1" >/dev/null', "-",
                                             target, base + image.name],
        }
        try:
            wait_listening(port, server)
            # The file is in the page cache for every client alike.
            subprocess.run(["cat", image], stdout=subprocess.DEVNULL, check=True)
            seconds = {name: [] for name in clients}
            for run in range(runs):
                for name, command in clients.items():
                    start = time.monotonic()
                    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
                    seconds[name].append(time.monotonic() - start)
                    assert target.stat().st_size == SIZE, f"{name} wrote {target.stat().st_size} bytes, not {SIZE}"
                    target.unlink()
                    print(f"bench: http {name} run {run + 1}/{runs}: {SIZE / seconds[name][-1] / 1e6:.0f} MB/s", flush=True)
        finally:
            server.kill()
            server.wait()
            target.unlink(missing_ok=True)
    return rates(SIZE, seconds)


def markdown(result: dict) -> str:
    rows = "\n".join(f"| {name} | {r['runs']} | {r['max_mb_s']:.0f} | {r['median_mb_s']:.0f} |" for name, r in result.items())
    ours = next(r["median_mb_s"] for name, r in result.items() if name.startswith("spirit"))
    wget = result["busybox wget (no check)"]["median_mb_s"]
    checked = result["busybox wget, then sha256sum"]["median_mb_s"]
    return f"""## Image delivery: HTTP

A 256 MiB image (random bytes, in the page cache) served by busybox's httpd on loopback, fetched into RAM
(/dev/shm) by each client in turn, runs interleaved. Spirit's client does what the HTTP boot source does:
it fetches the signed manifest, checks its signature, and hashes the image with SHA-256 as it writes it;
busybox's wget only writes the bytes (and, for the same work, is followed by coreutils' sha256sum).

| client | runs | best MB/s | median MB/s |
| --- | --- | --- | --- |
{rows}

Spirit / busybox wget (median): **{ours / wget:.2f}x** (Spirit does more: the manifest and the hash);
Spirit / wget then sha256sum: **{ours / checked:.2f}x**.
"""
