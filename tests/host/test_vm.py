"""The Bridge on the host: `spirit vm daemon` (a normal process, its paths
under a test directory with `--root`) drives a real QEMU under TCG running a
tiny Linux guest: Debian's kernel and an initramfs of busybox-static and
Debian's qemu-guest-agent (on the guest's COM2, `-m isa-serial`, so that no
virtio module is needed), built here from Debian packages and cached under
.cache by content hash."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))
KERNEL_DIR = Path(os.environ.get("SPIRIT_KERNEL_DIR", ROOT / ".cache/debian-kernel/current"))
QEMU = "/usr/bin/qemu-system-x86_64"

# The guest's init: a counter that runs on in /tmp (it must survive a save
# and restore), the agent on COM2 restarted if it ends, and a shutdown that
# powers off (qemu-ga runs /sbin/shutdown -P +0 for guest-shutdown).
GUEST_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /var/run /run
# qemu-ga 7.2 offers guest-set-time only when /sbin/hwclock is there.
ln -s /bin/busybox /sbin/hwclock
(i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done) &
echo spirit-test-guest: up
# spirit.agent=virtio: the agent on the virtio-serial port (modules from
# Debian's kernel, loaded in dependency order); else COM2.
if grep -q spirit.agent=virtio /proc/cmdline; then
    for module in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console; do
        insmod /lib/modules/$module.ko
    done
    port=
    while [ -z "$port" ]; do
        for named in /sys/class/virtio-ports/*/name; do
            [ "$(cat $named 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/$(basename $(dirname $named))
        done
        sleep 0.1
    done
    set -- -m virtio-serial -p $port
else
    set -- -m isa-serial -p /dev/ttyS1
fi
while true; do /usr/sbin/qemu-ga "$@" -t /run; sleep 1; done &
while true; do sleep 3600; done
"""
GUEST_SHUTDOWN = "#!/bin/sh\nsync\nexec poweroff -f\n"
RELEASE = (KERNEL_DIR / "release").read_text().strip() if (KERNEL_DIR / "release").exists() else ""
VIRTIO_MODULES = [f"kernel/drivers/virtio/{name}.ko" for name in
                  ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci"]] + \
                 ["kernel/drivers/char/virtio_console.ko"]


def guest_initramfs() -> Path:
    """busybox + qemu-ga and its libraries, cached by the hash of what goes in."""
    cache = ROOT / ".cache/vm-guest"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        download = subprocess.run(["apt-get", "download", "qemu-guest-agent"], cwd=scratch, capture_output=True, text=True)
        if download.returncode != 0:
            pytest.skip(f"apt-get download qemu-guest-agent failed: {download.stderr.strip()}")
        deb = next(scratch.glob("qemu-guest-agent_*.deb"))
        digest = hashlib.sha256(deb.read_bytes() + GUEST_INIT.encode() + GUEST_SHUTDOWN.encode()
                                + Path("/bin/busybox").read_bytes() + RELEASE.encode()).hexdigest()[:16]
        image = cache / f"guest-{digest}.cpio.gz"
        if image.exists():
            return image
        subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch / "deb")], check=True)
        tree = scratch / "tree"
        for directory in ["bin", "sbin", "proc", "sys", "dev", "tmp", "usr/sbin", "lib/modules"]:
            (tree / directory).mkdir(parents=True, exist_ok=True)
        for module in VIRTIO_MODULES:
            shutil.copy(KERNEL_DIR / "lib/modules" / RELEASE / module, tree / "lib/modules")
        shutil.copy("/bin/busybox", tree / "bin/busybox")
        subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/copy-exec.sh" && copy_exec "$1" "$2" /usr/sbin/qemu-ga',
                        "copy", str(scratch / "deb/usr/sbin/qemu-ga"), str(tree)], check=True)
        (tree / "init").write_text(GUEST_INIT)
        (tree / "init").chmod(0o755)
        (tree / "sbin/shutdown").write_text(GUEST_SHUTDOWN)
        (tree / "sbin/shutdown").chmod(0o755)
        partial = image.with_suffix(".partial")
        subprocess.run(f"find . | cpio -o -H newc --quiet | gzip -1 > {partial}", shell=True, cwd=tree, check=True)
        partial.rename(image)
        return image


class Daemon:
    """`spirit vm --root DIR daemon`, as a normal process."""

    def __init__(self, root: Path, cgroups: Path | None):
        self.root = root
        self.cgroups = cgroups
        self.output = root / "daemon.out"
        self.process = None
        self.start()

    def start(self):
        environment = dict(os.environ)
        if self.cgroups:
            environment["SPIRIT_VM_CGROUP_ROOT"] = str(self.cgroups)
        self.process = subprocess.Popen([str(SPIRIT), "vm", "--root", str(self.root), "daemon"], env=environment,
                                        stdout=open(self.output, "ab"), stderr=subprocess.STDOUT)
        self.wait_for(lambda: (self.root / "run/spirit/vm.sock").exists(), "the control socket", 10)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        (self.root / "run/spirit/vm.sock").unlink(missing_ok=True)

    def vm(self, *words: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(SPIRIT), "vm", "--root", str(self.root), *words], capture_output=True, timeout=timeout)

    def list(self) -> dict:
        answer = self.vm("list", "--json")
        assert answer.returncode == 0, answer
        return {vm["name"]: vm for vm in json.loads(answer.stdout)["vms"]}

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, condition, what: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.process.returncode}) before {what}:\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"{what} did not happen within {timeout} s:\n{self.text()}")

    def wait_agent(self, name: str, timeout: float = 120) -> float:
        started = time.monotonic()
        self.wait_for(lambda: self.list()[name]["agent"] == "ready", f"{name}'s agent ready", timeout)
        return time.monotonic() - started

    def qemu_pid(self, name: str):
        path = self.root / f"run/spirit/vms/{name}/qemu.pid"
        return int(path.read_text()) if path.exists() else None


def alive(pid) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def bridge(tmp_path):
    if not Path(QEMU).exists() or not (KERNEL_DIR / "vmlinuz").exists():
        pytest.skip("needs qemu-system-x86 and Debian's kernel (make debian-kernel)")
    initramfs = guest_initramfs()
    root = tmp_path / "root"
    # The QEMU of this tree (on Spirit, the vm layer's): the host's.
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/qemu-system-x86_64").symlink_to(QEMU)
    subprocess.run(["truncate", "-s", "16M", str(tmp_path / "data.raw")], check=True)

    def write(name: str, agent: str = "isa-serial", append: str = "", disk: str | None = str(tmp_path / "data.raw"),
              machine: str = "pc", extra: str = "") -> Path:
        definition = tmp_path / f"{name}.toml"
        definition.write_text(f"""# A host test's guest.
memory-mib = 512
machine = "{machine}"
{extra}accel = "tcg"
agent = "{agent}"
vga = "none"
kernel = "{KERNEL_DIR / 'vmlinuz'}"
initrd = "{initramfs}"
append = "console=ttyS0 quiet panic=-1 {append}"
""" + (f"""
[disk.data]
path = "{disk}"
bus = "ide"
""" if disk else ""))
        return definition

    # A cgroup2 tree of its own, when the host lets us make one: QEMU must
    # land in <tree>/spirit/vm-testvm, beside (not under) the daemon's.
    cgroups = None
    unified = next((Path(p) for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] if (Path(p) / "cgroup.procs").exists()), None)
    if unified:
        try:
            cgroups = unified / f"spirit-vmtest-{os.getpid()}-{tmp_path.name}"
            (cgroups / "spirit").mkdir(parents=True)
        except OSError:
            cgroups = None
    daemon = None
    try:
        daemon = Daemon(root, cgroups)
        daemon.write = write
        yield daemon, write("testvm")
    finally:
        if daemon:
            daemon.stop()
        for pidfile in root.glob("run/spirit/vms/*/qemu.pid"):
            pid = int(pidfile.read_text())
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        remove_cgroups(cgroups)


def remove_cgroups(cgroups: Path | None):
    if cgroups:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                for leaf in cgroups.glob("spirit/*/"):
                    leaf.rmdir()
                (cgroups / "spirit").rmdir()
                cgroups.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def counter(daemon: Daemon) -> int:
    answer = daemon.vm("exec", "testvm", "--", "cat", "/tmp/counter")
    assert answer.returncode == 0, answer
    return int(answer.stdout)


def test_define_start_exec_at_name_readopt_and_stop_through_the_agent(bridge):
    daemon, definition = bridge
    answer = daemon.vm("define", str(definition))
    assert answer.returncode == 0 and b"testvm defined" in answer.stdout, answer
    assert daemon.list()["testvm"]["state"] == "defined"
    started = time.monotonic()
    answer = daemon.vm("start", "testvm")
    assert answer.returncode == 0, (answer, daemon.text())
    assert daemon.list()["testvm"]["state"] == "running"
    daemon.wait_agent("testvm")
    print(f"\nstart to agent ready: {time.monotonic() - started:.1f} s")
    assert daemon.vm("list").stdout.decode().splitlines()[1].split()[:3] == ["testvm", "running", "ready"]
    pid = daemon.qemu_pid("testvm")
    if daemon.cgroups:
        assert Path(f"/proc/{pid}/cgroup").read_text().strip().endswith(f"/{daemon.cgroups.name}/spirit/vm-testvm")

    # The serial console, both ways would need a shell on ttyS0; the guest
    # writes to it and ctrl-] ends the relay.
    console = subprocess.Popen([str(SPIRIT), "vm", "--root", str(daemon.root), "console", "testvm"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    assert daemon.vm("exec", "testvm", "--", "/bin/sh", "-c", "echo hello-from-the-guest > /dev/ttyS0").returncode == 0
    seen = b""
    os.set_blocking(console.stdout.fileno(), False)
    deadline = time.monotonic() + 10
    while b"hello-from-the-guest" not in seen and time.monotonic() < deadline:
        seen += console.stdout.read() or b""
        time.sleep(0.05)
    console.stdin.write(b"\x1d")
    console.stdin.flush()
    assert console.wait(timeout=10) == 0
    assert b"hello-from-the-guest" in seen, seen
    assert b"spirit-test-guest: up" in (daemon.root / "run/spirit/vms/testvm/console.log").read_bytes()

    # stdout, stderr and the exit code come back as the command's own.
    rounds = []
    for _ in range(3):
        t = time.monotonic()
        answer = daemon.vm("exec", "testvm", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
        rounds.append(time.monotonic() - t)
        assert (answer.returncode, answer.stdout, answer.stderr) == (3, b"out\n", b"err\n")
    print(f"exec round trip: {min(rounds) * 1000:.0f} ms (best of 3)")
    answer = subprocess.run([str(SPIRIT), "vm", "--root", str(daemon.root), "exec", "testvm", "--stdin", "--", "/bin/sh", "-c",
                             "cat; echo done"], input=b"hello from host\n", capture_output=True, timeout=60)
    assert (answer.returncode, answer.stdout) == (0, b"hello from host\ndone\n"), answer
    answer = daemon.vm("exec", "testvm", "--", "/bin/sh", "-c", "kill -9 $$")
    assert answer.returncode == 128 + 9, answer
    answer = daemon.vm("exec", "testvm", "--", "/bin/nope")
    assert answer.returncode == 111 and b"/bin/nope" in answer.stderr, answer

    # @testvm in busybox ash: a wrapper on PATH under the run directory.
    wrappers = daemon.root / "run/spirit/vm/bin"
    assert (wrappers / "@testvm").exists()
    answer = subprocess.run(["busybox", "ash", "-c", "@testvm uname -a; echo host $?"], capture_output=True, timeout=60,
                            env={"PATH": f"{wrappers}:/usr/bin:/bin"})
    assert answer.stdout.startswith(b"Linux (none) 6.1.0-"), answer
    assert answer.stdout.endswith(b"host 0\n")
    assert subprocess.run(["busybox", "ash", "-c", "@testvm 'exit 5'"], env={"PATH": f"{wrappers}:/usr/bin:/bin"}).returncode == 5

    # pause and resume: a paused guest runs nothing.
    assert daemon.vm("pause", "testvm").stdout == b"testvm paused\n"
    assert daemon.list()["testvm"]["state"] == "paused"
    answer = daemon.vm("exec", "testvm", "--", "true")
    assert answer.returncode == 100 and b"testvm is paused: exec needs a running VM" in answer.stderr, answer
    assert daemon.vm("pause", "testvm").returncode == 100
    assert daemon.vm("resume", "testvm").stdout == b"testvm running\n"
    assert daemon.vm("exec", "testvm", "--", "true").returncode == 0

    # The daemon restarted while the VM runs re-adopts it.
    daemon.stop()
    assert alive(pid)
    daemon.start()
    vm = daemon.list()["testvm"]
    assert (vm["state"], vm["pid"]) == ("running", pid), vm
    assert "adopted QEMU" in daemon.text()
    daemon.wait_agent("testvm", 10)
    assert daemon.vm("exec", "testvm", "--", "echo", "still here").stdout == b"still here\n"

    # stop: through the agent first; the guest powers itself off.
    t = time.monotonic()
    answer = daemon.vm("stop", "testvm", "--timeout", "20")
    assert answer.returncode == 0, answer
    assert b"stopped" in answer.stdout and b"guest-shutdown" in answer.stdout and b"ACPI" not in answer.stdout, answer
    print(f"stop through the agent: {time.monotonic() - t:.1f} s")
    assert daemon.list()["testvm"]["state"] == "stopped"
    assert not alive(pid)
    answer = daemon.vm("exec", "testvm", "--", "true")
    assert answer.returncode == 100 and b"testvm is stopped" in answer.stderr


def test_save_restore_goes_on_and_a_corrupt_state_is_refused(bridge):
    daemon, definition = bridge
    assert daemon.vm("define", str(definition)).returncode == 0
    assert daemon.vm("start", "testvm").returncode == 0
    daemon.wait_agent("testvm")
    assert daemon.vm("exec", "testvm", "--", "/bin/sh", "-c", "echo marker > /tmp/marker").returncode == 0
    before = counter(daemon)
    pid = daemon.qemu_pid("testvm")

    t = time.monotonic()
    answer = daemon.vm("save", "testvm")
    assert answer.returncode == 0, (answer, daemon.text())
    state = daemon.root / "run/spirit/vms/testvm/state.bin"
    print(f"\nsave: {time.monotonic() - t:.2f} s, {state.stat().st_size / 1e6:.1f} MB ({answer.stdout.decode().strip()})")
    assert not alive(pid)
    assert daemon.list()["testvm"]["state"] == "saved"

    # The daemon goes and comes back: the state is still there. The guest's
    # clock stays where it was at the save until the agent sets it.
    daemon.stop()
    time.sleep(3)
    daemon.start()
    assert daemon.list()["testvm"]["state"] == "saved"
    t = time.monotonic()
    answer = daemon.vm("start", "testvm")
    restored = time.monotonic()
    assert answer.returncode == 0 and b"restored" in answer.stdout and b"guest clock set" in answer.stdout, (answer, daemon.text())
    print(f"restore: {restored - t:.2f} s ({answer.stdout.decode().strip()})")
    answer = daemon.vm("exec", "testvm", "--", "cat", "/tmp/marker", "/tmp/counter")
    answered = time.monotonic() - restored
    assert answer.returncode == 0, answer
    assert answered < 2, f"exec answered {answered:.2f} s after the restore"
    print(f"exec after restore: {answered * 1000:.0f} ms")
    marker, after = answer.stdout.split()
    assert marker == b"marker" and int(after) >= before
    time.sleep(0.5)
    assert counter(daemon) > int(after), "the counter does not go on"
    guest_time = int(daemon.vm("exec", "testvm", "--", "date", "+%s").stdout)
    assert abs(guest_time - time.time()) < 2, f"the guest's clock is {guest_time - time.time():.1f} s off after the restore"
    assert not state.exists(), "a used state must not be restored twice"

    # A corrupt state: refused, and the VM is not started from it or fresh.
    assert daemon.vm("save", "testvm").returncode == 0
    with open(state, "r+b") as stream:
        stream.seek(state.stat().st_size // 2)
        stream.write(b"\x00garbage\xff" * 8)
    answer = daemon.vm("start", "testvm")
    assert answer.returncode == 111 and b"corrupt" in answer.stderr and b"not started" in answer.stderr, answer
    vm = daemon.list()["testvm"]
    assert vm["state"] == "saved" and "pid" not in vm, vm
    answer = daemon.vm("restore", "testvm")
    assert answer.returncode == 111 and b"corrupt" in answer.stderr
    answer = daemon.vm("start", "testvm", "--fresh")
    assert answer.returncode == 0 and b"started" in answer.stdout, answer
    assert not state.exists()

    # A QEMU that dies is seen: failed, with how it ended.
    os.kill(daemon.qemu_pid("testvm"), signal.SIGKILL)
    daemon.wait_for(lambda: daemon.list()["testvm"]["state"] == "failed", "the state failed", 5)
    assert daemon.list()["testvm"]["reason"].startswith("QEMU was killed by SIGKILL")
    assert daemon.vm("start", "testvm").returncode == 0

    # A state saved under another definition is refused too.
    assert daemon.vm("save", "testvm").returncode == 0
    definition.write_text(definition.read_text().replace("memory-mib = 512", "memory-mib = 384"))
    assert daemon.vm("define", str(definition)).returncode == 0
    answer = daemon.vm("start", "testvm")
    assert answer.returncode == 111 and b"the VM's definition changed since the save" in answer.stderr, answer
    assert "pid" not in daemon.list()["testvm"]
    assert daemon.vm("start", "testvm", "--fresh").returncode == 0
    assert daemon.vm("stop", "testvm", "--force").returncode == 0
    assert daemon.list()["testvm"]["state"] == "stopped"


def test_a_virtio_serial_agent_and_an_exec_that_outlives_its_timeout(bridge):
    daemon, _ = bridge
    definition = daemon.write("virtvm", agent="virtio-serial", append="spirit.agent=virtio", disk=None)
    assert daemon.vm("define", str(definition)).returncode == 0
    assert daemon.vm("start", "virtvm").returncode == 0
    print(f"\nvirtio-serial: start to agent ready {daemon.wait_agent('virtvm'):.1f} s")
    answer = daemon.vm("exec", "virtvm", "--", "/bin/sh", "-c", "cat /sys/class/virtio-ports/*/name")
    assert answer.stdout == b"org.qemu.guest_agent.0\n", answer
    t = time.monotonic()
    answer = daemon.vm("exec", "virtvm", "--timeout", "1", "--", "sleep", "5")
    assert answer.returncode == 111 and b"sleep did not end within 1 s (it still runs in the guest as pid" in answer.stderr, answer
    assert time.monotonic() - t < 3
    # The agent is still there for the next command.
    assert daemon.vm("exec", "virtvm", "--", "echo", "next").stdout == b"next\n"
    # A stop does not wait behind a command the agent is running: it goes
    # to the power button (ignored by this guest), then quit.
    busy = subprocess.Popen([str(SPIRIT), "vm", "--root", str(daemon.root), "exec", "virtvm", "--", "sleep", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)
    t = time.monotonic()
    answer = daemon.vm("stop", "virtvm", "--timeout", "2")
    assert answer.returncode == 0, answer
    assert b"guest-shutdown failed (the agent is busy with a command), ACPI power button, quit" in answer.stdout, answer
    assert time.monotonic() - t < 6
    assert busy.wait(timeout=10) == 111 and b"agent" in busy.stderr.read()


def test_without_an_agent_stop_goes_from_acpi_to_quit(bridge):
    daemon, _ = bridge
    assert daemon.vm("define", str(daemon.write("plain", agent="none", disk=None))).returncode == 0
    assert daemon.vm("start", "plain").returncode == 0
    vm = daemon.list()["plain"]
    assert (vm["state"], vm["agent"]) == ("running", "none"), vm
    answer = daemon.vm("exec", "plain", "--", "true")
    assert answer.returncode == 100 and b"plain has no guest agent" in answer.stderr
    # The busybox guest has no ACPI handler: the power button is ignored,
    # and after its deadline QMP's quit ends QEMU.
    t = time.monotonic()
    answer = daemon.vm("stop", "plain", "--timeout", "1")
    assert answer.returncode == 0, answer
    assert b"plain stopped" in answer.stdout and b"(ACPI power button, quit)" in answer.stdout, answer
    assert 1 <= time.monotonic() - t < 5
    answer = daemon.vm("stop", "plain")
    assert answer.returncode == 100 and b"plain is stopped: there is nothing to stop" in answer.stderr


def test_a_disk_mounted_in_spirit_is_refused_before_anything_starts(bridge, tmp_path):
    daemon, _ = bridge
    image = tmp_path / "mounted.img"
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["mkfs.ext2", "-q", str(image)], check=True)
    attach = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode != 0:
        pytest.skip(f"no loop device here: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    try:
        if subprocess.run(["mount", device, str(mountpoint)]).returncode != 0:
            pytest.skip("cannot mount here")
        try:
            assert daemon.vm("define", str(daemon.write("diskvm", disk=device))).returncode == 0
            answer = daemon.vm("start", "diskvm")
            assert answer.returncode == 100, answer
            assert f"the disk {device} is mounted in Spirit ({device} on {mountpoint})".encode() in answer.stderr, answer
            vm = daemon.list()["diskvm"]
            assert vm["state"] == "defined" and "pid" not in vm, vm
        finally:
            subprocess.run(["umount", str(mountpoint)], check=True)
        # Unmounted, the same disk is given to the VM (through an overlay).
        assert daemon.vm("start", "diskvm").returncode == 0
        assert (daemon.root / "run/spirit/vms/diskvm/disk-data.qcow2").exists()
        assert daemon.vm("stop", "diskvm", "--force").returncode == 0
    finally:
        subprocess.run(["losetup", "-d", device])


def test_nothing_to_do_without_definitions_or_qemu_and_a_bad_definition_is_not_installed(tmp_path):
    answer = subprocess.run([str(SPIRIT), "vm", "--root", str(tmp_path), "daemon"], capture_output=True, timeout=10)
    assert answer.returncode == 64, answer
    assert b"no VM definitions" in answer.stdout + answer.stderr
    bad = tmp_path / "broken.toml"
    bad.write_text('memory-mib = 512\nfirmware = "efi"\n')
    answer = subprocess.run([str(SPIRIT), "vm", "--root", str(tmp_path), "define", str(bad)], capture_output=True, timeout=10)
    assert answer.returncode == 100, answer
    assert f"{bad}:2: firmware: 'efi' is not one of bios, uefi, uefi-secure".encode() in answer.stderr, answer
    assert not (tmp_path / "etc/spirit/vms/broken.toml").exists()
    # A good one is installed even with no daemon to tell (it says so).
    good = tmp_path / "fine.toml"
    good.write_text("memory-mib = 256\n")
    answer = subprocess.run([str(SPIRIT), "vm", "--root", str(tmp_path), "define", str(good)], capture_output=True, timeout=10)
    assert answer.returncode == 0 and b"the VM manager did not take it yet" in answer.stdout, answer
    assert (tmp_path / "etc/spirit/vms/fine.toml").read_text() == "memory-mib = 256\n"


def test_the_supervisor_restarts_the_vm_service_and_its_vms_run_on(bridge):
    """rootfs/services/vm.toml under `spirit supervise --root`: ready by
    notify, not applicable where there is nothing to do, and a stop of the
    service leaves the VMs running for the next daemon to adopt."""
    daemon, _ = bridge
    daemon.stop()  # the service runs its own daemon on the same tree
    base = Path(tempfile.mkdtemp(prefix="spirit-vm-supervise-"))
    base.chmod(0o755)
    service = (ROOT / "rootfs/services/vm.toml").read_text()
    shipped = 'command = ["/bin/spirit", "vm", "daemon"]'
    assert shipped in service

    def with_root(root: Path) -> str:
        return service.replace(shipped, f'command = ["{SPIRIT.resolve()}", "vm", "--root", "{root}", "daemon"]')

    (base / "empty").mkdir()
    services = base / "etc/spirit/services"
    services.mkdir(parents=True)
    (services / "vm.toml").write_text(with_root(daemon.root))
    (services / "vm-elsewhere.toml").write_text(with_root(base / "empty"))
    environment = dict(os.environ)
    if daemon.cgroups:
        environment["SPIRIT_VM_CGROUP_ROOT"] = str(daemon.cgroups)
    supervisor = subprocess.Popen([str(SPIRIT), "supervise", "--root", str(base)], env=environment,
                                  stdout=open(base / "supervisor.out", "wb"), stderr=subprocess.STDOUT)

    def status() -> dict:
        answer = subprocess.run([str(SPIRIT), "ctl", "--root", str(base), "--json", "status"], capture_output=True, timeout=30)
        return {s["name"]: s for s in json.loads(answer.stdout)["services"]} if answer.returncode == 0 else {}

    def wait(condition, what):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"{what}: {status()}\n{(base / 'supervisor.out').read_text()}")

    try:
        wait(lambda: status().get("vm", {}).get("ready"), "the vm service is not ready")
        wait(lambda: "not applicable" in status().get("vm-elsewhere", {}).get("detail", ""), "vm-elsewhere is not 'not applicable'")
        assert daemon.vm("define", str(daemon.write("plain", agent="none", disk=None))).returncode == 0
        assert daemon.vm("start", "plain").returncode == 0
        pid = daemon.qemu_pid("plain")
        assert subprocess.run([str(SPIRIT), "ctl", "--root", str(base), "stop", "vm"], capture_output=True, timeout=30).returncode == 0
        wait(lambda: status()["vm"]["state"] == "stopped", "the vm service did not stop")
        assert alive(pid), "stopping the vm service took the VM with it"
        assert subprocess.run([str(SPIRIT), "ctl", "--root", str(base), "start", "vm"], capture_output=True, timeout=30).returncode == 0
        wait(lambda: status()["vm"].get("ready"), "the vm service did not come back")
        vm = daemon.list()["plain"]
        assert (vm["state"], vm["pid"]) == ("running", pid), vm
        assert daemon.vm("stop", "plain", "--force").returncode == 0
        assert not alive(pid)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def test_uefi_with_a_tpm_and_the_secure_boot_vars(bridge):
    """OVMF from the ovmf package boots the guest's kernel; swtpm is a TPM
    2.0 the guest sees (tpm_crb is built into Debian's kernel); the vars are
    a private copy; swtpm ends with QEMU and is collected."""
    if not Path("/usr/bin/swtpm").exists():
        pytest.skip("needs swtpm")
    daemon, _ = bridge
    definition = daemon.write("efivm", disk=None, machine="q35", extra='firmware = "uefi"\ntpm = true\n')
    assert daemon.vm("define", str(definition)).returncode == 0
    answer = daemon.vm("start", "efivm")
    assert answer.returncode == 0, (answer, daemon.text())
    print(f"\nUEFI + TPM: start to agent ready {daemon.wait_agent('efivm', 180):.1f} s")
    answer = daemon.vm("exec", "efivm", "--", "cat", "/sys/class/tpm/tpm0/tpm_version_major", "/sys/firmware/efi/fw_platform_size")
    assert answer.stdout == b"2\n64\n", answer
    persistent = daemon.root / "var/lib/spirit/vms/efivm"
    assert (persistent / "OVMF_VARS.fd").stat().st_size == Path("/usr/share/OVMF/OVMF_VARS_4M.fd").stat().st_size
    assert any((persistent / "tpm").iterdir()), "swtpm kept no state"
    swtpm = [pid for pid in os.listdir("/proc") if pid.isdigit() and
             str(persistent / "tpm").encode() in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(swtpm) == 1, swtpm
    assert daemon.vm("stop", "efivm", "--force").returncode == 0
    time.sleep(0.5)
    assert not Path(f"/proc/{swtpm[0]}").exists(), "swtpm was not collected"

    # Secure Boot: OVMF's secboot build with the Microsoft vars, SMM on. The
    # guest's kernel sees Secure Boot on. (OVMF's direct kernel boot falls
    # back to the Linux boot protocol when the image's signature is refused,
    # so Debian's kernel still runs: a Windows disk boots its signed loader.)
    definition = daemon.write("sbvm", disk=None, machine="q35", extra='firmware = "uefi-secure"\n')
    assert daemon.vm("define", str(definition)).returncode == 0
    assert daemon.vm("start", "sbvm").returncode == 0
    assert (daemon.root / "var/lib/spirit/vms/sbvm/OVMF_VARS.fd").read_bytes() == Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd").read_bytes()
    daemon.wait_agent("sbvm", 180)
    answer = daemon.vm("exec", "sbvm", "--", "dmesg")
    assert b"Secure boot enabled" in answer.stdout, answer.stdout.decode()[-3000:]
    assert daemon.vm("stop", "sbvm", "--force").returncode == 0


def test_sighup_reads_the_definitions_again(bridge):
    daemon, definition = bridge
    (daemon.root / "etc/spirit/vms").mkdir(parents=True, exist_ok=True)
    shutil.copy(definition, daemon.root / "etc/spirit/vms/byhand.toml")
    assert "byhand" not in daemon.list()
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for(lambda: "byhand" in daemon.list(), "byhand defined", 5)
    assert (daemon.root / "run/spirit/vm/bin/@byhand").exists()
    (daemon.root / "etc/spirit/vms/byhand.toml").unlink()
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for(lambda: not (daemon.root / "run/spirit/vm/bin/@byhand").exists(), "@byhand removed", 5)
    assert daemon.process.poll() is None


def test_a_hibernated_ntfs_is_refused(bridge, tmp_path):
    """Windows hibernated (Fast Startup) on the disk: hiberfil.sys begins
    with 'hibr'. Made here with ntfs-3g's mkntfs and ntfscp on a loop device
    that stands for the physical disk."""
    if not shutil.which("mkntfs") or not shutil.which("ntfscp"):
        pytest.skip("needs ntfs-3g")
    daemon, _ = bridge
    image = tmp_path / "windows.img"
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkntfs", "-F", "-Q", "-q", str(image)], check=True, capture_output=True)
    hiberfile = tmp_path / "hiberfil.sys"
    hiberfile.write_bytes(b"HIBR" + bytes(65532))
    subprocess.run(["ntfscp", "-q", str(image), str(hiberfile), "hiberfil.sys"], check=True)
    attach = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode != 0:
        pytest.skip(f"no loop device here: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        assert daemon.vm("define", str(daemon.write("windows", disk=device))).returncode == 0
        answer = daemon.vm("start", "windows")
        assert answer.returncode == 100, answer
        assert f"the NTFS on {device} (disk {device}) is hibernated".encode() in answer.stderr, answer
        assert daemon.list()["windows"]["state"] == "defined"
        # Shut down fully (ntfs-3g itself refuses to write the hibernated
        # volume, so it is made anew): a zeroed hiberfile, and the disk is given.
        subprocess.run(["losetup", "-d", device], check=True)
        subprocess.run(["mkntfs", "-F", "-Q", "-q", str(image)], check=True, capture_output=True)
        hiberfile.write_bytes(bytes(65536))
        subprocess.run(["ntfscp", "-q", str(image), str(hiberfile), "hiberfil.sys"], check=True)
        device = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True).stdout.strip()
        assert daemon.vm("define", str(daemon.write("windows", disk=device))).returncode == 0
        answer = daemon.vm("start", "windows")
        assert answer.returncode == 0, answer
        assert daemon.vm("stop", "windows", "--force").returncode == 0
    finally:
        subprocess.run(["losetup", "-d", device])
