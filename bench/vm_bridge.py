"""The Bridge's figures for `make bench`: `spirit vm daemon` on the host
(its tree in a scratch directory) runs the host test's guest (Debian's
kernel, busybox and qemu-ga on COM2; 512 MiB, QEMU TCG, one vCPU) and
measures, each run on a fresh QEMU: start to agent ready, the `exec` round
trip (median of 10), save (time and stream size), restore (the whole
`spirit vm start` of a saved VM, and the first `exec` after it).

Run alone: SPIRIT_KERNEL_DIR=… python3 bench/vm_bridge.py [RUNS]."""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "host"))
import test_vm  # noqa: E402  (the guest's initramfs, cached under .cache/vm-guest)


def measure(spirit: Path, runs: int) -> dict:
    initramfs = test_vm.guest_initramfs()
    samples = []
    with tempfile.TemporaryDirectory(prefix="spirit-bench-vm-") as scratch:
        scratch = Path(scratch)
        root = scratch / "root"
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin/qemu-system-x86_64").symlink_to(test_vm.QEMU)
        definition = scratch / "bench.toml"
        definition.write_text(f"""memory-mib = 512
machine = "pc"
accel = "tcg"
agent = "isa-serial"
vga = "none"
kernel = "{test_vm.KERNEL_DIR / 'vmlinuz'}"
initrd = "{initramfs}"
append = "console=ttyS0 quiet panic=-1"
""")
        daemon = subprocess.Popen([str(spirit), "vm", "--root", str(root), "daemon"],
                                  stdout=open(scratch / "daemon.out", "wb"), stderr=subprocess.STDOUT)

        def vm(*words):
            answer = subprocess.run([str(spirit), "vm", "--root", str(root), *words], capture_output=True, timeout=300)
            if answer.returncode != 0:
                raise RuntimeError(f"spirit vm {' '.join(words)}: {answer}")
            return answer

        def agent_ready():
            return json.loads(vm("list", "--json").stdout)["vms"][0]["agent"] == "ready"

        try:
            deadline = time.monotonic() + 10
            while not (root / "run/spirit/vm.sock").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            vm("define", str(definition))
            for run in range(runs):
                t = time.monotonic()
                vm("start", "bench")
                while not agent_ready():
                    time.sleep(0.1)
                ready = time.monotonic() - t
                trips = []
                for _ in range(10):
                    t = time.monotonic()
                    vm("exec", "bench", "--", "true")
                    trips.append(time.monotonic() - t)
                t = time.monotonic()
                vm("save", "bench")
                saved = time.monotonic() - t
                size = (root / "run/spirit/vms/bench/state.bin").stat().st_size
                t = time.monotonic()
                vm("start", "bench")
                restored = time.monotonic() - t
                vm("exec", "bench", "--", "true")
                first_exec = time.monotonic() - t - restored
                vm("stop", "bench", "--force")
                sample = {"agent_ready_s": ready, "exec_ms": statistics.median(trips) * 1000, "save_s": saved,
                          "state_mb": size / 1e6, "restore_s": restored, "first_exec_after_restore_ms": first_exec * 1000}
                print("bench: vm run {}/{}: {}".format(run + 1, runs, ", ".join(f"{k} {v:.2f}" for k, v in sample.items())), flush=True)
                samples.append(sample)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            for pidfile in root.glob("run/spirit/vms/*/qemu.pid"):
                try:
                    os.kill(int(pidfile.read_text()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
    return {key: {"median": statistics.median(s[key] for s in samples), "min": min(s[key] for s in samples),
                  "max": max(s[key] for s in samples)} for key in samples[0]} | {"runs": runs, "memory_mib": 512}


def markdown(figures: dict) -> str:
    def row(label, key, unit, digits):
        f = figures[key]
        return f"| {label} | {f['median']:.{digits}f} {unit} | {f['min']:.{digits}f}–{f['max']:.{digits}f} |"
    return f"""## The Bridge: VMs

`spirit vm daemon` on the host, a {figures['memory_mib']} MiB guest (Debian's kernel, busybox, qemu-ga on COM2)
under QEMU TCG with one vCPU, {figures['runs']} runs; wall time of each `spirit vm` command.

| what | median | range |
| --- | --- | --- |
{row("start to agent ready", "agent_ready_s", "s", 1)}
{row("`exec` round trip (`true`, median of 10)", "exec_ms", "ms", 0)}
{row("save (`stop` + `migrate fd:` + quit + record)", "save_s", "s", 2)}
{row("saved state", "state_mb", "MB", 1)}
{row("restore (`spirit vm start` of a saved VM)", "restore_s", "s", 2)}
{row("first `exec` after the restore", "first_exec_after_restore_ms", "ms", 0)}

GPU passthrough and return: the next section (bench/gpu_handover.py, q35 + intel-iommu).
"""


if __name__ == "__main__":
    figures = measure(Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit")), int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    print(json.dumps(figures, indent=2))
    print(markdown(figures))
