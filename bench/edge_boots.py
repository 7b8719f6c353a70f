"""Two boots `make bench` times besides the usual one (bench/full_boot.py):

- a machine with no boot medium, an xHCI controller and a network card (as
  every PC has) and the default `crom.http=`: how long from the boot
  worker's start until the cascade gives up and the rescue shell opens,
  each source's reason kept. The design's target: the rescue shell within
  2 s of the worker's start.
- the media disk with `crom.gpu=passthrough`: the virtualization group
  (vfio-pci first) is loaded in stage 1, where it must claim a GPU before a
  graphics driver can; the boot to `spirit: ready` and that step.

Each is timed in the guest (CLOCK_BOOTTIME, the timeline), N boots each."""

import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
from harness import VM, Disk, VMConfig  # noqa: E402

APPEND = "console=ttyS0 quiet"


def worker_start(steps: list[dict]) -> float:
    """The boot worker's first moment: the start of its first step."""
    return min(s["start_ms"] for s in steps if s["process"] == "worker")


def rescue_boot(kernel: str, initramfs: str, log: Path) -> dict:
    vm = VM(VMConfig(kernel=kernel, initrd=initramfs, append=APPEND, nics=["user,model=e1000"],
                     extra_args=["-device", "qemu-xhci"]), log)
    with vm:
        vm.expect(r"^spirit: rescue shell on ", timeout=300)
        vm.expect(r"# ", partial=True, timeout=60)
        steps = vm.timeline()["steps"]
        reasons = dict(re.findall(r"^spirit: (parasite|usb|http|nodus): (.*)$", vm.console, re.M))
    cascade = [s for s in steps if s["step"] == "cascade"][-1]
    start = worker_start(steps)
    return {"worker_start_ms": start, "cascade_ms": cascade["duration_ms"],
            "to_rescue_ms": cascade["end_ms"] - start, "reasons": reasons,
            "steps": {s["step"]: s["duration_ms"] for s in steps if s["process"] == "worker"}}


def passthrough_boot(kernel: str, initramfs: str, media: Path, log: Path) -> dict:
    vm = VM(VMConfig(kernel=kernel, initrd=initramfs, append=f"{APPEND} crom.gpu=passthrough",
                     disks=[Disk(str(media), id="media")]), log)
    with vm:
        vm.expect(r"^spirit: ready$", timeout=300)
        vm.expect(r"spirit:/# ", partial=True)
        steps = vm.timeline()["steps"]
        vm.send("spirit poweroff\n")
        vm.wait_exit(120)
    by_name = {s["step"]: s for s in steps}
    virtualization = next((s for s in steps if s["step"] == "modules:virtualization"), None)
    return {"ready_ms": by_name["ready"]["end_ms"],
            "stage1_virtualization_ms": virtualization["duration_ms"] if virtualization else None,
            "switch_root_end_ms": by_name["switch_root"]["end_ms"]}


def measure(kernel: str, initramfs: str, media: Path, runs: int, logs: Path) -> dict:
    rescue, passthrough = [], []
    for run in range(runs):
        sample = rescue_boot(kernel, initramfs, logs / f"rescue-{run}.log")
        print(f"bench: no media to rescue run {run + 1}/{runs}: {sample['to_rescue_ms']:.0f} ms from the worker's start",
              flush=True)
        rescue.append(sample)
        sample = passthrough_boot(kernel, initramfs, media, logs / f"passthrough-{run}.log")
        print(f"bench: crom.gpu=passthrough run {run + 1}/{runs}: ready at {sample['ready_ms']:.0f} ms", flush=True)
        passthrough.append(sample)
    to_rescue = [s["to_rescue_ms"] for s in rescue]
    ready = [s["ready_ms"] for s in passthrough]
    virtualization = [s["stage1_virtualization_ms"] for s in passthrough if s["stage1_virtualization_ms"] is not None]
    return {
        "runs": runs,
        "no_media_rescue": {"to_rescue_ms": {"min": min(to_rescue), "median": statistics.median(to_rescue)},
                            "cascade_ms_median": statistics.median(s["cascade_ms"] for s in rescue),
                            "worker_steps_median_ms": {name: round(statistics.median(s["steps"].get(name, 0) for s in rescue), 1)
                                                       for name in rescue[-1]["steps"]},
                            "reasons": rescue[-1]["reasons"], "target_ms": 2000},
        "gpu_passthrough": {"ready_ms": {"min": min(ready), "median": statistics.median(ready)},
                            "stage1_virtualization_ms_median": statistics.median(virtualization) if virtualization else None},
    }


def markdown(result: dict) -> str:
    rescue, gpu = result["no_media_rescue"], result["gpu_passthrough"]
    median = rescue["to_rescue_ms"]["median"]
    verdict = "met" if median <= rescue["target_ms"] else f"**missed** ({median / rescue['target_ms']:.2f}x the target)"
    steps = "\n".join(f"| {name} | {ms:.1f} |" for name, ms in rescue["worker_steps_median_ms"].items())
    reasons = "\n".join(f"- {source}: {reason}" for source, reason in rescue["reasons"].items())
    virtualization = gpu["stage1_virtualization_ms_median"]
    return f"""## A machine with no boot medium

No disk, an xHCI controller and an e1000 card on QEMU's user network (DHCP answers, no boot server), the
default `crom.http=`; {result['runs']} boots. From the boot worker's start to the cascade's end (the rescue
shell opens next): **{median:.0f} ms** median, {rescue['to_rescue_ms']['min']:.0f} ms best (target ≤ 2000 ms:
{verdict}); the cascade itself {rescue['cascade_ms_median']:.0f} ms. The worker's steps (median ms):

| step | ms |
| --- | --- |
{steps}

Why each source gave up (last run):

{reasons}

## A boot with `crom.gpu=passthrough`

The media disk, `crom.gpu=passthrough`: the virtualization group (vfio-pci first) loads in stage 1, before
any graphics driver could claim the GPU. `spirit: ready` at **{gpu['ready_ms']['median']:.0f} ms** median
({gpu['ready_ms']['min']:.0f} ms best); the stage-1 virtualization step
{f"{virtualization:.0f} ms" if virtualization is not None else "not in the timeline"} (median).
"""
