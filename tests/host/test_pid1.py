"""spirit-init, PID 1, as PID 1 of a PID namespace: `unshare --pid --fork
--mount --net` and a chroot into a small root with busybox and a fake
/bin/spirit (a shell script that plays the worker, the supervisor and the
helpers and logs what it was asked). The binary needs no test option: it is
the same file that goes into the initramfs. What it mounts stays in the
namespace; /dev, /sys and /run are the test's own directories (bind-mounted
onto themselves, so that its early mounts leave them alone and the test
reads the timeline), with the console's terminal a pty the test holds.

The namespace's init ends in reboot(2), which the kernel turns into
SIGHUP (restart) or SIGINT (halt, power off) of that init: the exit status
shows which action PID 1 chose."""

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INIT = Path(os.environ.get("SPIRIT_INIT", ROOT / "out/spirit-init"))
BUSYBOX = Path("/bin/busybox")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not INIT.exists() or not BUSYBOX.exists(),
                                reason="needs root, out/spirit-init (make spirit) and busybox-static")

FAKE_SPIRIT = r"""#!/bin/sh
echo "$(cut -d' ' -f1 /proc/uptime) $$ $*" >> /run/fake.log
case "$1" in
boot-worker)
    case "$(cat /etc/worker-mode)" in
    fail) echo "no system image found: the test's worker" > /run/spirit/rescue-reason; exit 3 ;;
    crash) kill -SEGV $$ ;;
    # An orphan: the inner shell exits at once, its sleep goes to PID 1.
    orphan) sh -c 'sleep 0.5 >/dev/null 2>&1 &'; exec sleep 1000 ;;
    esac ;;
supervise)
    # PID 1's boot.stage2 record, which the real supervisor writes first.
    if [ "$2" = "--record" ]; then shift 2; echo "$*" >> /run/journal.log; fi
    case "$(cat /etc/supervisor-mode)" in
    crash) exit 1 ;;
    ready) trap 'echo stopped >> /run/fake.log; exit 0' TERM; kill -HUP 1; while true; do sleep 0.1; done ;;
    esac ;;
rescue-watch) exec sleep 1000 ;;
init-journal) shift; echo "$*" >> /run/journal.log ;;
shutdown-finish) echo "spirit: shutdown: every process stopped, fake, in 0 ms; $2 now" ;;
esac
"""


class Namespace:
    """spirit-init as PID 1 of new PID, mount and network namespaces."""

    def __init__(self, root: Path, *arguments: str, worker="orphan", supervisor="ready"):
        self.root = root
        for directory in ["bin", "etc", "dev", "run", "sys/class/tty/console", "tmp"]:
            (root / directory).mkdir(parents=True, exist_ok=True)
        shutil.copy(BUSYBOX, root / "bin/busybox")
        for applet in ["sh", "sleep", "cat", "cut", "echo", "kill", "tty"]:
            (root / "bin" / applet).symlink_to("busybox")
        (root / "bin/spirit").write_text(FAKE_SPIRIT)
        (root / "bin/spirit").chmod(0o755)
        shutil.copy(INIT, root / "init")
        (root / "etc/worker-mode").write_text(worker)
        (root / "etc/supervisor-mode").write_text(supervisor)
        (root / "sys/class/tty/console/active").write_text("tty0 ttyS0\n")
        os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
        (root / "dev/ttyS0").touch()
        # The console terminal: a pty whose slave is bound onto /dev/ttyS0.
        self.master, slave = os.openpty()
        self.slave_path = os.ttyname(slave)
        os.close(slave)
        script = (f"set -e; cd {root}; for d in dev run sys; do mount --bind $d $d; done; "
                  f"mount --bind {self.slave_path} dev/ttyS0; exec chroot . /init {' '.join(arguments)}")
        self.process = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "--net", "bash", "-c", script],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.tty_output = b""
        self.pid = self._init_pid()

    def _read(self):
        for raw in self.process.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))

    def _init_pid(self) -> int:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            except FileNotFoundError:
                break
            if children:
                pid = int(children[0])
                # Past bash and chroot: the namespace's PID 1 is /init.
                if os.readlink(f"/proc/{pid}/exe").endswith("/init"):
                    return pid
            time.sleep(0.02)
        raise AssertionError(f"no /init in the namespace; output: {self.drain()}")

    def drain(self) -> list[str]:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen

    def expect(self, pattern: str, timeout=10.0) -> re.Match:
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r}; the console said:\n" + "\n".join(self.drain()))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match

    def tty(self, text: str, pattern: str, timeout=10.0):
        """Types on the console terminal and waits for `pattern` there."""
        os.write(self.master, text.encode())
        deadline = time.time() + timeout
        os.set_blocking(self.master, False)
        while time.time() < deadline:
            try:
                self.tty_output += os.read(self.master, 4096)
            except (BlockingIOError, OSError):  # EIO: no shell has the terminal open now
                time.sleep(0.05)
            if re.search(pattern, self.tty_output.decode(errors="replace")):
                return
        raise AssertionError(f"no {pattern!r} on the terminal: {self.tty_output!r}")

    def fake_log(self) -> list[list[str]]:
        path = self.root / "run/fake.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def timeline(self) -> list[str]:
        return [re.search(r'"step":"([^"]*)"', line).group(1)
                for line in (self.root / "run/spirit/timeline.jsonl").read_text().splitlines()]

    def children(self) -> list[int]:
        return [int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()]

    def zombies(self) -> list[int]:
        return [p for p in self.children() if Path(f"/proc/{p}/stat").read_text().split(") ")[1].startswith("Z")]

    def wait(self, timeout=30.0) -> int:
        return self.process.wait(timeout=timeout)

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
        # The bind mounts were the namespace's: nothing is left mounted here.


@pytest.fixture
def namespace(tmp_path):
    made = []

    def make(*arguments, **modes):
        made.append(Namespace(tmp_path / f"root{len(made)}", *arguments, **modes))
        return made[-1]

    yield make
    for ns in made:
        ns.close()


def test_stage1_reaps_orphans_and_reboots_on_sigterm(namespace):
    ns = namespace(worker="orphan")
    ns.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 1, kernel \S+$")
    assert Path(f"/proc/{ns.pid}/status").read_text().count("NSpid") == 1
    assert re.search(r"^NSpid:\s+\d+\s+1$", Path(f"/proc/{ns.pid}/status").read_text(), re.M)
    # The early mounts it made are the namespace's: /proc, /dev/pts, /dev/shm.
    mounts = Path(f"/proc/{ns.pid}/mounts").read_text()
    assert re.search(r"^proc /proc proc ", mounts, re.M) and re.search(r"^devpts /dev/pts devpts ", mounts, re.M), mounts
    deadline = time.time() + 5
    while not [e for e in ns.fake_log() if e[2:] == ["boot-worker"]] and time.time() < deadline:
        time.sleep(0.05)
    assert (ns.root / "run/spirit/worker.pid").read_text().strip().isdigit()
    assert ns.timeline()[:3] == ["kernel", "runtime", "early-mounts"], ns.timeline()
    # The worker's orphan (a sleep of 0.5 s) is handed to PID 1 and reaped.
    time.sleep(0.3)
    orphans = [p for p in ns.children() if Path(f"/proc/{p}/comm").read_text().strip() == "sleep"
               and "1000" not in Path(f"/proc/{p}/cmdline").read_text()]
    assert orphans, f"no orphan under PID 1: {ns.children()}"
    time.sleep(1.0)
    assert not ns.zombies() and not set(orphans) & set(ns.children())
    # SIGTERM from outside (sender 0: not in the namespace) reaches it through the signalfd.
    os.kill(ns.pid, signal.SIGTERM)
    ns.expect(r"^spirit: shutdown: reboot, asked by SIGTERM from process 0$")
    ns.expect(r"^spirit: shutdown: every process stopped, fake, in 0 ms; reboot now$")
    assert ns.wait() == -signal.SIGHUP  # reboot(2) with RESTART in a PID namespace
    assert ["shutdown", "action", "reboot", "asked_by", "SIGTERM", "from", "process", "0"] in \
        [line.split() for line in (ns.root / "run/journal.log").read_text().splitlines()]


def test_stage1_opens_rescue_when_the_worker_fails_and_tries_again(namespace):
    ns = namespace(worker="fail")
    ns.expect(r"^spirit: rescue: no system image found: the test's worker$")
    ns.expect(r"^spirit: rescue shell on /dev/ttyS0: 'exit' tries the boot again")
    ns.expect(r"^spirit: rescue tools: spirit-diag")
    # The shell is on the console terminal, which is its stdin and stdout.
    ns.tty("echo OK-$((6*7)); tty\n", r"OK-42\s+/dev/ttyS0")
    os.write(ns.master, b"exit\n")
    assert not (ns.root / "run/spirit/rescue-reason").exists()
    ns.expect(r"^spirit: the rescue shell ended; trying the boot again$")
    ns.expect(r"^spirit: rescue: no system image found: the test's worker$")
    words = [entry[2:] for entry in ns.fake_log()]
    assert words.count(["boot-worker"]) == 2 and ["rescue-watch"] in words, words
    os.kill(ns.pid, signal.SIGUSR2)
    ns.expect(r"^spirit: shutdown: poweroff, asked by SIGUSR2 from process 0$")
    assert ns.wait() == -signal.SIGINT  # reboot(2) with POWER_OFF in a PID namespace


def test_stage1_names_the_signal_that_killed_the_worker(namespace):
    ns = namespace(worker="crash")
    ns.expect(r"^spirit: rescue: the boot worker was killed by SIGSEGV \(Segmentation fault\)$")
    ns.expect(r"^spirit: rescue shell on /dev/ttyS0")
    os.kill(ns.pid, signal.SIGUSR1)
    ns.expect(r"^spirit: shutdown: halt, asked by SIGUSR1 from process 0$")
    assert ns.wait() == -signal.SIGINT


def test_stage2_restarts_a_crashing_supervisor_a_second_apart(namespace):
    ns = namespace("--switched-root", supervisor="crash")
    ns.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 2, kernel \S+$")
    for _ in range(3):
        ns.expect(r"^spirit: error: the supervisor exited with status 1; starting a new one$")
    started = [entry for entry in ns.fake_log() if entry[2:3] == ["supervise"]]
    # Only the first gets PID 1's record to write: the journal holds it once.
    assert started[0][3:7] == ["--record", "boot.stage2", "root", "switched"], started[0]
    assert all(entry[2:] == ["supervise"] for entry in started[1:]), started
    starts = [float(entry[0]) for entry in started]
    assert len(starts) >= 3
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(gap >= 0.95 for gap in gaps), gaps
    # Not ready: the console still gets a shell.
    ns.tty("echo SHELL-$((6*7))\n", r"SHELL-42")
    assert ns.timeline() == ["stage2"]
    assert (ns.root / "run/journal.log").read_text().startswith("boot.stage2 root switched mount_problems")
    os.kill(ns.pid, signal.SIGTERM)
    ns.expect(r"^spirit: shutdown: reboot, asked by SIGTERM from process 0$")
    assert ns.wait() == -signal.SIGHUP


def test_stage2_is_ready_when_the_supervisor_says_so_and_stops_it_first(namespace):
    ns = namespace("--switched-root", supervisor="ready")
    ns.expect(r"^spirit: ready$")
    summary = ns.expect(r"^spirit: timeline: (.*) \('spirit timeline' shows it all\)$").group(1)
    assert re.fullmatch(r"stage2 \d+ ms; at \d+ ms of CLOCK_BOOTTIME", summary) or \
        re.fullmatch(r" ms; at \d+ ms of CLOCK_BOOTTIME", summary), summary
    assert ns.timeline() == ["stage2", "ready"]
    ns.tty("echo READY-$((6*7))\n", r"READY-42")
    os.kill(ns.pid, signal.SIGTERM)
    ns.expect(r"^spirit: shutdown: reboot, asked by SIGTERM from process 0$")
    assert ns.wait() == -signal.SIGHUP
    # The supervisor got SIGTERM and stopped before the rest were killed.
    assert "stopped" in (ns.root / "run/fake.log").read_text()
