"""The Sentinel on a real kernel: a service over its `memory-max` is killed
by the kernel's memory cgroup OOM killer, and `spiritctl sentinel --json`
shows an `oom-kill` incident naming it, with the kernel's own lines as
evidence; a crash-looping service is a `service-failed` incident. Both
without any model: the explanation is the template's."""

import json
import re

from harness import Disk
from test_supervisor import CRASHY, status, wait_status, write_file

# Doubles a shell string until the cgroup's 32 MiB are gone: the kernel
# kills it (memory.max), the supervisor does not restart it.
LEAKY = """
command = ["/bin/sh", "-c", "echo leaking; x=leak; while true; do x=$x$x; done"]
restart = "never"
[cgroup]
memory-max = "32M"
"""


def incidents(vm) -> list[dict]:
    return json.loads(vm.answer("spiritctl --json sentinel"))["incidents"]


def wait_incident(vm, rule: str, service: str | None, tries: int = 40) -> dict:
    for _ in range(tries):
        found = [i for i in incidents(vm) if i["rule"] == rule and i["service"] == service]
        if found:
            return found[0]
        vm.check("sleep 0.5")
    raise AssertionError(f"no {rule} incident for {service}: {incidents(vm)}; log: {vm.log_path}")


def kernel_records(vm, last: str) -> list[str]:
    """/dev/kmsg's records up to one that ends with `last` (cat does not
    end at the ring's end: it is stopped, later on a loaded host)."""
    for wait in (0.5, 1, 2, 4):
        records = vm.check(f"cat /dev/kmsg & sleep {wait}; kill $!").splitlines()
        if any(line.endswith(last) for line in records):
            return records
    raise AssertionError(f"{last} is not in /dev/kmsg; log: {vm.log_path}")


def test_oom_kill_and_crash_loop_incidents(boot, media_disk):
    vm = boot(disks=[Disk(str(media_disk))])
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    sentinel = wait_status(vm, "sentinel", lambda s: s["state"] == "running" and s["ready"], "the sentinel's start")
    assert vm.check("test -r /proc/pressure/memory && echo psi") == "psi"
    assert vm.check("head -n 1 /etc/spirit/sentinel/rules.toml").startswith("# The Sentinel")

    write_file(vm, "/etc/spirit/services/leaky.toml", LEAKY)
    vm.answer("spiritctl start leaky")
    wait_status(vm, "leaky", lambda s: s["state"] in ("exited", "failed", "stopped") and "SIGKILL" in s.get("last_exit", s.get("detail", "")),
                "the OOM kill")
    oom = wait_incident(vm, "oom-kill", "leaky")
    assert oom["severity"] == "critical" and oom["decision"] == "advise", oom
    kernel_kill = [line for line in oom["evidence"] if line.startswith("Memory cgroup out of memory: Killed process")]
    assert kernel_kill and "oom-kill:constraint=CONSTRAINT_MEMCG" in oom["evidence"][0] and "task_memcg=/spirit/leaky" in oom["evidence"][0], oom
    # The same line is in the kernel's log. Its stamp is the kernel's
    # local_clock, not CLOCK_BOOTTIME (the incident's clock): the offset is
    # taken from a record written between two reads of /proc/timer_list's
    # "now at" (CLOCK_MONOTONIC, CLOCK_BOOTTIME on a guest that never
    # slept); the earlier read gives the largest offset, so the latency
    # below is an upper bound.
    pid = re.search(r"Killed process (\d+)", kernel_kill[0]).group(1)
    probe = "; ".join(f"grep -m1 'now at' /proc/timer_list; echo sentinel-calibrate-{i} > /dev/kmsg; grep -m1 'now at' /proc/timer_list"
                      for i in range(5))
    nows = [int(n) // 1_000_000 for n in re.findall(r"now at (\d+) nsecs", vm.check(probe))]
    records = kernel_records(vm, ";sentinel-calibrate-4")
    stamp = lambda line: int(line.split(",")[2]) // 1000
    # The tightest of five calibrations.
    i = min(range(5), key=lambda i: nows[2 * i + 1] - nows[2 * i])
    calibrate = next(line for line in records if line.endswith(f";sentinel-calibrate-{i}"))
    offset, window = stamp(calibrate) - nows[2 * i], nows[2 * i + 1] - nows[2 * i]
    record = next(line for line in records if f"Killed process {pid} " in line and line.split(";")[1].startswith("Memory cgroup"))
    latency = oom["firing_ms"] - (stamp(record) - offset)
    print(f"oom-kill: incident at most {latency} ms after the kernel's record (clock offset {offset} ms, "
          f"calibrated within {window} ms)")
    # The target is 50 ms; 2-14 ms is usual here, and one run in ten went
    # over 50 ms under TCG on a loaded 2-core host: 100 ms keeps the test
    # about the Sentinel, not the host's load.
    assert 0 <= latency < 100, (latency, offset, oom, record)
    assert "on service leaky" in oom["explanation"] and "memory-max" in oom["explanation"], oom
    explained = vm.answer(f"spiritctl sentinel explain {oom['id']}")
    assert "oom-kill (critical) on service leaky" in explained and "task_memcg=/spirit/leaky" in explained, explained
    # It is in the log, one JSON object a line.
    logged = [json.loads(line) for line in vm.answer("cat /run/log/sentinel.jsonl").splitlines()]
    assert any(i["rule"] == "oom-kill" and i["service"] == "leaky" for i in logged), logged

    write_file(vm, "/etc/spirit/services/crashy.toml", CRASHY)
    vm.answer("spiritctl start crashy")
    crashy = wait_status(vm, "crashy", lambda s: s["state"] == "failed", "the crash loop")
    failed = wait_incident(vm, "service-failed", "crashy")
    latency = failed["firing_ms"] - crashy["since_ms"]
    print(f"service-failed: incident {latency} ms after the supervisor's failed")
    assert 0 <= latency <= 500, (failed, crashy)
    assert "crash loop" in failed["explanation"], failed
    table = vm.answer("spiritctl sentinel")
    assert re.search(r"^\d+\s+firing\s+critical\s+service-failed\s+crashy\s", table, re.M), table
    # The RAM root filled up (fallocate: the blocks are taken without
    # writing them): ram-root-critical (> 97%, no `for`) within a tick.
    vm.check("avail=$(df -k / | awk 'NR==2 {print $4}'); fallocate -l $(( (avail - 256) * 1024 )) /fill; sync")
    full = wait_incident(vm, "ram-root-critical", None)
    assert full["value"] > 97 and full["evidence"][0].startswith("/: "), full
    vm.check("rm /fill")

    # The Sentinel itself stayed up throughout, in its cgroup's 32 MiB.
    assert status(vm)["sentinel"]["pid"] == sentinel["pid"]
    rss = vm.check(f"grep VmRSS /proc/{sentinel['pid']}/status")
    print(f"sentinel: {rss}")
    assert int(rss.split()[1]) < 32 * 1024, rss
