"""The full-boot figure of `make bench`: Spirit booted from its media disk
to `spirit: ready`, N times; each step of /run/spirit/timeline.json (ms of
CLOCK_BOOTTIME, measured in the guest), PID 1's and every Spirit process's
VmRSS at ready, the sizes of what ships; and an SVG plot of the last run's
timeline, like `systemd-analyze plot`."""

import json
import re
import statistics
import sys
import time
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
from harness import VM, Disk, VMConfig  # noqa: E402


def one_boot(kernel: str, initramfs: str, disk: Path, log: Path) -> dict:
    """Boots `disk` to `spirit: ready`; returns the timeline and every
    Spirit process's VmRSS at ready, then powers off."""
    # QEMU's VGA at 1024x768: the size the HUD's targets are set for.
    vm = VM(VMConfig(kernel=kernel, initrd=initramfs, append="console=ttyS0 quiet", disks=[Disk(str(disk), id="media")],
                     extra_args=["-vga", "none", "-device", "VGA,xres=1024,yres=768"]), log)
    started = time.monotonic()
    with vm:
        vm.expect(r"^spirit: ready$", timeout=300)
        # The host's wall clock from QEMU's start: the firmware, the kernel's
        # load and QEMU's own start come on top of CLOCK_BOOTTIME.
        wall_ms = (time.monotonic() - started) * 1000
        vm.expect(r"spirit:/# ", partial=True)
        timeline = vm.timeline()
        unpack = unpack_window(vm.check("dmesg | grep -E 'Trying to unpack rootfs image|Freeing initrd memory'"))
        hud = measure_hud(vm)
        # PID 1 (spirit-init, /sbin/init), and whatever runs the spirit
        # binary (the supervisor, the daemons): VmRSS, and beside it RssAnon
        # (the process's own pages) and Pss (shared pages divided among
        # their users), which say how much of VmRSS is really its own.
        table = vm.check("for p in /proc/[0-9]*; do exe=$(readlink $p/exe 2>/dev/null); "
                         "case $exe in */spirit|/sbin/init) echo \"${p#/proc/} $(awk '/^VmRSS/ {print $2}' $p/status) "
                         "$(awk '/^RssAnon/ {print $2}' $p/status) $(awk '/^Pss:/ {print $2}' $p/smaps_rollup) "
                         "$(tr '\\0' ' ' < $p/cmdline)\";; esac; done")
        processes = []
        for line in table.splitlines():
            pid, rss, anon, pss, *command = line.split()
            processes.append({"pid": int(pid), "vmrss_kib": int(rss), "rssanon_kib": int(anon), "pss_kib": int(pss),
                              "command": " ".join(command)})
        vm.send("spirit poweroff\n")
        vm.wait_exit(120)
    return {"timeline": timeline["steps"], "processes": processes, "hud": hud, "wall_ms": wall_ms, "unpack": unpack}


def unpack_window(dmesg: str) -> dict | None:
    """The kernel's initramfs unpack, from its log: when it began and how
    long it took (ms of the kernel's clock), None if the lines are not there."""
    begun = re.search(r"^\[\s*([\d.]+)\] Trying to unpack rootfs image", dmesg, re.M)
    freed = re.search(r"^\[\s*([\d.]+)\] Freeing initrd memory", dmesg, re.M)
    if not (begun and freed):
        return None
    return {"start_ms": float(begun.group(1)) * 1000, "duration_ms": (float(freed.group(1)) - float(begun.group(1))) * 1000}


def hud_stats(vm) -> dict:
    """`spirit nexus stats --json`, without the console lines that share the serial line."""
    return json.loads(next(line for line in vm.check("spirit nexus stats --json").splitlines() if line.startswith("{")))


def measure_hud(vm) -> dict:
    """The HUD's figures: five mode transitions (each timed by the HUD from
    the request to the new frame on screen), then its frame statistics
    after a few seconds of widget updates (partial frames)."""
    transitions = []
    for mode in ["terminals", "bubble", "dashboard", "terminals", "dashboard"]:
        vm.check(f"spirit nexus mode {mode}")
        transitions.append(hud_stats(vm)["last_transition"]["ms"])
    vm.check("sleep 4")
    return {"transitions_ms": transitions, "stats": hud_stats(vm)}


def summarize(samples: list[dict], initramfs: Path, rootfs: Path, binary: Path, iso: Path | None, work: Path) -> dict:
    """The figures of `samples` (from one_boot), and the plot of the last."""
    steps: dict[str, list[float]] = {}
    for sample in samples:
        for step in sample["timeline"]:
            steps.setdefault(step["step"], []).append(step["duration_ms"])
    ready = [next(s["end_ms"] for s in sample["timeline"] if s["step"] == "ready") for sample in samples]
    pid1s = [next(p for p in sample["processes"] if p["pid"] == 1) for sample in samples]
    pid1 = [p["vmrss_kib"] for p in pid1s]
    others: dict[str, list[int]] = {}
    for sample in samples:
        for process in sample["processes"]:
            if process["pid"] != 1:
                others.setdefault(process["command"], []).append(process["vmrss_kib"])
    first_frame = [next(s for s in sample["timeline"] if s["step"] == "nexus:first-frame") for sample in samples]
    hud = [sample["hud"] for sample in samples]
    transitions = [ms for h in hud for ms in h["transitions_ms"]]
    nexus_rss = [p["vmrss_kib"] for sample in samples for p in sample["processes"] if p["command"].startswith("spirit nexus --serve")]
    wall = [sample["wall_ms"] for sample in samples]
    unpacks = [sample["unpack"] for sample in samples if sample["unpack"]]
    sizes = {name: path.stat().st_size for name, path in
             [("initramfs.zst", initramfs), ("rootfs.squashfs", rootfs), ("spirit binary", binary)]
             + ([("crom-spirit.iso", iso)] if iso and iso.exists() else [])}
    (work / "timeline.svg").write_text(plot(samples[-1]["timeline"]))
    return {
        "runs": len(samples),
        "ready_ms": {"min": min(ready), "median": statistics.median(ready), "all": ready},
        "steps_median_ms": {name: round(statistics.median(values), 1) for name, values in steps.items()},
        "host_wall_to_ready_ms": {"min": min(wall), "median": statistics.median(wall)},
        "initramfs_unpack_ms": {"start_median": statistics.median(u["start_ms"] for u in unpacks),
                                "duration_median": statistics.median(u["duration_ms"] for u in unpacks)} if unpacks else None,
        "pid1_vmrss_kib": {"min": min(pid1), "median": statistics.median(pid1)},
        "pid1_rssanon_kib": {"median": statistics.median(p["rssanon_kib"] for p in pid1s)},
        "pid1_pss_kib": {"median": statistics.median(p["pss_kib"] for p in pid1s)},
        "other_spirit_processes_vmrss_kib": {name: statistics.median(values) for name, values in others.items()},
        "sizes_bytes": sizes,
        "hud": {
            "boot_to_first_frame_ms": {"min": min(f["end_ms"] for f in first_frame),
                                       "median": statistics.median(f["end_ms"] for f in first_frame)},
            "first_frame_after_start_ms": {"median": statistics.median(f["duration_ms"] for f in first_frame),
                                           "max": max(f["duration_ms"] for f in first_frame)},
            "transition_ms": {"median": statistics.median(transitions), "max": max(transitions)},
            "full_frame_ms": {"p50": statistics.median(h["stats"]["render_ms"]["full"]["p50"] for h in hud),
                              "p99": max(h["stats"]["render_ms"]["full"]["p99"] for h in hud)},
            "partial_frame_ms": {"p50": statistics.median(h["stats"]["render_ms"]["partial"]["p50"] for h in hud),
                                 "p99": max(h["stats"]["render_ms"]["partial"]["p99"] for h in hud)},
            "nexus_vmrss_kib": {"median": statistics.median(nexus_rss), "max": max(nexus_rss)} if nexus_rss else None,
        },
        "plot": str(work / "timeline.svg"),
        "last_timeline": samples[-1]["timeline"],
    }


def plot(steps: list[dict]) -> str:
    """A horizontal bar a step, on a time axis in ms of CLOCK_BOOTTIME."""
    end = max(s["end_ms"] for s in steps) or 1
    # Every label fits: the left margin holds the longest step name (about 7 px
    # a character at 12 px sans-serif), the right one the longest figure.
    longest = max(len(f'{s["step"]} ({s["process"]})') for s in steps)
    left, plot_width, row = 16 + 7 * longest, 800, 22
    width = left + plot_width + 16 + 7 * len(f"{max(s['duration_ms'] for s in steps):.0f} ms")
    scale = plot_width / end
    colours = {"kernel": "#b0b0b0", "init": "#4e79a7", "worker": "#f28e2b", "supervisor": "#59a14f"}
    height = 40 + row * len(steps) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<text x="10" y="20" font-size="14">Crom-OS Spirit boot timeline (ms of CLOCK_BOOTTIME), ready at {end:.0f} ms</text>']
    tick = 1000 if end > 4000 else 500
    for t in range(0, int(end) + 1, tick):
        x = left + t * scale
        parts.append(f'<line x1="{x:.1f}" y1="30" x2="{x:.1f}" y2="{height - 25}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle" fill="#666">{t}</text>')
    for i, step in enumerate(sorted(steps, key=lambda s: s["start_ms"])):
        y = 36 + i * row
        x = left + step["start_ms"] * scale
        w = max(1.0, step["duration_ms"] * scale)
        colour = colours.get(step["process"], "#e15759") if step.get("ok", True) else "#e15759"
        label = escape(f'{step["step"]} ({step["process"]})')
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{colour}">'
                     f'<title>{escape(step["step"])}: {step["duration_ms"]:.1f} ms {escape(step.get("detail") or "")}</title></rect>')
        parts.append(f'<text x="{x + w + 4:.1f}" y="{y + 14}" fill="#333">{step["duration_ms"]:.0f} ms</text>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def markdown(result: dict) -> str:
    steps = "\n".join(f"| {name} | {ms:.1f} |" for name, ms in result["steps_median_ms"].items())
    sizes = "\n".join(f"| {name} | {size / 2**20:.1f} MiB |" for name, size in result["sizes_bytes"].items())
    others = "\n".join(f"| `{name}` | {kib / 1024:.1f} MiB |" for name, kib in result["other_spirit_processes_vmrss_kib"].items())
    return f"""## Full boot to `spirit: ready`

Spirit boots its media disk (virtio, ext4 labelled CROM_SPIRIT) as a user's machine does: modules, the
cascade, the image copied into RAM and hashed, zram, squashfs + overlay, switch_root, stage 2 and its
services. {result['runs']} boots; `ready` at {result['ready_ms']['min']:.0f} ms at best, {result['ready_ms']['median']:.0f} ms
at the median (CLOCK_BOOTTIME, from the kernel's start); on the host's wall clock from QEMU's start (the
firmware, loading the kernel and the initramfs, and QEMU's own start on top),
{result['host_wall_to_ready_ms']['median']:.0f} ms at the median. {unpack_line(result['initramfs_unpack_ms'])} Each step's median:

| step | median ms |
| --- | --- |
{steps}

Memory at ready (VmRSS): PID 1 {result['pid1_vmrss_kib']['median']:.0f} KiB at the median (target: under 1 MB;
RssAnon {result['pid1_rssanon_kib']['median']:.0f} KiB, Pss {result['pid1_pss_kib']['median']:.0f} KiB);

| other Spirit process | VmRSS |
| --- | --- |
{others or '| (none) | |'}

| artifact | size |
| --- | --- |
{sizes}

The last run's timeline: `{result['plot']}`.

{hud_markdown(result['hud'])}"""


def unpack_line(unpack: dict | None) -> str:
    if not unpack:
        return "The kernel's log had no initramfs unpack lines."
    return (f"The kernel unpacked the initramfs from {unpack['start_median']:.0f} ms for "
            f"{unpack['duration_median']:.0f} ms (median, its log), inside the `kernel` step.")


def hud_markdown(hud: dict) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"
    rss = hud["nexus_vmrss_kib"]
    return f"""## Nexus, the HUD (same boots, QEMU VGA at 1024x768, TCG)

| figure | value | target |
| --- | --- | --- |
| boot to the HUD's first frame (CLOCK_BOOTTIME) | {hud['boot_to_first_frame_ms']['median']:.0f} ms median, {hud['boot_to_first_frame_ms']['min']:.0f} ms best | (3 s on hardware; TCG is slower) |
| first frame after nexus starts (after its display came, when it waited for one) | {hud['first_frame_after_start_ms']['median']:.0f} ms median, {hud['first_frame_after_start_ms']['max']:.0f} ms worst | ≤ 300 ms: {verdict(hud['first_frame_after_start_ms']['median'] <= 300)} |
| mode transition (request to frame on screen) | {hud['transition_ms']['median']:.1f} ms median, {hud['transition_ms']['max']:.1f} ms worst | < 100 ms: {verdict(hud['transition_ms']['max'] < 100)} |
| full frame render | {hud['full_frame_ms']['p50']:.1f} ms p50, {hud['full_frame_ms']['p99']:.1f} ms p99 | (a native figure) |
| partial frame (a widget or a terminal line) | {hud['partial_frame_ms']['p50']:.2f} ms p50, {hud['partial_frame_ms']['p99']:.2f} ms p99 | ≤ 16 ms: {verdict(hud['partial_frame_ms']['p99'] <= 16)} |
| nexus VmRSS | {f"{rss['median'] / 1024:.1f} MiB median" if rss else "not measured"} | ≤ 24 MB: {verdict(bool(rss) and rss['max'] * 1024 <= 24e6)} |
"""


