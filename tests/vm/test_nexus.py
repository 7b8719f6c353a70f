"""Nexus, the HUD, on a real boot: its first frame on the screen (QEMU's
screendump, decoded here), each mode by its key chord (QMP send-key),
keys typed into a terminal and read back from `spirit nexus dump`, the
Sentinel's widget and its badge on the status bar (no Sentinel, none
firing, a crash loop's incidents), a HUD killed and back on screen within
2 s; the same on virtio-gpu. The screenshots are kept in out/screenshots/
(the README's come from there)."""

import json
import re
import shutil
import time
from pathlib import Path

from harness import Disk
from test_supervisor import CRASHY, wait_status, write_file as write_service

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "screenshots"


def ppm(path: Path) -> tuple[int, int, bytes]:
    """A binary PPM (P6, maxval 255) as width, height and RGB bytes."""
    data = path.read_bytes()
    fields, offset = [], 0
    while len(fields) < 4:
        while data[offset:offset + 1].isspace():
            offset += 1
        if data[offset:offset + 1] == b"#":
            offset = data.index(b"\n", offset)
            continue
        end = offset
        while not data[end:end + 1].isspace():
            end += 1
        fields.append(data[offset:end])
        offset = end
    assert fields[0] == b"P6" and fields[3] == b"255", fields
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[offset + 1:offset + 1 + width * height * 3]


def screen(vm, tmp_path: Path, name: str) -> tuple[int, int, bytes]:
    """The guest's screen now, as QEMU draws it."""
    path = tmp_path / f"{name}.ppm"
    answer = vm.qmp("screendump", filename=str(path), format="ppm")
    assert "error" not in answer, answer
    for _ in range(50):
        if path.exists() and path.stat().st_size > 0:
            break
        time.sleep(0.1)
    return ppm(path)


def keep_png(vm, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    answer = vm.qmp("screendump", filename=str(SHOTS / f"{name}.png"), format="png")
    assert "error" not in answer, answer


def colours(pixels: bytes) -> dict[bytes, int]:
    counts: dict[bytes, int] = {}
    for i in range(0, len(pixels), 3 * 7):  # every 7th pixel is plenty
        key = pixels[i:i + 3]
        counts[key] = counts.get(key, 0) + 1
    return counts


def assert_hud(pixels: bytes, what: str) -> None:
    counts = colours(pixels)
    total = sum(counts.values())
    background, most = max(counts.items(), key=lambda item: item[1])
    assert len(counts) >= 6, f"{what}: only {len(counts)} colours on screen: {counts}"
    assert most < total * 0.9, f"{what}: {most * 100 // total}% of the screen is {background.hex()}"
    assert background != b"\0\0\0" or most < total * 0.5, f"{what}: the screen is mostly black"


def changed(a: bytes, b: bytes) -> float:
    step = 3 * 11
    differ = sum(1 for i in range(0, min(len(a), len(b)), step) if a[i:i + 3] != b[i:i + 3])
    return differ / (min(len(a), len(b)) // step)


def key(vm, *names: str) -> None:
    answer = vm.qmp("send-key", keys=[{"type": "qcode", "data": name} for name in names])
    assert "error" not in answer, answer


QCODES = {" ": "spc", "-": "minus", "$": ("shift", "4"), "(": ("shift", "9"), ")": ("shift", "0"), "*": ("shift", "8"),
          "\n": "ret", "=": "equal", "/": "slash", ".": "dot", ":": ("shift", "semicolon")}


def type_text(vm, text: str) -> None:
    for char in text:
        code = QCODES.get(char, char.lower())
        if char.isupper():
            code = ("shift", char.lower())
        key(vm, *(code if isinstance(code, tuple) else (code,)))


# The failure colour (Palette.failure): the badge of a critical incident.
FAILURE = bytes.fromhex("e76f51")


def status_bar_has(pixels: bytes, width: int, colour: bytes) -> bool:
    """Whether the status bar (the top 32 rows at 8x16) shows `colour`."""
    bar = pixels[:width * 32 * 3]
    return any(bar[i:i + 3] == colour for i in range(0, len(bar), 3))


def firing(vm) -> list[dict]:
    return [i for i in json.loads(vm.answer("spiritctl --json sentinel"))["incidents"] if i["state"] == "firing"]


def dump(vm) -> str:
    return vm.check("spirit nexus dump")


def wait_for_dump(vm, pattern: str, seconds: float = 20) -> str:
    """The dump once it shows `pattern`; a HUD that is restarting (no
    answer yet) is asked again."""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        status, text = vm.run("spirit nexus dump 2>&1")
        if status == 0 and re.search(pattern, text, re.M):
            return text
        time.sleep(0.5)
    raise AssertionError(f"{pattern!r} is not on the HUD:\n{text}\nlog: {vm.log_path}")


FIND_HUD = ("for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\\0' ' ' | grep -q '^spirit nexus --serve' "
            "&& basename $p; done | head -1")


def hud_process(vm) -> int:
    """The HUD itself (the service's process is its watchdog)."""
    return int(vm.check(FIND_HUD))


def test_the_hud_is_on_screen_takes_keys_and_comes_back(boot, media_disk, tmp_path):
    vm = boot("", disks=[Disk(str(media_disk), id="media")], extra_args=["-vga", "none", "-device", "VGA,xres=1024,yres=768"])
    vm.expect(r"^spirit: ready$", timeout=240)
    vm.expect(r"spirit:/# ", partial=True)
    services = {s["name"]: s for s in json.loads(vm.check("spiritctl --json status"))["services"]}
    assert services["nexus"]["state"] == "running" and services["nexus"]["ready"], services["nexus"]
    steps = {step["step"]: step for step in vm.timeline()["steps"]}
    assert "nexus:first-frame" in steps, sorted(steps)
    assert "bochs" in steps["nexus:first-frame"]["detail"] or "drm" in steps["nexus:first-frame"]["detail"], steps["nexus:first-frame"]

    # The first frame: the dashboard, many colours, not a blank screen.
    width, height, dashboard = screen(vm, tmp_path, "dashboard")
    assert (width, height) == (1024, 768), (width, height)
    assert_hud(dashboard, "the dashboard")
    # The services widget is read every 2 s: nexus itself shows as running.
    text = wait_for_dump(vm, r"^  nexus\s+running")
    assert text.startswith("mode dashboard 1024x768"), text
    for title in ['"CPU"', '"MEMORY"', '"NETWORK"', '"SERVICES"', '"BOOT"', '"KERNEL LOG"']:
        assert title in text, text
    assert re.search(r"^  all\s+\d+%", text, re.M), text  # the CPU widget has a second reading
    assert re.search(r"^  \|spirit:/# ?$", text, re.M), text  # the terminal's shell prompt
    keep_png(vm, "nexus-dashboard")
    assert not status_bar_has(dashboard, width, FAILURE), "a badge on a clean boot"

    # The Sentinel widget: no Sentinel, then nothing firing; no badge either way.
    vm.answer("spiritctl stop sentinel")
    text = wait_for_dump(vm, r'^widget sentinel "SENTINEL"\n  sentinel not running\n')
    assert not re.search(r"^badge ", text, re.M), text
    vm.answer("spiritctl start sentinel")
    wait_status(vm, "sentinel", lambda s: s["state"] == "running" and s["ready"], "the sentinel's start")
    text = wait_for_dump(vm, r'^widget sentinel "SENTINEL"\n  no incidents$')
    assert not re.search(r"^badge ", text, re.M), text
    # A service in a crash loop: the Sentinel's incidents (service-failed,
    # critical) in the widget, newest first, and their count on the badge,
    # in the failure colour.
    write_service(vm, "/etc/spirit/services/crashy.toml", CRASHY)
    vm.answer("spiritctl start crashy")
    text = wait_for_dump(vm, r"^  critical service-failed  crashy  \d+ s$")
    assert re.search(r'^widget sentinel "SENTINEL"\n  (critical|warning) ', text, re.M), text
    deadline = time.monotonic() + 20
    while True:  # the badge is read each second: wait for it to agree with the Sentinel
        count = len(firing(vm))
        status, text = vm.run("spirit nexus dump 2>&1")
        if re.search(rf"^badge {count} critical$", text, re.M):
            break
        assert time.monotonic() < deadline, f"the badge does not say {count} critical:\n{text}"
        time.sleep(0.5)
    _, _, incident = screen(vm, tmp_path, "sentinel")
    assert status_bar_has(incident, width, FAILURE), "no badge in the failure colour on the status bar"
    keep_png(vm, "nexus-sentinel")

    # Each mode by its chord: the screen changes, and the dump says which.
    key(vm, "meta_l", "t")
    wait_for_dump(vm, r"^mode terminals ")
    _, _, terminals = screen(vm, tmp_path, "terminals")
    assert changed(dashboard, terminals) > 0.2
    assert len(colours(terminals)) >= 3, "the terminal grid shows no text"

    # Keys typed into the focused terminal's shell.
    type_text(vm, "echo NEXUS-$((6*7))\n")
    wait_for_dump(vm, r"^  \|NEXUS-42$")
    # Full-screen programs: top draws its table and quits on q; vi edits a file.
    type_text(vm, "top\n")
    wait_for_dump(vm, r"^  \|\s*PID\s+PPID\s+USER")
    key(vm, "q")
    wait_for_dump(vm, r"^  \|spirit:/# ?$")
    type_text(vm, "vi /tmp/nexus.txt\n")
    wait_for_dump(vm, r"^  \|~")
    type_text(vm, "iWRITTEN-IN-VI")
    wait_for_dump(vm, r"^  \|WRITTEN-IN-VI")
    key(vm, "esc")
    time.sleep(1)  # a lone ESC: vi waits a moment for the rest of an escape sequence
    type_text(vm, ":wq\n")
    deadline = time.monotonic() + 20
    while vm.run("cat /tmp/nexus.txt 2>&1")[1].splitlines()[-1:] != ["WRITTEN-IN-VI"]:
        assert time.monotonic() < deadline, f"vi did not write the file: {dump(vm)}"
        time.sleep(0.5)
    wait_for_dump(vm, r"^  \|spirit:/# ?$")
    key(vm, "meta_l", "ret")  # a second terminal beside it
    text = wait_for_dump(vm, r"^terminal 2 .* focused$")
    assert re.search(r"^terminal 1 ", text, re.M), text
    type_text(vm, "echo SECOND\n")
    wait_for_dump(vm, r"^  \|SECOND$")
    keep_png(vm, "nexus-terminals")
    _, _, grid = screen(vm, tmp_path, "grid")

    key(vm, "meta_l", "b")
    text = wait_for_dump(vm, r"^mode bubble ")
    assert re.search(r"^bubble \d\d:\d\d cpu \S+ ram \S+ alerts \d+$", text, re.M), text
    _, _, bubble = screen(vm, tmp_path, "bubble")
    assert changed(grid, bubble) > 0.01
    keep_png(vm, "nexus-bubble")

    # The same from a shell; the stats say how long things took.
    assert vm.check("spirit nexus mode dashboard") == "mode dashboard"
    stats = json.loads(vm.check("spirit nexus stats --json"))
    assert stats["frames"]["full"] >= 4 and stats["frames"]["partial"] >= 1, stats
    assert stats["first_frame_ms"] is not None and stats["last_transition"]["to"] == "dashboard", stats
    status, out = vm.run("spirit nexus mode sideways 2>&1")
    assert status == 100 and "bubble, dashboard or terminals" in out, out
    assert vm.check("spirit nexus screenshot /tmp/hud.png") .startswith("/tmp/hud.png: 1024x768")
    assert vm.check("head -c 8 /tmp/hud.png | od -An -c").split()[1:4] == ["P", "N", "G"]

    # A HUD that dies is restarted, and the screen comes back within 2 s
    # (on the guest's clock: from the kill to the new first frame).
    before = hud_process(vm)
    lines = vm.check(f"read up _ < /proc/uptime; kill -9 {before}; echo $up").splitlines()
    killed_ms = float([line for line in lines if re.fullmatch(r"[\d.]+", line)][-1]) * 1000
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, out = vm.run(FIND_HUD)
        pids = [int(line) for line in out.splitlines() if line.isdigit()]
        if status == 0 and pids and pids[0] != before:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no new HUD after kill -9; log: {vm.log_path}")
    wait_for_dump(vm, r"^mode dashboard ")
    wait_for_dump(vm, r"^badge \d+ critical$")  # the new HUD asks the Sentinel too
    frames = [step for step in vm.timeline()["steps"] if step["step"] == "nexus:first-frame"]
    assert len(frames) >= 2, frames
    back_ms = frames[-1]["end_ms"] - killed_ms
    assert 0 < back_ms < 2000, f"the screen came back {back_ms:.0f} ms after the kill"
    _, _, again = screen(vm, tmp_path, "again")
    assert_hud(again, "the restarted HUD")
    restarted = json.loads(vm.check("spiritctl --json status nexus"))["services"][0]
    assert restarted["restarts"] >= 1 and restarted["state"] == "running", restarted


def test_the_hud_on_virtio_gpu(boot, media_disk, tmp_path):
    vm = boot("", disks=[Disk(str(media_disk), id="media")], extra_args=["-vga", "none", "-device", "virtio-vga,xres=1024,yres=768"])
    vm.expect(r"^spirit: ready$", timeout=240)
    vm.expect(r"spirit:/# ", partial=True)
    steps = {step["step"]: step for step in vm.timeline()["steps"]}
    assert "virtio" in steps["nexus:first-frame"]["detail"], steps["nexus:first-frame"]
    # virtio-gpu shows nothing without DIRTYFB: what is on QEMU's screen is the HUD.
    _, _, pixels = screen(vm, tmp_path, "virtio")
    assert_hud(pixels, "the dashboard on virtio-gpu")
    key(vm, "meta_l", "t")
    wait_for_dump(vm, r"^mode terminals ")
    _, _, grid = screen(vm, tmp_path, "virtio-terminals")
    assert changed(pixels, grid) > 0.2


LAYOUT = """mode = "dashboard"
[hello]
widget = "script"
script = "hello.js"
column = 0
row = 0
width = 6
height = 3
[broken]
widget = "script"
script = "broken.js"
column = 6
row = 0
width = 6
height = 3
[terminal]
widget = "terminal"
column = 0
row = 3
width = 12
height = 3
"""


def write_file(vm, path: str, text: str) -> None:
    vm.check(f"mkdir -p $(dirname {path}) && printf '%s' '{text}' > {path}")


def test_scripted_widgets_a_script_that_fails_and_a_keyboard_plugged_in(boot, media_disk):
    vm = boot("", disks=[Disk(str(media_disk), id="media")],
              extra_args=["-vga", "none", "-device", "VGA,xres=1024,yres=768", "-device", "qemu-xhci,id=xhci"])
    vm.expect(r"^spirit: ready$", timeout=240)
    vm.expect(r"spirit:/# ", partial=True)
    write_file(vm, "/etc/spirit/nexus/widgets/hello.js",
               'function widget() { return ["HELLO-" + (6 * 7), "up " + read("/proc/uptime").split(" ")[0] + " s"]; }')
    write_file(vm, "/etc/spirit/nexus/widgets/broken.js", "function widget() { return nope.length; }")
    write_file(vm, "/etc/spirit/nexus.toml", LAYOUT)
    vm.check("spiritctl restart nexus")
    text = wait_for_dump(vm, r"^  HELLO-42$")
    assert re.search(r'^widget hello "HELLO"$', text, re.M), text
    assert re.search(r"^  up [\d.]+ s$", text, re.M), text
    # A script's error shows in its widget; the HUD runs on.
    assert re.search(r"^  /etc/spirit/nexus/widgets/broken.js: widget\(\): ReferenceError: 'nope' is not defined$", text, re.M), text
    # An endless script is stopped; a bad layout falls back to the built-in one, said in the log.
    write_file(vm, "/etc/spirit/nexus/widgets/broken.js", "while (true) {}")
    text = wait_for_dump(vm, r"broken.js: stopped after 500 ms$")
    write_file(vm, "/etc/spirit/nexus.toml", "mode = \"sideways\"\n")
    vm.check("spiritctl restart nexus")
    wait_for_dump(vm, r"^widget cpu ")
    assert "nexus.toml:1: mode: 'sideways' is not one of bubble, dashboard, terminals; using the built-in layout" in vm.check("spiritctl logs nexus -n 40")

    # A USB keyboard plugged in while the HUD runs is grabbed and read.
    answer = vm.qmp("device_add", driver="usb-kbd", id="kbd", bus="xhci.0")
    assert "error" not in answer, answer
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log = vm.check("spiritctl logs nexus -n 60")
        if re.search(r"nexus: keyboard '.*USB Keyboard' on /dev/input/event\d+ added", log):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the plugged keyboard was not taken: {log}")
