"""The supervisor with real processes: `spirit supervise --root DIR` runs as
a child subreaper (not PID 1) on a directory tree, and `spiritctl --root DIR`
talks to it through its control socket."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))

STAMP = re.compile(r"^(\d+\.\d{3}) (.*)$")


class Supervisor:
    def __init__(self, root: Path, services: dict[str, str], arguments: tuple[str, ...] = ()):
        self.root = root
        (root / "etc/spirit/services").mkdir(parents=True)
        for name, text in services.items():
            (root / f"etc/spirit/services/{name}.toml").write_text(text)
        self.output = root / "supervisor.out"
        self.process = subprocess.Popen([str(SPIRIT), "supervise", "--root", str(root), *arguments],
                                        stdout=open(self.output, "wb"), stderr=subprocess.STDOUT)
        self.wait_for(lambda: (root / "run/spirit/control.sock").exists(), "the control socket")

    def ctl(self, *words: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SPIRIT), "ctl", "--root", str(self.root), *words], capture_output=True, text=True, timeout=30)

    def status(self) -> dict[str, list[str]]:
        answer = self.ctl("status")
        assert answer.returncode == 0, answer
        return {line.split()[0]: line.split() for line in answer.stdout.splitlines()[1:]}

    def text(self) -> str:
        return self.output.read_text()

    def log(self, name: str) -> list[tuple[float, str]]:
        path = self.root / f"run/log/{name}.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [(float(m.group(1)), m.group(2)) for m in map(STAMP.match, lines) if m]

    def wait_for(self, condition, what: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the supervisor exited ({self.process.returncode}) before {what}:\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"{what} did not happen within {timeout} s:\n{self.text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def read_quietly(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.fixture
def supervise():
    # Not under pytest's tmp_path (mode 0700): a user other than root must
    # reach the control socket for the SO_PEERCRED check.
    base = Path(tempfile.mkdtemp(prefix="spirit-supervise-"))
    base.chmod(0o755)
    supervisors: list[Supervisor] = []

    def start(services: dict[str, str], *arguments: str) -> Supervisor:
        supervisors.append(Supervisor(base / f"root{len(supervisors)}", services, arguments))
        return supervisors[-1]

    yield start
    for s in supervisors:
        s.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_a_crashing_service_is_restarted_on_schedule_then_fails(supervise):
    s = supervise({
        "crashy": """
            command = ["/bin/sh", "-c", "echo crashing; exit 3"]
            [backoff]
            initial-ms = 200
            cap-ms = 800
            [crash-loop]
            restarts = 5
            within-seconds = 60
            """,
    })
    s.wait_for(lambda: "service crashy: failed" in s.text(), "the crash loop")
    starts = [t for t, text in s.log("crashy") if text.startswith("spirit: started, process")]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # Each start follows the exit by the backoff: 200, 400, 800 (the cap), 800, 800 ms.
    assert len(starts) == 6, s.log("crashy")
    for gap, expected in zip(gaps, [200, 400, 800, 800, 800]):
        assert expected <= gap < expected + 300, (gaps, s.log("crashy"))
    assert [text for _, text in s.log("crashy")].count("crashing") == 6
    assert "crash loop: 5 restarts within 60 s, last exited with status 3" in s.text()
    row = s.status()["crashy"]
    assert row[1:4] == ["failed", "-", "5"], row
    # Failed stays failed until asked; `start` tries again.
    time.sleep(1)
    assert len([1 for _, text in s.log("crashy") if text.startswith("spirit: started")]) == 6
    answer = s.ctl("start", "crashy")
    assert answer.returncode == 0, answer
    s.wait_for(lambda: len([1 for _, text in s.log("crashy") if text.startswith("spirit: started")]) >= 7, "the new start")


def test_a_service_ignoring_sigterm_is_killed_after_its_timeout_and_shutdown_is_in_order(supervise):
    s = supervise({
        "stubborn": """
            command = ["/bin/sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"]
            [stop]
            timeout-ms = 1500
            """,
        "base": 'command = ["/bin/sleep", "1000"]\n',
        "top": 'command = ["/bin/sleep", "1000"]\nrequires = ["base"]\n',
    })
    s.wait_for(lambda: "spirit: ready" in s.text(), "ready")
    assert s.status()["stubborn"][1] == "running"
    started = time.monotonic()
    answer = s.ctl("stop", "stubborn")
    assert answer.returncode == 0, answer
    s.wait_for(lambda: s.status()["stubborn"][1] == "stopped", "the stop")
    took = time.monotonic() - started
    assert 1.4 <= took < 4, took
    assert re.search(r"service stubborn: still running 15\d\d\.\d{3} ms after its stop signal; SIGKILL", s.text()), s.text()
    assert re.search(r"service stubborn: killed in 15\d\d\.\d{3} ms", s.text()), s.text()
    # Nothing of it is left: the whole process group got SIGKILL.
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if b"while :; do sleep 0.05" in read_quietly(p)]

    # SIGTERM to the supervisor: dependents first, then what they require; exit 0.
    assert s.stop() == 0
    order = re.findall(r"^spirit: shutdown: (\S+) stopped in", s.text(), re.M)
    assert order == ["top", "base"], s.text()
    assert re.search(r"shutdown: all services stopped in [\d.]+ ms", s.text())
    assert not (s.root / "run/spirit/control.sock").exists()


def test_ten_megabytes_of_output_stay_within_the_log_cap(supervise):
    cap = 256 * 1024
    s = supervise({
        "noisy": f"""
            command = ["/bin/sh", "-c", "yes 'a line of about fifty bytes, again and again ..' | head -c 10485760; echo the-end"]
            restart = "never"
            [log]
            max-bytes = {cap}
            ring-lines = 100
            """,
    })
    s.wait_for(lambda: "service noisy: exited with status 0" in s.text(), "the end of noisy", timeout=60)
    logs = s.root / "run/log"
    current, rotated = logs / "noisy.log", logs / "noisy.log.1"
    assert rotated.exists(), "the log never rotated"
    total = current.stat().st_size + rotated.stat().st_size
    assert cap // 2 <= total <= cap, total
    assert current.read_text().splitlines()[-1].endswith("spirit: exited with status 0")
    assert "the-end" in current.read_text()
    answer = s.ctl("logs", "noisy", "-n", "3")
    assert answer.returncode == 0, answer
    lines = answer.stdout.splitlines()
    assert len(lines) == 3 and lines[1].endswith(" the-end") and lines[2].endswith("spirit: exited with status 0"), lines


def test_spiritctl_errors_and_json(supervise, tmp_path):
    answer = subprocess.run([str(SPIRIT), "ctl", "--root", str(tmp_path / "nowhere"), "status"], capture_output=True, text=True)
    assert answer.returncode == 111
    assert answer.stderr.strip() == (f"spiritctl: unable to connect to {tmp_path}/nowhere/run/spirit/control.sock: "
                                     "No such file or directory — is the supervisor running?")
    s = supervise({"sleeper": 'command = ["/bin/sleep", "1000"]\nready = "started"\n'})
    s.wait_for(lambda: "spirit: ready" in s.text(), "ready")
    # Only root is answered (SO_PEERCRED); checked where the test can be another user.
    if os.geteuid() == 0:
        answer = subprocess.run([str(SPIRIT), "ctl", "--root", str(s.root), "status"], capture_output=True, text=True, user=65534)
        assert answer.returncode == 111, answer
        assert "spiritctl: permission denied: the control socket answers only root (you are uid 65534)" in answer.stderr, answer
    answer = s.ctl("restart", "ghost")
    assert answer.returncode == 100 and "unknown service 'ghost'" in answer.stderr, answer
    assert s.ctl("frobnicate").returncode == 100
    answer = s.ctl("--json", "status")
    document = json.loads(answer.stdout)
    assert [(x["name"], x["state"], x["restarts"]) for x in document["services"]] == [("sleeper", "running", 0)]
    # kill -9 of a service: restarted, and the count shows it.
    os.kill(document["services"][0]["pid"], signal.SIGKILL)
    s.wait_for(lambda: s.status()["sleeper"][3] == "1" and s.status()["sleeper"][1] == "running", "the restart")
    timeline = json.loads((s.root / "run/spirit/timeline.json").read_text())
    assert [step["step"] for step in timeline["steps"]].count("service:sleeper") == 2


NOTIFIER = """
import os, socket, time
time.sleep(0.5)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=loaded\\nREADY=1\\n", os.environ["NOTIFY_SOCKET"])
time.sleep(1000)
"""


def test_notify_readiness_holds_back_what_comes_after(supervise):
    """The protocol nodus follows: a datagram with a READY=1 line, sent to
    the Unix socket named by $NOTIFY_SOCKET (sd_notify's)."""
    s = supervise({
        "slow": f'command = ["/usr/bin/python3", "-c", {json.dumps(NOTIFIER)}]\nready = "notify"\n',
        "after-slow": 'command = ["/bin/sleep", "1000"]\nafter = ["slow"]\n',
    })
    s.wait_for(lambda: "spirit: ready" in s.text(), "ready")
    steps = {step["step"]: step for step in json.loads((s.root / "run/spirit/timeline.json").read_text())["steps"]}
    slow, after = steps["service:slow"], steps["service:after-slow"]
    assert slow["duration_ms"] >= 500, slow
    assert after["start_ms"] >= slow["end_ms"], (slow, after)
    assert s.text().index("service slow: ready") < s.text().index("service after-slow: ready")


def test_an_exec_probe_holds_back_what_comes_after_until_it_exits_0(supervise, tmp_path):
    """`ready = "exec"`: the probe runs every interval while the service
    starts; what comes after starts once it exits 0."""
    flag = tmp_path / "up"
    s = supervise({
        "probed": f'command = ["/bin/sleep", "1000"]\nready = "exec"\nready-command = ["/bin/sh", "-c", "test -e {flag}"]\n'
                  'ready-interval-ms = 100\n',
        "after-probed": 'command = ["/bin/sleep", "1000"]\nafter = ["probed"]\n',
    })
    time.sleep(1.5)
    assert "service probed: ready" not in s.text() and "service after-probed: ready" not in s.text(), s.text()
    flag.touch()
    s.wait_for(lambda: "spirit: ready" in s.text(), "ready")
    assert s.text().index("service probed: ready") < s.text().index("service after-probed: ready")
    steps = {step["step"]: step for step in json.loads((s.root / "run/spirit/timeline.json").read_text())["steps"]}
    assert steps["service:probed"]["duration_ms"] >= 1500, steps["service:probed"]


REPORT = ("grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; "
          "if mount -t tmpfs none {scratch}/mnt 2>/dev/null; then echo mount allowed; umount {scratch}/mnt; else echo mount refused; fi; "
          "if touch /etc/.spirit-sandbox-{name} 2>/dev/null; then echo etc writable; rm -f /etc/.spirit-sandbox-{name}; else echo etc read-only; fi; "
          "touch {scratch}/w/{name} && echo writable path ok; "
          "echo tmp holds $(ls -A /tmp | wc -l); touch /tmp/.spirit-sandbox-{name}; echo done; exec sleep 1000")


def test_a_sandboxed_service_keeps_only_what_its_file_grants(supervise):
    """`[sandbox]`: no capabilities (mount refused, an empty bounding set),
    no-new-privileges, / read-only but for its writable path, its own empty
    /tmp; a service without the table keeps root's powers; a sandbox naming
    a path that is not there is refused with the path named."""
    scratch = Path(tempfile.mkdtemp(prefix="spirit-sandbox-", dir="/var/tmp"))
    try:
        (scratch / "mnt").mkdir()
        (scratch / "w").mkdir()

        def command(name: str) -> str:
            return json.dumps(["/bin/sh", "-c", REPORT.format(scratch=scratch, name=name)])
        s = supervise({
            "locked": f"command = {command('locked')}\n[sandbox]\nno-new-privileges = true\ncapabilities = []\nread-only-root = true\n"
                      f'writable-paths = ["{scratch}/w"]\nprivate-tmp = true\n',
            "admin": f'command = {command("admin")}\n[sandbox]\ncapabilities = ["CAP_SYS_ADMIN"]\nread-only-paths = ["/etc"]\n',
            "open": f"command = {command('open')}\n",
            "missing": 'command = ["/bin/sleep", "1000"]\n[sandbox]\nread-only-root = true\nwritable-paths = ["/nonexistent/spirit"]\n',
        })
        for name in ["locked", "admin", "open"]:
            s.wait_for(lambda: any(text == "done" for _, text in s.log(name)), f"{name}'s report")
        report = {name: [text for _, text in s.log(name) if not text.startswith("spirit: ")] for name in ["locked", "admin", "open"]}
        host_bounding = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapBnd"))

        locked = report["locked"]
        assert "CapBnd:\t0000000000000000" in locked and "CapEff:\t0000000000000000" in locked, locked
        assert "NoNewPrivs:\t1" in locked and "mount refused" in locked and "etc read-only" in locked, locked
        assert "writable path ok" in locked and "tmp holds 0" in locked, locked
        assert not Path("/tmp/.spirit-sandbox-locked").exists(), "its /tmp is its own"

        admin = report["admin"]
        assert "CapBnd:\t0000000000200000" in admin and "NoNewPrivs:\t0" in admin, admin
        assert "mount allowed" in admin and "etc read-only" in admin, admin

        opened = report["open"]
        assert host_bounding in opened and "NoNewPrivs:\t0" in opened and "mount allowed" in opened and "etc writable" in opened, opened
        Path("/tmp/.spirit-sandbox-open").unlink(missing_ok=True)
        Path("/tmp/.spirit-sandbox-admin").unlink(missing_ok=True)

        s.wait_for(lambda: "/nonexistent/spirit" in s.text(), "the missing path named")
        line = next(line for line in s.text().splitlines() if "/nonexistent/spirit" in line)
        assert "service missing" in line and "its sandbox names /nonexistent/spirit, which does not exist" in line, line
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def journal(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "run/log/journal.jsonl").read_text().splitlines()]


def test_pid1s_record_comes_first_and_a_bad_one_is_refused(supervise):
    # PID 1 hands its boot.stage2 record to the supervisor it starts.
    s = supervise({"sleeper": 'command = ["/bin/sleep", "1000"]\nready = "started"\n'},
                  "--record", "boot.stage2", "root", "switched", "mount_problems", "")
    s.wait_for(lambda: "spirit: ready" in s.text(), "ready")
    records = journal(s.root)
    assert [(r["kind"], r["process"]) for r in records[:2]] == [("boot.stage2", "init"), ("service.start", "supervisor")], records
    assert records[0]["fields"] == {"root": "switched", "mount_problems": ""}, records[0]
    assert records[1]["prev"] == records[0]["hash"]
    # No kind, or a key without its value: refused before anything starts
    # (in a directory of its own, should that ever fail).
    for arguments in (["--record"], ["--record", "boot.stage2", "root"]):
        answer = subprocess.run([str(SPIRIT), "supervise", "--root", str(s.root / "refused"), *arguments],
                                capture_output=True, text=True, timeout=30)
        assert answer.returncode == 100 and "supervise: --record takes KIND and KEY VALUE pairs, and comes last" in answer.stderr, \
            (arguments, answer)


def test_the_journal_chains_each_start_exit_and_stop_with_its_reason(supervise):
    s = supervise({"sleeper": 'command = ["/bin/sleep", "1000"]\nready = "started"\n'})
    s.wait_for(lambda: "spirit: ready" in s.text(), "ready")
    pid = json.loads(s.ctl("--json", "status").stdout)["services"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    s.wait_for(lambda: s.status()["sleeper"][3] == "1", "the restart")
    assert s.ctl("stop", "sleeper").returncode == 0
    s.wait_for(lambda: any(r["kind"] == "service.stopped" for r in journal(s.root)), "the stop")
    # An action of `spirit ask` (the parser reads this one; no model).
    env = dict(os.environ, SPIRIT_AI_ROOT=str(s.root))
    asked = subprocess.run([str(SPIRIT), "ask", "start sleeper", "--yes"], capture_output=True, text=True, env=env, timeout=30)
    assert asked.returncode == 0, asked
    s.wait_for(lambda: [r["kind"] for r in journal(s.root)].count("service.start") == 3, "the start asked")
    records = journal(s.root)
    action = next(r for r in records if r["kind"] == "ask.action")
    assert action["process"] == "ask" and action["fields"]["tool"] == "start" and action["fields"]["prompt"] == "start sleeper", action
    starts = [r["fields"]["reason"] for r in records if r["kind"] == "service.start"]
    assert starts[0].startswith("wanted") and starts[1].startswith("restart after it was killed by SIGKILL"), starts
    assert starts[2] == "start asked through the control socket", starts
    stop = next(r for r in records if r["kind"] == "service.stop")
    assert stop["fields"]["reason"] == "stop asked through the control socket", stop
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert all(b["prev"] == a["hash"] for a, b in zip(records, records[1:]))
    # The head is in spiritctl status, as text and JSON.
    head = json.loads(s.ctl("--json", "status").stdout)["journal"]
    assert head == {"seq": records[-1]["seq"], "head": records[-1]["hash"]}
    assert s.ctl("status").stdout.splitlines()[0] == f"journal: seq {head['seq']}, head {head['head'][:16]}"

    verify = [str(SPIRIT), "journal", "verify", "--dir", str(s.root / "run/log")]
    answer = subprocess.run(verify, capture_output=True, text=True)
    assert answer.returncode == 0 and f"{len(records)} records, the chain is whole" in answer.stdout, answer
    shown = subprocess.run([str(SPIRIT), "journal", "-n", "2", "--dir", str(s.root / "run/log")], capture_output=True, text=True)
    assert shown.returncode == 0 and len(shown.stdout.splitlines()) == 2 and "service.start" in shown.stdout, shown
    # One byte of the second record changed: verify names it.
    path = s.root / "run/log/journal.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"sleeper"', '"sleepex"', 1)
    path.write_text("".join(lines))
    answer = subprocess.run(verify, capture_output=True, text=True)
    assert answer.returncode == 1, answer
    assert f"journal.jsonl:2 (seq 2): edited" in answer.stderr, answer
