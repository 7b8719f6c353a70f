"""make bench: Spirit measured against the peers people use, in one run,
on one kernel, under the same QEMU settings. Writes out/bench/report.md and
out/bench/report.json.

Today it measures module loading (the ModuleLoader's figure): the same set
of modules loaded in the same VM, in separate boots, by kmod's `modprobe -a`
and by `spirit modules load`, each timed in the guest by `spirit time`
(CLOCK_BOOTTIME from spawn to exit, so QEMU's start does not count); the
initramfs stage (bench/initramfs_stage.py): kernel hand-off to the exec of
the real init for Spirit, initramfs-tools, dracut and tiny-initramfs; the
full boot to `spirit: ready` step by step with memory and sizes, and its SVG
plot (bench/full_boot.py, from the same Spirit boots); and NBD image
delivery (bench/nbd.py): nbdcopy from Spirit's Nodus server, nbdkit and
qemu-nbd on loopback, and a Nodus boot's copy from one and from two peers;
HTTP image delivery (bench/http_fetch.py): Spirit's
boot client against busybox wget, from busybox httpd on loopback; and the
VM manager (bench/vm_bridge.py): start to agent ready, exec, save, restore;
GPU passthrough and return (bench/gpu_handover.py) on q35 + intel-iommu; a
machine with no boot medium going to rescue, and a `crom.gpu=passthrough`
boot (bench/edge_boots.py).
"""

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
from harness import VM, VMConfig  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import ai  # noqa: E402
import edge_boots  # noqa: E402
import full_boot  # noqa: E402
import gpu_handover  # noqa: E402
import http_fetch as http_delivery  # noqa: E402
import initramfs_stage  # noqa: E402
import layers  # noqa: E402
import nbd  # noqa: E402
import stream_boot  # noqa: E402
import upgrade  # noqa: E402
import vm_bridge  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
# BENCH_ONLY=modules: module loading alone (out/bench/modules.md and .json),
# without the peers, disks and models the other parts need. BENCH_ONLY=stream:
# the streaming boot against copy-first from one peer (out/bench/stream.md and .json).
# BENCH_ONLY=boot: the initramfs stage against its peers, the full boot and the
# no-medium and passthrough boots from the same run (out/bench/boot.md and .json).
ONLY = os.environ.get("BENCH_ONLY", "")
OUT = ROOT / "out" / "bench"
KERNEL = os.environ["SPIRIT_KERNEL"]
INITRAMFS = os.environ["SPIRIT_BENCH_INITRAMFS"]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out" / "spirit"))
# The initramfs and the media disk Spirit really boots (make initramfs, make media).
SPIRIT_INITRAMFS = Path(os.environ.get("SPIRIT_INITRAMFS", ROOT / "out" / "initramfs.zst"))
SPIRIT_MEDIA = Path(os.environ.get("SPIRIT_MEDIA", ROOT / "out" / "media.img"))
ROOTFS = Path(os.environ.get("SPIRIT_ROOTFS", ROOT / "out" / "rootfs.squashfs"))
ISO = Path(os.environ.get("SPIRIT_ISO", ROOT / "out" / "crom-spirit.iso"))
# The vm layer (make layer NAME=vm), for the layer add figure.
LAYERS = Path(os.environ.get("SPIRIT_LAYERS", ROOT / "out" / "layers"))
STICK = Path(os.environ.get("SPIRIT_STICK", ROOT / "out" / "crom-spirit-stick.img"))
# The AI runtime's figures: the real llama-server and the SmolLM2 GGUF (make llama-server model-gguf).
LLAMA_SERVER = Path(os.environ.get("SPIRIT_LLAMA_SERVER", ROOT / "out" / "llama-server"))
MODEL_GGUF = Path(os.environ.get("SPIRIT_MODEL", ROOT / "out" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
SIGNING_KEY = Path(os.environ.get("SIGNING_KEY", Path.home() / ".config/crom-spirit/signing.key"))
MEMORY, CPUS = 1024, 2

# Drivers for the disks, buses and NICs of PCs and VMs, and the filesystems
# and block devices of the boot: the initramfs's own set.
HARDWARE = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "sd_mod", "sr_mod", "nvme", "ahci", "ata_piix",
            "xhci_pci", "ehci_pci", "uas", "usb_storage", "e1000", "e1000e", "igb", "r8169"]

CONTENDERS = {
    "modprobe -a (kmod)": "/usr/local/sbin/modprobe -a",
    "spirit modules load": "/bin/spirit modules load",
}
# SPIRIT_BASELINE (make bench-modules) puts an older spirit binary in the
# bench initramfs as /bin/spirit.baseline: before and after in one run.
if os.environ.get("SPIRIT_BASELINE"):
    CONTENDERS["spirit modules load (baseline)"] = "/bin/spirit.baseline modules load"
# BENCH_MODULE_JOBS=N adds `spirit modules load --jobs N`, against the default (twice the vCPUs).
if os.environ.get("BENCH_MODULE_JOBS"):
    CONTENDERS[f"spirit modules load --jobs {int(os.environ['BENCH_MODULE_JOBS'])}"] = \
        f"/bin/spirit modules load --jobs {int(os.environ['BENCH_MODULE_JOBS'])}"


def busy_ticks(stat_line: str) -> int:
    """The CPU time all vCPUs spent working, in USER_HZ ticks, from
    /proc/stat's `cpu` line: user, nice, system, irq, softirq, steal (not
    idle or iowait)."""
    fields = [int(f) for f in stat_line.split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def one_boot(name: str, command: str, run: int) -> dict:
    vm = VM(VMConfig(kernel=KERNEL, initrd=INITRAMFS, append="console=ttyS0 quiet crom.break=modules",
                     memory_mib=MEMORY, cpus=CPUS, nics=["user,model=e1000"]),
            OUT / "logs" / f"{re.sub(r'[^a-z]+', '-', name)}-{run}.log")
    with vm:
        vm.expect(r"^spirit: break before modules: shell on ")
        vm.expect(r"/ # ", partial=True)
        before = int(vm.check("wc -l < /proc/modules"))
        names = vm.check("cat /etc/spirit/modules.boot /etc/spirit/modules.mount").split() + HARDWARE
        # The guest's CPU time across the load, from /proc/stat (USER_HZ = 100):
        # with busy / (vCPUs x wall) near 1, only less work goes faster.
        status, output = vm.run(f"s0=$(head -1 /proc/stat); /bin/spirit time {command} {' '.join(names)} 2>&1; rc=$?; "
                                f"echo \"@@stat $s0\"; echo \"@@stat $(head -1 /proc/stat)\"; (exit $rc)", timeout=300)
        match = re.search(r"spirit: time: ([\d.]+) ms", output)
        assert match, f"{name}: no timing in {output!r}; log: {vm.log_path}"
        stats = re.findall(r"^@@stat (cpu .*)$", output, re.MULTILINE)
        assert len(stats) == 2, f"{name}: no /proc/stat readings in {output!r}; log: {vm.log_path}"
        cpu_s = (busy_ticks(stats[1]) - busy_ticks(stats[0])) / 100
        after = int(vm.check("wc -l < /proc/modules"))
        return {"ms": float(match.group(1)), "cpu_s": cpu_s, "modules": after - before, "status": status}


def summary(samples: list[dict]) -> dict:
    times = [s["ms"] for s in samples]
    cpu = statistics.median(s["cpu_s"] for s in samples)
    median = statistics.median(times)
    return {"runs": len(times), "min_ms": min(times), "median_ms": median, "all_ms": times,
            "median_cpu_s": cpu, "all_cpu_s": [s["cpu_s"] for s in samples],
            # The share of the vCPUs' capacity the load used (1.0: both busy throughout).
            "cpu_use": round(cpu / (CPUS * median / 1000), 2),
            "modules_loaded": sorted({s["modules"] for s in samples})}


def measure_modules() -> dict:
    results = {name: [] for name in CONTENDERS}
    # Interleaved, so that a noisy minute on a shared machine hits both.
    for run in range(RUNS):
        for name, command in CONTENDERS.items():
            sample = one_boot(name, command, run)
            print(f"bench: {name} run {run + 1}/{RUNS}: {sample['ms']:.1f} ms, {sample['cpu_s']:.2f} CPU-s, "
                  f"{sample['modules']} modules", flush=True)
            results[name].append(sample)
    return {name: summary(samples) for name, samples in results.items()}


def modules_markdown(modules: dict) -> str:
    kmod = modules["modprobe -a (kmod)"]
    rows = "\n".join(f"| {name} | {s['runs']} | {s['min_ms']:.1f} | {s['median_ms']:.1f} | {s['median_cpu_s']:.2f} | "
                     f"{s['cpu_use']:.2f} | {kmod['median_ms'] / s['median_ms']:.2f}x | {', '.join(map(str, s['modules_loaded']))} |"
                     for name, s in modules.items())
    return f"""## Module loading

The same {len(HARDWARE)} hardware drivers and the initramfs's boot list (and all they depend on), loaded at a
`crom.break=modules` shell before anything else, one boot per run, the loaders interleaved. kmod's
`modprobe -a` loads one module after another; `spirit modules load` resolves the same names with its own
index and loads the dependency graph in parallel with `finit_module`. CPU-s: the guest's busy time across
the load, all vCPUs (/proc/stat: user, nice, system, irq, softirq, steal); use: CPU-s / ({CPUS} vCPUs x wall),
so 1.00 means both vCPUs worked throughout and only less work can go faster.

| loader | runs | min ms | median ms | median CPU-s | use | kmod / it (median) | modules loaded |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

kmod / Spirit (median): **{kmod['median_ms'] / modules['spirit modules load']['median_ms']:.2f}x** (target: at least 2x).
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if ONLY == "modules":
        modules = measure_modules()
        report = {"date": time.strftime("%Y-%m-%d", time.gmtime(started)), "runs": RUNS, "cpus": CPUS,
                  "module_loading": modules, "seconds": round(time.time() - started)}
        (OUT / "modules.json").write_text(json.dumps(report, indent=2) + "\n")
        (OUT / "modules.md").write_text(modules_markdown(modules))
        print((OUT / "modules.md").read_text())
        return
    if ONLY == "stream":
        streaming = stream_boot.measure(KERNEL, str(SPIRIT_INITRAMFS), ROOTFS, ROOTFS.parent / "manifest.json", RUNS, OUT / "stream")
        (OUT / "stream.json").write_text(json.dumps(streaming, indent=2) + "\n")
        (OUT / "stream.md").write_text(stream_boot.markdown(streaming))
        print((OUT / "stream.md").read_text())
        return
    if ONLY == "boot":
        stage = initramfs_stage.measure(Path(KERNEL), SPIRIT_INITRAMFS, SPIRIT_MEDIA, OUT / "peers", RUNS, OUT / "logs")
        boot = full_boot.summarize(stage.pop("spirit_boots"), SPIRIT_INITRAMFS, ROOTFS, SPIRIT, ISO, OUT)
        edges = edge_boots.measure(KERNEL, str(SPIRIT_INITRAMFS), SPIRIT_MEDIA, RUNS, OUT / "logs")
        report = {"date": time.strftime("%Y-%m-%d", time.gmtime(started)), "runs": RUNS, "cpus": CPUS,
                  "initramfs_stage": stage, "full_boot": boot, "edge_boots": edges, "seconds": round(time.time() - started)}
        (OUT / "boot.json").write_text(json.dumps(report, indent=2) + "\n")
        (OUT / "boot.md").write_text(initramfs_stage.markdown(stage) + "\n" + full_boot.markdown(boot) + "\n"
                                     + edge_boots.markdown(edges))
        print((OUT / "boot.md").read_text())
        return
    delivery = nbd.measure(SPIRIT, SIGNING_KEY, RUNS)
    peers = nbd.measure_peers(SPIRIT, SIGNING_KEY, RUNS)
    streaming = stream_boot.measure(KERNEL, str(SPIRIT_INITRAMFS), ROOTFS, ROOTFS.parent / "manifest.json", RUNS, OUT / "stream")
    fetch = http_delivery.measure(SPIRIT, SIGNING_KEY, RUNS)
    bridge = vm_bridge.measure(SPIRIT, RUNS)
    modules = measure_modules()
    stage = initramfs_stage.measure(Path(KERNEL), SPIRIT_INITRAMFS, SPIRIT_MEDIA, OUT / "peers", RUNS, OUT / "logs")
    # The full boot's figures come from the same Spirit boots.
    boot = full_boot.summarize(stage.pop("spirit_boots"), SPIRIT_INITRAMFS, ROOTFS, SPIRIT, ISO, OUT)
    edges = edge_boots.measure(KERNEL, str(SPIRIT_INITRAMFS), SPIRIT_MEDIA, RUNS, OUT / "logs")
    layer = layers.measure(KERNEL, str(SPIRIT_INITRAMFS), SPIRIT_MEDIA, LAYERS, RUNS, OUT / "logs" / "layers.log")
    upgrades = upgrade.measure(KERNEL, str(SPIRIT_INITRAMFS), ROOTFS, ROOTFS.parent / "manifest.json", STICK, RUNS, OUT / "upgrade")
    gpu = gpu_handover.measure(KERNEL, str(SPIRIT_INITRAMFS), SPIRIT_MEDIA, RUNS, OUT / "logs" / "gpu.log")
    runtime = ai.measure(SPIRIT, LLAMA_SERVER, MODEL_GGUF, RUNS, OUT / "ai")
    kmod, ours = modules["modprobe -a (kmod)"], modules["spirit modules load"]
    ratio = kmod["median_ms"] / ours["median_ms"]
    kernel_release = Path(KERNEL).resolve().parent.joinpath("release").read_text().strip() \
        if Path(KERNEL).resolve().parent.joinpath("release").exists() else "?"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    report = {
        "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)},
        "qemu": {"accel": "tcg", "machine": "pc", "memory_mib": MEMORY, "cpus": CPUS,
                 "version": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0]},
        "kernel": kernel_release,
        "module_loading": {"contenders": modules, "kmod_over_spirit_median": round(ratio, 2), "target": ">= 2.0"},
        "nbd": {"export_bytes": nbd.SIZE, "servers": delivery, "target": "spirit >= the faster peer"},
        "nodus_peers": {"image_bytes": nbd.SIZE, "peers": peers},
        "stream_boot": streaming,
        "http": {"image_bytes": http_delivery.SIZE, "clients": fetch},
        "vm_bridge": bridge,
        "gpu_handover": gpu,
        "full_boot": boot,
        "edge_boots": edges,
        "layers": layer,
        "upgrade": upgrades,
        "ai": runtime,
        "initramfs_stage": stage,
        "seconds": round(time.time() - started),
    }
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "report.md").write_text(f"""# Crom-OS Spirit benchmark

{report['date']}, {cpu}, {os.cpu_count()} cores; QEMU TCG (`-machine pc`, {CPUS} vCPUs, {MEMORY} MiB), {report['qemu']['version']};
kernel {kernel_release} (Debian). Every figure is measured inside the guest in ms of CLOCK_BOOTTIME.

{modules_markdown(modules)}
{initramfs_stage.markdown(stage)}
{full_boot.markdown(boot)}
{stream_boot.markdown(streaming)}
{edge_boots.markdown(edges)}
{layers.markdown(layer)}
{upgrade.markdown(upgrades)}
{nbd.markdown(delivery)}
{nbd.markdown_peers(peers)}
{http_delivery.markdown(fetch)}
{vm_bridge.markdown(bridge)}
{gpu_handover.markdown(gpu)}
{ai.markdown(runtime)}""")
    print((OUT / "report.md").read_text())


if __name__ == "__main__":
    main()
