"""The NBD figure of `make bench`: nbdcopy (libnbd) reads the same 256 MiB
export from Spirit's Nodus server, from nbdkit's file plugin and from
qemu-nbd, on loopback, runs interleaved; MB/s from the wall time of each
copy into nbdcopy's null: sink."""

import os
import subprocess
import tempfile
import time
from pathlib import Path

from servers import free_port, rates, wait_listening

SIZE = 256 << 20


def measure(spirit: Path, key: Path, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="spirit-bench-nbd-") as directory:
        image = Path(directory) / "export.img"
        with open(image, "wb") as f:
            f.write(os.urandom(SIZE))
        manifest = Path(directory) / "manifest.json"
        subprocess.run([spirit, "image", "manifest", "--image", image, "--key", key, "--version", "0.0.0-bench", "--out", manifest],
                       check=True)
        ports = {name: free_port() for name in ("spirit nodus serve", "nbdkit file", "qemu-nbd")}
        commands = {
            "spirit nodus serve": [spirit, "nodus", "serve", "--image", image, "--manifest", manifest, "--listen", "127.0.0.1",
                                   "--nbd-port", str(ports["spirit nodus serve"]), "--discovery-port", "0"],
            "nbdkit file": ["nbdkit", "--foreground", "--readonly", "-i", "127.0.0.1", "-p", str(ports["nbdkit file"]),
                            "file", image],
            "qemu-nbd": ["qemu-nbd", "--read-only", "--persistent", "--shared=16", "-b", "127.0.0.1",
                         "-p", str(ports["qemu-nbd"]), "-f", "raw", image],
        }
        servers = {name: subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for name, command in commands.items()}
        try:
            for name, process in servers.items():
                wait_listening(ports[name], process)
            # The file is in the page cache for every server alike.
            subprocess.run(["cat", image], stdout=subprocess.DEVNULL, check=True)
            seconds = {name: [] for name in servers}
            for run in range(runs):
                for name in servers:
                    start = time.monotonic()
                    subprocess.run(["nbdcopy", f"nbd://127.0.0.1:{ports[name]}/", "null:"], check=True)
                    seconds[name].append(time.monotonic() - start)
                    print(f"bench: nbd {name} run {run + 1}/{runs}: {SIZE / seconds[name][-1] / 1e6:.0f} MB/s", flush=True)
        finally:
            for process in servers.values():
                process.kill()
                process.wait()
    return rates(SIZE, seconds)


def markdown(result: dict) -> str:
    rows = "\n".join(f"| {name} | {r['runs']} | {r['max_mb_s']:.0f} | {r['median_mb_s']:.0f} |" for name, r in result.items())
    ours = result["spirit nodus serve"]["median_mb_s"]
    best = max(r["median_mb_s"] for name, r in result.items() if name != "spirit nodus serve")
    return f"""## Image delivery: NBD

`nbdcopy` (libnbd) reads a 256 MiB export (random bytes, in the page cache) into its `null:` sink, on
loopback, from each server in turn, runs interleaved. nbdcopy opens several connections when the server
allows it (all three advertise multi-conn) and keeps many requests in flight. Spirit's server answers
each connection's requests in order on its own thread, with sendfile.

| server | runs | best MB/s | median MB/s |
| --- | --- | --- | --- |
{rows}

Spirit / the faster peer (median): **{ours / best:.2f}x** (target: at least 1x).
"""


def measure_peers(spirit: Path, key: Path, runs: int) -> dict:
    """The boot's copy (`spirit nodus fetch --peers`, the same reader as a
    Nodus boot) of a 256 MiB image from one `spirit nodus serve` peer and
    from two, on loopback, runs interleaved; MB/s from the wall time of each
    copy into /dev/null (every block checked, the whole image hashed)."""
    with tempfile.TemporaryDirectory(prefix="spirit-bench-peers-") as directory:
        image = Path(directory) / "rootfs.squashfs"
        with open(image, "wb") as f:
            f.write(os.urandom(SIZE))
        manifest = Path(directory) / "manifest.json"
        subprocess.run([spirit, "image", "manifest", "--image", image, "--key", key, "--version", "0.0.0-bench", "--out", manifest],
                       check=True)
        ports = [free_port(), free_port()]
        servers = [subprocess.Popen([spirit, "nodus", "serve", "--image", image, "--manifest", manifest, "--listen", "127.0.0.1",
                                     "--nbd-port", str(port), "--discovery-port", "0"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for port in ports]
        contenders = {"one peer": ports[:1], "two peers": ports}
        try:
            for port, process in zip(ports, servers):
                wait_listening(port, process)
            subprocess.run(["cat", image], stdout=subprocess.DEVNULL, check=True)
            seconds = {name: [] for name in contenders}
            for run in range(runs):
                for name, chosen in contenders.items():
                    start = time.monotonic()
                    subprocess.run([spirit, "nodus", "fetch", "--peers", ",".join(f"127.0.0.1:{p}" for p in chosen),
                                    "--out", "/dev/null"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    seconds[name].append(time.monotonic() - start)
                    print(f"bench: nodus copy from {name} run {run + 1}/{runs}: {SIZE / seconds[name][-1] / 1e6:.0f} MB/s", flush=True)
        finally:
            for process in servers:
                process.kill()
                process.wait()
    return rates(SIZE, seconds)


def markdown_peers(result: dict) -> str:
    rows = "\n".join(f"| {name} | {r['runs']} | {r['max_mb_s']:.0f} | {r['median_mb_s']:.0f} |" for name, r in result.items())
    return f"""## Image delivery: a Nodus boot's copy from one and from two peers

`spirit nodus fetch --peers` (the reader a Nodus boot uses: 1 MiB blocks, two connections a peer, each
block checked against the signed block list, the whole image hashed) copies a 256 MiB image into
/dev/null from one `spirit nodus serve` and from two, on loopback, runs interleaved. On loopback the
peers share the machine's cores with the reader, so a second peer adds connections, not bandwidth:
on a LAN each peer brings its own link and disk.

| peers | runs | best MB/s | median MB/s |
| --- | --- | --- | --- |
{rows}
"""
