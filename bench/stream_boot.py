"""Time to `spirit: ready` from one Nodus peer: a streaming boot
(crom.nodus.stream=1: the root reads the peer's export at once, the image
comes into RAM behind it) against a copy-first boot (the whole image in
RAM, checked, before the root is mounted), from the same peer on the same
link (a tap held to RATE with tbf), interleaved run by run. `ready` is the
timeline's step (ms of CLOCK_BOOTTIME in the guest); for the streaming
boot the end of its background copy (the `hydrate` step) too.

Alone: BENCH_ONLY=stream (bench/bench.py), or
  SPIRIT_KERNEL=… SPIRIT_INITRAMFS=out/initramfs.zst python3 bench/stream_boot.py"""

import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
from harness import VM, VMConfig  # noqa: E402
from test_stream_boot import streaming_lan  # noqa: E402

RATE = os.environ.get("SPIRIT_STREAM_RATE", "6mbit")


def one_boot(kernel: str, initramfs: str, lan: dict, stream: bool, log: Path) -> dict:
    flag = " crom.nodus.stream=1" if stream else ""
    vm = VM(VMConfig(kernel=kernel, initrd=initramfs,
                     append=f"console=ttyS0 quiet crom.mode=nodus crom.nodus.server={lan['server']} crom.network.timeout=20{flag}",
                     memory_mib=1024, cpus=2, nics=[lan["nic"]], wrapper=lan["wrapper"]), log)
    with vm:
        vm.expect(r"^spirit: ready$", timeout=900)
        vm.expect(r"spirit:/# ", partial=True)
        result = {}
        if stream:
            vm.expect(r"spirit: nodus: rootfs\.squashfs is in RAM and checked", timeout=900)
        steps = vm.timeline()["steps"]
        result["ready_ms"] = [s for s in steps if s["step"] == "ready"][-1]["end_ms"]
        if stream:
            result["copied_ms"] = [s for s in steps if s["step"] == "hydrate"][-1]["end_ms"]
        return result


def measure(kernel: str, initramfs: str, rootfs: Path, manifest: Path, runs: int, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    samples = {"stream": [], "copy": []}
    lan_iter = streaming_lan(out, str(rootfs), str(manifest), RATE, 6, "sptap6")
    lan = next(lan_iter)
    try:
        for run in range(runs):
            for kind in ["stream", "copy"]:
                sample = one_boot(kernel, initramfs, lan, kind == "stream", out / f"{kind}-{run}.log")
                print(f"bench: {kind} boot run {run + 1}/{runs}: ready at {sample['ready_ms']:.0f} ms"
                      + (f", image in RAM at {sample['copied_ms']:.0f} ms" if "copied_ms" in sample else ""), flush=True)
                samples[kind].append(sample)
    finally:
        lan_iter.close()
    median = {kind: statistics.median(s["ready_ms"] for s in samples[kind]) for kind in samples}
    return {"rate": RATE, "image_bytes": rootfs.stat().st_size, "runs": runs, "samples": samples,
            "median_ready_ms": median,
            "median_copied_ms": statistics.median(s["copied_ms"] for s in samples["stream"])}


def markdown(result: dict) -> str:
    m = result["median_ready_ms"]
    return f"""## Streaming boot against copy-first, from one Nodus peer

One peer (`spirit nodus serve`), the guest's link held to {result['rate']} (tbf), the image
{result['image_bytes'] >> 20} MiB; {result['runs']} run(s) each, interleaved; ms of CLOCK_BOOTTIME in the guest.

| boot | `spirit: ready` (median) | image whole in RAM (median) |
| --- | ---: | ---: |
| copy-first | {m['copy']:.0f} ms | before the root is mounted |
| streaming (`crom.nodus.stream=1`) | {m['stream']:.0f} ms | {result['median_copied_ms']:.0f} ms |

Streaming reaches ready **{(m['copy'] - m['stream']) / 1000:.1f} s** {'earlier' if m['stream'] < m['copy'] else 'later'} than copy-first.
"""


if __name__ == "__main__":
    runs = int(os.environ.get("BENCH_RUNS", "1"))
    rootfs = Path(os.environ.get("SPIRIT_ROOTFS", ROOT / "out" / "rootfs.squashfs"))
    manifest = Path(os.environ.get("SPIRIT_MANIFEST", rootfs.parent / "manifest.json"))
    result = measure(os.environ["SPIRIT_KERNEL"], os.environ.get("SPIRIT_INITRAMFS", str(ROOT / "out" / "initramfs.zst")),
                     rootfs, manifest, runs, ROOT / "out" / "bench" / "stream")
    (ROOT / "out" / "bench" / "stream.json").write_text(json.dumps(result, indent=2) + "\n")
    (ROOT / "out" / "bench" / "stream.md").write_text(markdown(result))
    print(markdown(result))
