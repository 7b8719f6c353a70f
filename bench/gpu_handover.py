"""GPU passthrough and return for `make bench`: Spirit booted from its media
disk on q35 with an emulated Intel IOMMU (tests/vm/test_gpu.py's machine:
the bochs VGA at 00:02.0 with the HUD on it, an e1000 at 00:03.0), and in
that one boot, N times each, `spirit gpu passthrough --device` and `spirit
gpu return --device` for the VGA (the HUD stopped and started again) and for
the e1000. The figure is the plan's run as the command reports it (ms of
CLOCK_BOOTTIME from its first step to its last: sysfs writes, the driver
links polled, the HUD's stop or start through the supervisor).

Run alone: SPIRIT_KERNEL=… SPIRIT_INITRAMFS=… SPIRIT_MEDIA=… python3 bench/gpu_handover.py [RUNS]."""

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
from harness import VM, Disk, VMConfig  # noqa: E402

VGA = "0000:00:02.0"
NIC = "0000:00:03.0"
EXTRA = [
    "-machine", "q35,kernel-irqchip=split",
    "-device", "intel-iommu,intremap=on,caching-mode=on",
    "-vga", "none", "-device", "VGA,xres=1024,yres=768,addr=02.0",
    "-netdev", "user,id=n0", "-device", "e1000,netdev=n0,addr=03.0",
]


def hud_ready(vm) -> bool:
    out = vm.check("spiritctl --json status")
    # A console line of PID 1 (a service ready) may come first.
    hud = {s["name"]: s for s in json.loads(out[out.index('{"now_ms"'):])["services"]}["nexus"]
    return hud["state"] == "running" and bool(hud["ready"])


def moved(vm, command: str) -> float:
    out = vm.check(command + " 2>&1", timeout=120)
    found = re.search(r"\((\d+) ms, (\d+) steps\)", out)
    assert found and found.group(2) != "0", out
    return float(found.group(1))


def measure(kernel: str, initramfs: str, disk: Path, runs: int, log: Path) -> dict:
    samples = {f"{device}_{direction}_ms": [] for device in ("vga", "e1000") for direction in ("passthrough", "return")}
    vm = VM(VMConfig(kernel=kernel, initrd=initramfs, append="console=ttyS0 quiet intel_iommu=on",
                     disks=[Disk(str(disk), id="media")], memory_mib=1536, extra_args=EXTRA), log)
    with vm:
        vm.expect(r"^spirit: ready$", timeout=300)
        vm.expect(r"spirit:/# ", partial=True)
        for run in range(runs):
            for name, address in (("vga", VGA), ("e1000", NIC)):
                samples[f"{name}_passthrough_ms"].append(moved(vm, f"spirit gpu passthrough --device {address}"))
                samples[f"{name}_return_ms"].append(moved(vm, f"spirit gpu return --device {address}"))
                if name == "vga":
                    # The next run starts with the HUD on the card again, as a user's would.
                    deadline = time.monotonic() + 60
                    while not hud_ready(vm):
                        assert time.monotonic() < deadline, vm.check("spiritctl status")
                        time.sleep(0.5)
            print("bench: gpu run {}/{}: {}".format(run + 1, runs, ", ".join(f"{k} {v[-1]:.0f}" for k, v in samples.items())),
                  flush=True)
        vm.send("spirit poweroff\n")
        vm.wait_exit(120)
    return {key: {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}
            for key, values in samples.items()} | {"runs": runs}


def markdown(figures: dict) -> str:
    def row(label, key):
        f = figures[key]
        return f"| {label} | {f['median']:.0f} ms | {f['min']:.0f}–{f['max']:.0f} ms |"
    return f"""## GPU passthrough and return

Spirit on q35 with an emulated Intel IOMMU (QEMU TCG), {figures['runs']} runs in one boot; each figure is the
plan's run as `spirit gpu passthrough|return --device` reports it (sysfs writes, driver links polled, the
HUD stopped or started through the supervisor). Emulated devices only: a real GPU's reset and driver
probe are not in these figures.

| what | median | range |
| --- | --- | --- |
{row("bochs VGA (HUD on it) → vfio-pci", "vga_passthrough_ms")}
{row("vfio-pci → bochs-drm, HUD started", "vga_return_ms")}
{row("e1000 → vfio-pci", "e1000_passthrough_ms")}
{row("vfio-pci → e1000", "e1000_return_ms")}
"""


if __name__ == "__main__":
    figures = measure(os.environ["SPIRIT_KERNEL"], os.environ.get("SPIRIT_INITRAMFS", str(ROOT / "out/initramfs.zst")),
                      Path(os.environ.get("SPIRIT_MEDIA", ROOT / "out/media.img")),
                      int(sys.argv[1]) if len(sys.argv) > 1 else 3, ROOT / "out/bench/logs/gpu.log")
    print(json.dumps(figures, indent=2))
    print(markdown(figures))
