"""What the delivery benchmarks (bench/nbd.py, bench/http_fetch.py) share:
servers on loopback, started on a free port and waited for."""

import socket
import statistics
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen) -> None:
    """Returns once something accepts on 127.0.0.1:`port`; fails if
    `process` exits first or nothing listens within a minute."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args[0]} exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rates(size: int, seconds: dict[str, list[float]]) -> dict:
    """MB/s of each contender's runs (`size` bytes each): best, median, all."""
    result = {}
    for name, times in seconds.items():
        values = [size / t / 1e6 for t in times]
        result[name] = {"runs": len(values), "max_mb_s": round(max(values), 1),
                        "median_mb_s": round(statistics.median(values), 1),
                        "all_mb_s": [round(v, 1) for v in values]}
    return result
