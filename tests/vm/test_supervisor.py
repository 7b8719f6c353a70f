"""Stage 2's supervisor on a real boot: `spirit: ready` once the services
have settled, a service killed with SIGKILL comes back and `spiritctl
status` counts it, a crash-looping service ends failed and says so, and
`spiritctl poweroff` stops the services in reverse order before QEMU exits 0;
a supervisor killed with SIGKILL is replaced by PID 1.

The service for the kill is nodus, the daemon the image ships."""

import base64
import json
import re

from harness import Disk

DEPENDENT = """
command = ["/bin/sh", "-c", "echo dependent up; exec sleep 100000"]
requires = ["nodus"]
"""

CRASHY = """
command = ["/bin/sh", "-c", "echo crashing; exit 3"]
[backoff]
initial-ms = 100
cap-ms = 200
[crash-loop]
restarts = 3
within-seconds = 60
"""


def write_file(vm, path: str, text: str) -> None:
    # base64 on one line: the console's line discipline and the shell's
    # quoting cannot change it.
    encoded = base64.b64encode(text.strip().encode() + b"\n").decode()
    vm.check(f"echo {encoded} | base64 -d > {path}")


def status(vm) -> dict:
    return {s["name"]: s for s in json.loads(vm.answer("spiritctl --json status"))["services"]}


def wait_until(vm, probe, what: str, tries: int = 40):
    """probe()'s first true value, asked every half second."""
    for _ in range(tries):
        value = probe()
        if value:
            return value
        vm.check("sleep 0.5")
    raise AssertionError(f"{what} did not happen; log: {vm.log_path}")


def wait_status(vm, name: str, condition, what: str, tries: int = 60) -> dict:
    for _ in range(tries):
        services = status(vm)
        if name in services and condition(services[name]):
            return services[name]
        vm.check("sleep 0.5")
    raise AssertionError(f"{name}: {what} did not happen: {services.get(name)}; log: {vm.log_path}")


def test_services_are_supervised_and_stopped_in_order(boot, media_disk):
    vm = boot("crom.gpu=passthrough", disks=[Disk(str(media_disk))])
    vm.expect(r"^spirit: modules: graphics drivers held back \(crom.gpu=passthrough\)$")
    vm.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 2")
    vm.expect(r"^spirit: supervisor: \d+ services in /etc/spirit/services")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    # crom.gpu=passthrough: stage 2's modules service is ready, and it left
    # QEMU's VGA without its driver, free for a VM.
    assert status(vm)["modules"]["state"] == "running", status(vm)
    assert "graphics drivers held back (crom.gpu=passthrough)" in vm.answer("spiritctl logs modules")
    assert "bochs" not in {line.split()[0] for line in vm.check("cat /proc/modules").splitlines()}
    # Under passthrough stage 1 loads the virtualization group first (vfio-pci
    # before any graphics driver); without it, that group waits for stage 2.
    stage1 = [s["step"] for s in vm.timeline()["steps"] if s["step"].startswith("modules:")]
    assert stage1[0] == "modules:virtualization", stage1
    # With the GPU held back there is no display: the HUD says so once, is
    # settled (ready came) and is not restarted.
    vm.check("sleep 2")
    nexus = status(vm)["nexus"]
    assert nexus["state"] == "exited" and nexus["restarts"] == 0, nexus
    assert "not applicable here" in nexus["detail"] and "crom.gpu=passthrough" in nexus["detail"], nexus
    assert "no display on this machine" in vm.answer("spiritctl logs nexus")
    assert vm.check("readlink /bin/spiritctl") == "spirit"
    assert vm.check("cat /proc/$(cat /proc/1/task/1/children | awk '{print $1}')/cmdline | tr '\\0' ' '; echo").startswith("spirit supervise")

    # nodus, the first real daemon, runs under supervision in its cgroup
    # and serves the image this machine booted: its discovery answers.
    target = "nodus"
    nodus = status(vm)["nodus"]
    assert nodus["state"] == "running", status(vm)
    assert vm.check("cat /sys/fs/cgroup/spirit/nodus/memory.max") == str(256 << 20)
    assert vm.check("cat /sys/fs/cgroup/spirit/nodus/cpu.weight") == "100"
    assert str(nodus["pid"]) in vm.check("cat /sys/fs/cgroup/spirit/nodus/cgroup.procs").split()
    image = vm.check("sha256sum /run/spirit/image/rootfs.squashfs").split()[0]
    scan = vm.answer("spirit net scan --to 127.0.0.1 --timeout 500")
    assert f"127.0.0.1:10809 version " in scan and f"image {image[:12]}" in scan, scan
    write_file(vm, "/etc/spirit/services/dependent.toml", DEPENDENT)
    assert vm.answer("spiritctl start dependent") == "dependent: running"

    # kill -9: restarted, and counted.
    before = status(vm)[target]
    vm.check(f"kill -9 {before['pid']}")
    # (Console lines, searched in the whole console: they come between the
    # commands' output, wherever the supervisor wrote them, even after a prompt.)
    vm.wait_line(rf"spirit: warning: service {target}: was killed by SIGKILL \(Killed\); restart in \d+ ms$")
    after = wait_status(vm, target, lambda s: s["restarts"] == before["restarts"] + 1 and s["state"] == "running", "the restart")
    assert after["pid"] != before["pid"]
    table = vm.answer("spiritctl status")
    assert re.search(rf"^{target}\s+running\s+{after['pid']}\s+{after['restarts']}\s", table, re.M), table

    # A crash loop: failed, on the console and in the status.
    write_file(vm, "/etc/spirit/services/crashy.toml", CRASHY)
    vm.answer("spiritctl start crashy")
    vm.wait_line(r"spirit: error: service crashy: failed: crash loop: 3 restarts within 60 s, last exited with status 3; "
                     r"'spiritctl start crashy' tries again$")
    crashy = wait_status(vm, "crashy", lambda s: s["state"] == "failed", "the crash loop")
    assert crashy["restarts"] == 3 and crashy["detail"] == "crash loop: 3 restarts within 60 s, last exited with status 3", crashy
    # Its log: its own lines and the supervisor's about it, each with its time.
    log = vm.answer("spiritctl logs crashy -n 3").splitlines()
    assert len(log) == 3 and log[0].endswith(" crashing") and log[-1].endswith("'spiritctl start crashy' tries again"), log
    assert all(re.match(r"^\d+\.\d{3} ", line) for line in log), log
    status_code, output = vm.run("spiritctl start nosuch")
    assert status_code == 100 and "spiritctl: unknown service 'nosuch'" in output, output

    # Each service start is in the timeline.
    steps = [step["step"] for step in vm.timeline()["steps"]]
    assert steps.count(f"service:{target}") >= 2 and "service:dependent" in steps, steps
    assert re.search(rf"^service:{target}\s+supervisor", vm.check("spiritctl timeline"), re.M)

    # The supervisor dies: PID 1 says so and starts a new one, which stops
    # what the old one left running and starts the services again.
    supervisor = vm.check("cat /proc/1/task/1/children; echo").split()[0]
    old_pid = status(vm)[target]["pid"]
    vm.check(f"kill -9 {supervisor}")
    # PID 1's line may come before the kill's command has ended: searched
    # in the whole console, like the new supervisor's.
    vm.wait_line(r"spirit: error: the supervisor was killed by SIGKILL \(Killed\); starting a new one$")
    vm.wait_line(rf"spirit: warning: service {target}: stopped process {old_pid}, left by the previous supervisor$")
    again = wait_status(vm, target, lambda s: s["state"] == "running" and s["pid"] != old_pid, "the start by the new supervisor")
    vm.wait_line(rf"spirit: service {target}: ready, process {again['pid']}")
    assert again["restarts"] == 0, again
    assert vm.check(f"test -d /proc/{old_pid} && echo alive || echo gone") == "gone"

    # poweroff: the dependent stops before what it requires; QEMU exits 0.
    vm.send("spiritctl poweroff\n")
    vm.expect(r"^spirit: shutdown: poweroff, asked by SIGUSR2")
    vm.expect(r"^spirit: shutdown: stopping \d+ services")
    vm.expect(r"^spirit: shutdown: dependent stopped in [\d.]+ ms$")
    vm.expect(rf"^spirit: shutdown: {target} stopped in [\d.]+ ms$")
    vm.expect(r"^spirit: shutdown: all services stopped in [\d.]+ ms$")
    vm.expect(r"^spirit: shutdown: every process stopped, .*; poweroff now$")
    assert vm.wait_exit(60) == 0
