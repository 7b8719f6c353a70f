"""Service sandboxes on a real kernel: the shipped network-facing daemons
run with the least they need (nodus: no capability; the Sentinel: syslog
only; both with no-new-privileges and / read-only), a service that forks
200 children stays at its `pids-max`, and stopping a service kills what it
double-forked out of its process group."""

from harness import Disk
from test_supervisor import status, wait_status, wait_until, write_file

FORKER = """
command = ["/bin/sh", "-c", "(for i in $(seq 200); do sleep 1000 & done) 2>/dev/null; echo forked; exec sleep 1000"]
[cgroup]
pids-max = 20
"""

# `setsid` leaves the process group the supervisor signals: only the
# cgroup still holds the grandchild.
ESCAPER = """
command = ["/bin/sh", "-c", "setsid sleep 1001 & echo escaped; exec sleep 1000"]
"""


def proc_status(vm, pid: int) -> dict[str, str]:
    lines = vm.check(f"grep -E '^(CapBnd|CapEff|NoNewPrivs):' /proc/{pid}/status").splitlines()
    return {key: value.strip() for key, value in (line.split(":", 1) for line in lines if ":" in line)}


def root_mount_options(vm, pid: int) -> str:
    return vm.check(f"awk '$5 == \"/\" {{print $6}}' /proc/{pid}/mountinfo").split()[0]


def wait_log(vm, name: str, text: str) -> None:
    wait_until(vm, lambda: text in vm.answer(f"spiritctl logs {name}"), f"{name} saying {text!r}")


def test_daemons_are_confined_and_a_cgroup_holds_its_processes(boot, media_disk):
    vm = boot(disks=[Disk(str(media_disk))])
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)

    nodus = wait_status(vm, "nodus", lambda s: s["state"] == "running" and s["ready"], "nodus's start")
    sentinel = wait_status(vm, "sentinel", lambda s: s["state"] == "running" and s["ready"], "the sentinel's start")
    for name, row, bounding in [("nodus", nodus, "0000000000000000"), ("sentinel", sentinel, "0000000400000000")]:
        seen = proc_status(vm, row["pid"])
        assert seen == {"CapBnd": bounding, "CapEff": bounding, "NoNewPrivs": "1"}, (name, seen)
        assert root_mount_options(vm, row["pid"]).startswith("ro"), name
    assert root_mount_options(vm, 1).startswith("rw"), "the system's / stays writable"
    assert vm.check("cat /sys/fs/cgroup/spirit/nodus/pids.max") == "512"
    # Confined, they still do their work: nodus answers its peers, the Sentinel reads the kernel's log.
    assert "nodus" in vm.answer("spiritctl logs nodus") and status(vm)["nodus"]["restarts"] == 0
    # It did not hash the image stage 1 had checked; once the file changed
    # (here only its times), a restart hashes it again.
    checked = "was checked against its manifest at boot and has not changed since"
    assert vm.answer("spiritctl logs nodus").count(checked) == 1
    vm.check("touch /run/spirit/image/rootfs.squashfs")
    vm.answer("spiritctl restart nodus")
    wait_until(vm, lambda: vm.answer("spiritctl logs nodus").count("nodus: serving") == 2, "nodus serving again")
    assert vm.answer("spiritctl logs nodus").count(checked) == 1
    vm.check("echo '<3>SQUASHFS error: sandbox probe' > /dev/kmsg")
    wait_until(vm, lambda: '"squashfs-error"' in vm.answer("spiritctl --json sentinel"), "the confined Sentinel seeing a kernel record")

    write_file(vm, "/etc/spirit/services/forker.toml", FORKER)
    vm.answer("spiritctl start forker")
    wait_status(vm, "forker", lambda s: s["state"] == "running", "the forker's start")
    # The shell that forks is refused (busybox sh gives up at the first
    # refusal); its parent goes on.
    wait_log(vm, "forker", "forked")
    assert int(vm.check("cat /sys/fs/cgroup/spirit/forker/pids.current")) <= 20
    assert int(vm.check("grep '^max ' /sys/fs/cgroup/spirit/forker/pids.events | cut -d' ' -f2")) > 0, "forks were refused"
    assert status(vm)["sentinel"]["state"] == "running", "the rest of the system is untouched"
    vm.answer("spiritctl stop forker")
    wait_status(vm, "forker", lambda s: s["state"] == "stopped", "the forker's stop")
    assert vm.check("cat /sys/fs/cgroup/spirit/forker/cgroup.procs") == ""

    write_file(vm, "/etc/spirit/services/escaper.toml", ESCAPER)
    vm.answer("spiritctl start escaper")
    wait_status(vm, "escaper", lambda s: s["state"] == "running", "the escaper's start")
    wait_log(vm, "escaper", "escaped")
    assert "sleep 1001" in vm.check("ps -o args"), "the grandchild runs"
    vm.answer("spiritctl stop escaper")
    wait_status(vm, "escaper", lambda s: s["state"] == "stopped", "the escaper's stop")
    assert "sleep 1001" not in vm.check("sleep 0.5; ps -o args"), "the double-forked child went with its service"
