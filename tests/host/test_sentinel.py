"""The Sentinel with real processes: `spirit supervise --root DIR` and
`spirit sentinel --root DIR` on one tree, with fake /proc/pressure and
/dev/kmsg files under DIR; `spiritctl --root DIR sentinel` asks it."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
RULES = ROOT / "rootfs/sentinel/rules.toml"

QUIET = "some avg10=0.00 avg60=0.00 avg300=0.00 total=1000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
PRESSED = "some avg10=12.00 avg60=4.00 avg300=1.00 total=9000000\nfull avg10=1.00 avg60=0.20 avg300=0.00 total=50000\n"


def boottime_ms() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1000)


class Tree:
    def __init__(self, root: Path, services: dict[str, str], pressure_for: int, extra_rules: str = "", sentinel_args: tuple = ()):
        self.root = root
        (root / "etc/spirit/services").mkdir(parents=True)
        for name, text in services.items():
            (root / f"etc/spirit/services/{name}.toml").write_text(text)
        (root / "etc/spirit/sentinel").mkdir(parents=True)
        # The shipped rules, with memory-pressure's `for` shortened so that
        # the test waits seconds, not half a minute.
        rules = RULES.read_text()
        rules, count = re.subn(r"(\[memory-pressure\]\n(?:.*\n)*?for-seconds = )30", rf"\g<1>{pressure_for}", rules)
        assert count == 1
        (root / "etc/spirit/sentinel/rules.toml").write_text(rules + extra_rules)
        (root / "proc/pressure").mkdir(parents=True)
        for resource in ["cpu", "memory", "io"]:
            (root / f"proc/pressure/{resource}").write_text(QUIET)
        (root / "dev").mkdir()
        (root / "dev/kmsg").write_text("6,1,1000,-;an old record, before the Sentinel started\n")
        self.processes: list[subprocess.Popen] = []
        self.supervisor = self.start("supervise", root / "supervisor.out")
        self.wait_for(lambda: (root / "run/spirit/control.sock").exists(), "the supervisor's socket")
        self.sentinel = self.start("sentinel", root / "sentinel.out", *sentinel_args)
        self.wait_for(lambda: (root / "run/spirit/sentinel.sock").exists(), "the sentinel's socket")

    def start(self, command: str, output: Path, *args: str) -> subprocess.Popen:
        process = subprocess.Popen([str(SPIRIT), command, "--root", str(self.root), *args], stdout=open(output, "wb"), stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def ctl(self, *words: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SPIRIT), "ctl", "--root", str(self.root), *words], capture_output=True, text=True, timeout=30)

    def incidents(self) -> list[dict]:
        answer = self.ctl("--json", "sentinel")
        assert answer.returncode == 0, answer
        return json.loads(answer.stdout)["incidents"]

    def find(self, rule: str, service=None) -> dict | None:
        return next((i for i in self.incidents() if i["rule"] == rule and i["service"] == service), None)

    def outputs(self) -> str:
        return "".join(f"--- {name}\n" + (self.root / name).read_text() for name in ["supervisor.out", "sentinel.out"])

    def wait_for(self, condition, what: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            for process in self.processes:
                if process.poll() is not None:
                    raise AssertionError(f"{process.args[1]} exited ({process.returncode}) before {what}:\n{self.outputs()}")
            time.sleep(0.05)
        raise AssertionError(f"{what} did not happen within {timeout} s:\n{self.outputs()}")

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def tree():
    base = Path(tempfile.mkdtemp(prefix="spirit-sentinel-"))
    trees: list[Tree] = []

    def start(services: dict[str, str], pressure_for: int = 3, extra_rules: str = "", sentinel_args: tuple = ()) -> Tree:
        trees.append(Tree(base / f"root{len(trees)}", services, pressure_for, extra_rules, sentinel_args))
        return trees[-1]

    yield start
    for t in trees:
        t.stop()
    shutil.rmtree(base, ignore_errors=True)


CRASHY = """
    command = ["/bin/sh", "-c", "echo crashing; exit 3"]
    [backoff]
    initial-ms = 100
    cap-ms = 200
    [crash-loop]
    restarts = 3
    within-seconds = 60
    """


def test_a_crash_loop_is_a_service_failed_incident_within_2_s(tree):
    t = tree({"crashy": CRASHY})
    row = t.wait_for(lambda: next((s for s in json.loads(t.ctl("--json", "status").stdout)["services"]
                                   if s["name"] == "crashy" and s["state"] == "failed"), None), "the crash loop")
    incident = t.wait_for(lambda: t.find("service-failed", "crashy"), "a service-failed incident", timeout=5)
    # Both clocks are CLOCK_BOOTTIME in ms: the supervisor's `since` of the
    # failed state, the Sentinel's firing time.
    latency = incident["firing_ms"] - int(row["since_ms"])
    print(f"service-failed detected {latency} ms after the supervisor marked crashy failed")
    # Through the supervisor's `events follow` stream, not the 1 s poll.
    assert 0 <= latency <= 200, (latency, incident, row)
    assert incident["severity"] == "critical" and incident["state"] == "firing"
    assert incident["decision"] == "advise"
    assert any("crashy failed: crash loop" in line for line in incident["evidence"]), incident
    assert "service crashy" in incident["explanation"] and "crash loop" in incident["explanation"]
    # One incident for the episode, however many polls see it failed.
    time.sleep(1.5)
    assert len([i for i in t.incidents() if i["rule"] == "service-failed"]) == 1
    # The log has it, one JSON object a line.
    lines = [json.loads(line) for line in (t.root / "run/log/sentinel.jsonl").read_text().splitlines()]
    assert any(i["rule"] == "service-failed" and i["service"] == "crashy" for i in lines)
    explained = t.ctl("sentinel", "explain", str(incident["id"]))
    assert explained.returncode == 0 and "service-failed (critical) on service crashy" in explained.stdout, explained
    assert "evidence:" in explained.stdout
    listed = t.ctl("sentinel")
    assert listed.returncode == 0 and re.search(rf"^{incident['id']}\s+firing\s+critical\s+service-failed\s+crashy", listed.stdout, re.M), listed.stdout
    missing = t.ctl("sentinel", "explain", "999")
    assert missing.returncode == 100 and "no incident 999" in missing.stderr
    # Started again by hand: no longer failed, and the incident resolves.
    assert t.ctl("start", "crashy").returncode == 0
    t.wait_for(lambda: (t.find("service-failed", "crashy") or {}).get("state") == "resolved", "the incident's resolution")


def test_events_follow_streams_the_status_on_each_change(tree):
    t = tree({"idle": 'command = ["/bin/sleep", "1000"]\n'})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(t.root / "run/spirit/control.sock"))
        s.sendall(b"events follow json\n")
        s.settimeout(10)
        reader = s.makefile("r")
        assert reader.readline() == "ok\n"
        first = json.loads(reader.readline())
        assert [x["name"] for x in first["services"]] == ["idle"]
        assert t.ctl("stop", "idle").returncode == 0
        states = []
        while "stopped" not in states:
            states.append(next(x["state"] for x in json.loads(reader.readline())["services"]))
        assert states[-1] == "stopped", states


def test_memory_pressure_fires_after_for_and_resolves(tree):
    t = tree({"idle": 'command = ["/bin/sleep", "1000"]\n'}, pressure_for=3)
    time.sleep(1.5)
    assert t.find("memory-pressure") is None
    written = boottime_ms()
    (t.root / "proc/pressure/memory").write_text(PRESSED)
    incident = t.wait_for(lambda: t.find("memory-pressure"), "a memory-pressure incident", timeout=10)
    # Pending from the first evaluation that read it, firing `for` (3 s) later.
    assert incident["firing_ms"] - incident["pending_ms"] >= 3000, incident
    assert 3000 <= incident["firing_ms"] - written <= 5000, (incident, written)
    assert incident["value"] == 12 and incident["severity"] == "warning"
    assert any("avg10=12.00" in line for line in incident["evidence"]), incident
    # The full line (1%) stays under the critical rule's 5%.
    assert t.find("memory-pressure-critical") is None
    (t.root / "proc/pressure/memory").write_text(QUIET)
    time.sleep(2)
    assert t.find("memory-pressure")["state"] == "firing"  # keep-firing-for (60 s) runs


def test_an_oom_kill_in_the_kernel_log_names_the_service(tree):
    t = tree({"idle": 'command = ["/bin/sleep", "1000"]\n'})
    time.sleep(1.2)
    # The old record (before the Sentinel started) is not read.
    assert t.find("oom-kill", "leaky") is None and t.find("oom-kill") is None
    summary = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/spirit/leaky,task_memcg=/spirit/leaky,task=leaky,pid=4242,uid=0"
    kill = "Memory cgroup out of memory: Killed process 4242 (leaky) total-vm:35000kB, anon-rss:32768kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:100kB oom_score_adj:0"
    with open(t.root / "dev/kmsg", "a") as kmsg:
        kmsg.write(f"6,2,90000000,-;{summary}\n SUBSYSTEM=memory\n3,3,90000001,-;{kill}\n")
    written = boottime_ms()
    incident = t.wait_for(lambda: t.find("oom-kill", "leaky"), "an oom-kill incident", timeout=5)
    latency = incident["firing_ms"] - written
    print(f"oom-kill detected {latency} ms after the record was written (a plain file under a test root is read each second)")
    assert latency <= 1500, incident
    assert incident["evidence"] == [summary, kill]
    assert "on service leaky" in incident["explanation"]
    assert incident["decision"] == "advise"


def test_a_burst_of_errors_in_a_service_log_is_an_incident_naming_it(tree):
    t = tree({
        "grumpy": """command = ["/bin/sh", "-c", "sleep 1; for i in 1 2 3 4 5 6; do echo \\"ERROR: cannot reach the database ($i)\\"; done; exec sleep 1000"]\n""",
        "calm": """command = ["/bin/sh", "-c", "echo finished with 0 errors; echo no error here; exec sleep 1000"]\n""",
    })
    incident = t.wait_for(lambda: t.find("log-errors", "grumpy"), "a log-errors incident", timeout=10)
    assert incident["severity"] == "warning" and incident["state"] == "firing", incident
    assert "grumpy.log: ERROR: cannot reach the database (1)" in incident["evidence"], incident
    assert t.find("log-errors", "calm") is None, t.incidents()


FLAPPY = """
    command = ["/bin/sh", "-c", "sleep 0.4; exit 1"]
    [backoff]
    initial-ms = 100
    cap-ms = 100
    [crash-loop]
    restarts = 100
    within-seconds = 60
    """

RESTART_RULE = """
[restart-on-flap]
signal = "service.restart"
at-least = 2
within-seconds = 60
severity = "warning"
action = "restart"
"""


def test_a_firing_rule_restarts_only_an_opted_in_service_once(tree):
    t = tree({"flappy": FLAPPY + '[sentinel]\nauto-restart = ["restart-on-flap"]\n', "other": FLAPPY}, extra_rules=RESTART_RULE)
    mine = t.wait_for(lambda: t.find("restart-on-flap", "flappy"), "flappy's incident", timeout=10)
    other = t.wait_for(lambda: t.find("restart-on-flap", "other"), "other's incident", timeout=10)
    assert mine["decision"] == "restart" and mine["target"] == "flappy", mine
    assert other["decision"] == "suppressed" and other["reason"] == "not-opted-in", other
    assert "Decision: suppressed (not-opted-in): restart other." in other["explanation"]
    # Both go on flapping: still one episode each, and one restart asked
    # (the rate limit: one action per service per 15 min).
    time.sleep(3)
    assert len([i for i in t.incidents() if i["rule"] == "restart-on-flap"]) == 2, t.incidents()
    asked = (t.root / "run/log/spirit.log").read_text().count("service flappy: restart asked through the control socket")
    assert asked == 1, asked
    assert "service other: restart asked" not in (t.root / "run/log/spirit.log").read_text()
    # The Sentinel's action and the supervisor's restart are both in the journal.
    records = [json.loads(line) for line in (t.root / "run/log/journal.jsonl").read_text().splitlines()]
    actions = [r for r in records if r["kind"] == "sentinel.restart"]
    assert len(actions) == 1 and actions[0]["process"] == "sentinel", actions
    assert actions[0]["fields"]["service"] == "flappy" and actions[0]["fields"]["rule"] == "restart-on-flap", actions
    assert actions[0]["fields"]["result"] == "asked the supervisor", actions
    assert any(r["kind"] == "service.restart-asked" and r["fields"]["service"] == "flappy" for r in records)
    assert all(b["prev"] == a["hash"] for a, b in zip(records, records[1:]))


def test_metrics_in_prometheus_text_pass_promtool(tree):
    """GET /metrics from the Sentinel and `spirit metrics` print the
    machine's and the services' figures in Prometheus' text format, which
    Debian's promtool checks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = tree({"steady": 'command = ["/bin/sleep", "1000"]\n', "crashy": 'command = ["/bin/false"]\nrestart = "always"\n'},
             sentinel_args=("--metrics", f"127.0.0.1:{port}"))
    t.wait_for(lambda: "crashy" in t.ctl("status").stdout, "the services")
    (t.root / "proc/stat").write_text("cpu  100 0 50 1000 10 0 5 0 0 0\ncpu0 100 0 50 1000 10 0 5 0 0 0\n")
    (t.root / "proc/meminfo").write_text("MemTotal: 1024000 kB\nMemFree: 500000 kB\nMemAvailable: 600000 kB\nShmem: 1000 kB\n")
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    text = response.read().decode()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain; version=0.0.4"), (response.status, text)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'spirit_service_up{service="steady"} 1' in text, text
    assert re.search(r'spirit_service_state\{service="steady",state="running"\} 1', text), text
    assert re.search(r'spirit_service_restarts_total\{service="crashy"\} \d+', text), text
    assert re.search(r'spirit_pressure_stalled_seconds_total\{resource="memory",kind="some"\} 0.001', text), text
    assert 'spirit_cpu_seconds_total{mode="idle"} 10' in text and 'spirit_memory_bytes{kind="available"} 614400000' in text, text
    printed = subprocess.run([str(SPIRIT), "metrics", "--root", str(t.root)], capture_output=True, text=True, timeout=30)
    assert printed.returncode == 0 and 'spirit_service_up{service="steady"} 1' in printed.stdout, printed
    assert subprocess.run(["promtool", "check", "metrics"], input=printed.stdout, capture_output=True, text=True).returncode == 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/")
    assert connection.getresponse().status == 404

