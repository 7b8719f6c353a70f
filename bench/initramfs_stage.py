"""The initramfs stage of `make bench`: from the kernel's hand-off to the
exec of the real init, for Spirit and for the initramfs systems Debian ships
(initramfs-tools, dracut, tiny-initramfs), on one kernel, under the same
QEMU settings, one boot per run, contenders interleaved.

The peers boot an ext4 root disk (virtio, root=/dev/vda) whose /sbin/init is
bench/probe.c: it reads CLOCK_BOOTTIME first thing, finds the kernel's "Run
/init as init process" line and its own line in the kernel log, prints them
and powers off. Spirit boots its own media disk as it really does and its
timeline (/run/spirit/timeline.json) gives the same moments; the boot
continues to `spirit: ready`, where PID 1's VmRSS is read, and ends with
`spirit poweroff`. The peers' images are built once per kernel release by
scripts/bench-peers.sh (a throwaway Debian chroot) and cached."""

import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
from harness import VM, Disk, VMConfig  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import full_boot  # noqa: E402

SPIRIT = "Spirit"
PEERS = ["initramfs-tools", "dracut", "tiny-initramfs"]
# Every contender's console is quiet: under TCG each line on the serial port
# costs time that is not the initramfs's.
APPEND = "console=ttyS0 quiet"

WHAT = {
    SPIRIT: "PID 1 (static Swift) starts a worker: loads the storage modules and coldplugs the rest in parallel "
            "(`finit_module`), finds the CROM_SPIRIT disk (boot cascade), copies rootfs.squashfs into RAM while hashing it "
            "(SHA-256, checked against the Ed25519-signed manifest), sets up zram, mounts squashfs + ext4-on-zram "
            "+ overlay, switch_root, exec /sbin/init",
    "initramfs-tools": "Debian's default: busybox + klibc `init` script, starts systemd-udevd, udevadm trigger + settle "
                       "(loads modules for every device), waits for root=, fsck, mounts it, run-init",
    "dracut": "systemd as PID 1 in the initramfs (udevd, generators, sysroot.mount from root=, "
              "initrd-switch-root.target), then `systemctl switch-root`",
    "tiny-initramfs": "one small static C init: loads the listed modules (virtio_pci, virtio_blk, ext4 and their "
                      "dependencies), waits for root=, mounts it, switch_root",
}

PROBE = re.compile(r"^bench-probe: init at (\d+) us, kmsg (-?\d+) us, /init at (-?\d+) us$")


def build_peers(kernel_dir: Path, cache: Path) -> Path:
    """The peers' images and the probe's root disk for the kernel in
    `kernel_dir`, built on the first run (a few minutes) and cached."""
    release = (kernel_dir / "release").read_text().strip()
    subprocess.run([ROOT / "scripts" / "bench-peers.sh", kernel_dir, cache], check=True)
    return cache / release


def _peer_boot(name: str, kernel: Path, image: Path, root_disk: Path, log: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="spirit-bench-root-") as directory:
        disk = Path(directory) / "root.img"
        shutil.copyfile(root_disk, disk)  # fsck and the journal may write to it: a fresh copy per boot
        vm = VM(VMConfig(kernel=str(kernel), initrd=str(image), append=f"{APPEND} root=/dev/vda",
                         disks=[Disk(str(disk))]), log)
        with vm:
            match = vm.expect(PROBE.pattern, timeout=300)
            vm.wait_exit(60)
    init, logged, handoff = (int(group) for group in match.groups())
    assert logged > 0 and handoff > 0, f"{name}: the probe found no kernel log line: {match.group(0)}; log: {log}"
    return {"total_ms": init / 1000, "kernel_ms": handoff / 1000, "initramfs_ms": (logged - handoff) / 1000}


def _spirit_boot(kernel: Path, initramfs: Path, media: Path, log: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="spirit-bench-media-") as directory:
        disk = Path(directory) / "media.img"
        shutil.copyfile(media, disk)
        boot = full_boot.one_boot(str(kernel), str(initramfs), disk, log)
    steps = {step["step"]: step for step in boot["timeline"]}
    missing = [step for step in ("kernel", "switch_root", "stage2") if step not in steps]
    assert not missing, f"Spirit: no {', '.join(missing)} in the timeline; log: {log}"
    handoff, exec_init = steps["kernel"]["end_ms"], steps["stage2"]["start_ms"]
    return {"total_ms": exec_init, "kernel_ms": handoff, "initramfs_ms": exec_init - handoff,
            "steps_ms": {name: step["duration_ms"] for name, step in steps.items()
                         if name not in ("kernel", "stage2", "ready") and step["start_ms"] < exec_init},
            "pid1_vmrss_kib": next(p["vmrss_kib"] for p in boot["processes"] if p["pid"] == 1),
            "pid1_rssanon_kib": next(p["rssanon_kib"] for p in boot["processes"] if p["pid"] == 1),
            "pid1_pss_kib": next(p["pss_kib"] for p in boot["processes"] if p["pid"] == 1),
            "boot": boot}


def _summary(samples: list[dict], key: str) -> dict:
    values = [s[key] for s in samples]
    return {"min": round(min(values), 1), "median": round(statistics.median(values), 1), "all": [round(v, 1) for v in values]}


def measure(kernel: Path, spirit_initramfs: Path, media: Path, peers_cache: Path, runs: int, logs: Path) -> dict:
    """`runs` boots of each contender, interleaved so that a noisy minute on
    a shared machine hits them all; times in ms."""
    images = build_peers(kernel.parent, peers_cache)
    initrds = {SPIRIT: spirit_initramfs} | {name: images / f"{name}.img" for name in PEERS}
    samples: dict[str, list[dict]] = {name: [] for name in initrds}
    for run in range(runs):
        for name, initrd in initrds.items():
            log = logs / f"initramfs-{name.lower()}-{run}.log"
            sample = _spirit_boot(kernel, initrd, media, log) if name == SPIRIT else \
                _peer_boot(name, kernel, initrd, images / "root.img", log)
            samples[name].append(sample)
            print(f"bench: initramfs stage {name} run {run + 1}/{runs}: {sample['initramfs_ms']:.0f} ms "
                  f"(kernel to real init {sample['total_ms']:.0f} ms)", flush=True)
    contenders = {}
    for name, runs_of in samples.items():
        contenders[name] = {"runs": len(runs_of), "initrd": str(initrds[name]), "initrd_bytes": initrds[name].stat().st_size,
                            "what": WHAT[name], **{key: _summary(runs_of, key) for key in ("initramfs_ms", "total_ms", "kernel_ms")}}
    spirit = samples[SPIRIT]
    contenders[SPIRIT]["steps_median_ms"] = {step: round(statistics.median(s["steps_ms"].get(step, 0) for s in spirit), 1)
                                             for step in spirit[-1]["steps_ms"]}
    for key in ("pid1_vmrss_kib", "pid1_rssanon_kib", "pid1_pss_kib"):
        contenders[SPIRIT][key] = _summary(spirit, key)
    contenders[SPIRIT]["media_bytes"] = media.stat().st_size
    ours = contenders[SPIRIT]["initramfs_ms"]["median"]
    ratios = {name: round(contenders[name]["initramfs_ms"]["median"] / ours, 2) for name in PEERS}
    versions = images / "versions.txt"
    return {"contenders": contenders, "peer_over_spirit_median": ratios, "spirit_boots": [s.pop("boot") for s in spirit],
            "peer_packages": versions.read_text().split("\n")[:-1] if versions.exists() else [],
            "root_disk_bytes": (images / "root.img").stat().st_size,
            "targets": {"initramfs-tools": ">= 2.0", "dracut": ">= 2.0", "tiny-initramfs": ">= 0.83 (Spirit within 1.2x)"}}


def markdown(result: dict) -> str:
    contenders = result["contenders"]

    def mib(size: int) -> str:
        return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 1024:.0f} KiB"

    ratio = {SPIRIT: "1.00x"} | {name: f"{value:.2f}x" for name, value in result["peer_over_spirit_median"].items()}
    rows = "\n".join(
        f"| {name} | {c['runs']} | **{c['initramfs_ms']['min']:.0f}** | **{c['initramfs_ms']['median']:.0f}** "
        f"| {c['total_ms']['min']:.0f} | {c['total_ms']['median']:.0f} | {c['kernel_ms']['median']:.0f} | {mib(c['initrd_bytes'])} "
        f"| {ratio[name]} |"
        for name, c in contenders.items())
    what = "\n".join(f"- **{name}**: {text}." for name, text in WHAT.items())
    spirit = contenders[SPIRIT]
    steps = ", ".join(f"{step} {ms:.0f}" for step, ms in spirit["steps_median_ms"].items())
    ratios = result["peer_over_spirit_median"]
    tiny = 1 / ratios["tiny-initramfs"]
    verdict = (f"initramfs-tools / Spirit **{ratios['initramfs-tools']:.2f}x** and dracut / Spirit **{ratios['dracut']:.2f}x** "
               f"(target: at least 2x each); Spirit / tiny-initramfs **{tiny:.2f}x** (target: at most 1.2x).")
    packages = ", ".join(f"`{line.replace(chr(9), ' ')}`" for line in result["peer_packages"])
    return f"""## Initramfs stage

From the kernel's hand-off to the initramfs to the exec of the real init, one boot per run, the four
contenders interleaved, all on the same kernel and QEMU settings, console `{APPEND}`.

| initramfs | runs | initramfs min ms | initramfs median ms | kernel to real init min ms | median ms | kernel part median ms | initrd size | / Spirit (median) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

{verdict}

What each number is:
- **kernel to real init**: CLOCK_BOOTTIME when the real init runs its first code. Peers: read by the probe
  (bench/probe.c, the root disk's static /sbin/init) first thing in main. Spirit: the `stage2` step's start in
  /run/spirit/timeline.json (stage 2's PID 1 reads the clock in an early constructor, before the Swift runtime).
- **kernel part**: the kernel's own start-up, up to the initramfs's /init. Peers: the timestamp of the kernel's
  `Run /init as init process` line (printk clock). Spirit: the `kernel` step's end (CLOCK_BOOTTIME in PID 1's
  early constructor, after the exec of /init).
- **initramfs**: the stage itself, measured on one clock each. Peers: the printk time of the probe's own
  /dev/kmsg line minus the `Run /init` line's (under TCG the printk clock drifts from CLOCK_BOOTTIME by a few
  ms per minute, so both ends are taken on the same clock). Spirit: `stage2` start minus `kernel` end.
  Spirit's median steps (ms) inside it, from its timeline (steps that run in parallel overlap): {steps}.

What each contender does in that time:
{what}

The peers' images are made by scripts/bench-peers.sh in a throwaway Debian chroot (mmdebstrap) holding the
three tools' -core packages (their meta-packages conflict), systemd and udev, with the bench kernel's modules:
{packages}. Each tool runs with its defaults except where a chroot has no host to detect: `dracut --no-hostonly`
(a generic image, as a distribution ships it) and `mktirfs -m no --include-modules=virtio_pci,virtio_blk,ext4`.
The peers' root disk is a {mib(result['root_disk_bytes'])} ext4 image with only the probe, mounted from the
initramfs; Spirit's media disk ({mib(spirit['media_bytes'])}) holds the signed system image, which Spirit
copies into RAM and checks before switch_root: work the peers do not do.

PID 1's VmRSS at `spirit: ready` (stage 2): min {spirit['pid1_vmrss_kib']['min']:.0f} KiB, median
{spirit['pid1_vmrss_kib']['median']:.0f} KiB (RssAnon {spirit['pid1_rssanon_kib']['median']:.0f} KiB, Pss
{spirit['pid1_pss_kib']['median']:.0f} KiB at the median).
"""


if __name__ == "__main__":
    # This section alone (make bench runs it with the others):
    #   SPIRIT_KERNEL=… BENCH_RUNS=1 python3 bench/initramfs_stage.py
    import json
    import os

    out = ROOT / "out" / "bench"
    stage = measure(Path(os.environ["SPIRIT_KERNEL"]), Path(os.environ.get("SPIRIT_INITRAMFS", out.parent / "initramfs.zst")),
                    Path(os.environ.get("SPIRIT_MEDIA", out.parent / "media.img")), out / "peers",
                    int(os.environ.get("BENCH_RUNS", "5")), out / "logs")
    (out / "initramfs-stage.json").write_text(json.dumps(stage, indent=2) + "\n")
    print(markdown(stage))
