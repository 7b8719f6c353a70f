"""The VM test harness every VM test uses.

Boots a kernel and an initramfs (plus disks, NICs, kernel flags, firmware)
in QEMU under TCG, or lets the firmware boot a disk, a CD or a USB stick
(no kernel given: SeaBIOS, or OVMF for UEFI), captures the serial console to a log file, waits for
console lines with a timeout, types into the console, runs shell commands
and reads their output, reads /run/spirit/timeline.json back, and always
kills QEMU.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Under TCG a Debian kernel reaches PID 1 in about 3 s on an idle machine;
# CI machines are shared and noisy, so every wait is generous.
DEFAULT_TIMEOUT = float(os.environ.get("SPIRIT_VM_TIMEOUT", "120"))

# Terminal control sequences (busybox's line editor asks the terminal for
# the cursor position with ESC [ 6 n); the log keeps them, the text that
# expect() searches does not.
ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")
INCOMPLETE_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*)?$")

# A kernel record on the console (printk's time stamp, then the text, to
# the end of its line).
KERNEL_RECORD = re.compile(r"\[ *\d+\.\d{6}\] [^\n]*(\n|$)")


class ConsoleTimeout(AssertionError):
    pass


@dataclass
class Disk:
    path: str
    interface: str = "virtio"  # virtio | usb | ide | cdrom
    readonly: bool = False
    id: str | None = None
    bootindex: int | None = None  # the firmware boots the lowest first


@dataclass
class VMConfig:
    # Without a kernel the firmware boots from the disks (bootindex).
    kernel: str | None = None
    initrd: str | None = None
    append: str = "console=ttyS0 quiet"
    memory_mib: int = 1024
    cpus: int = 2
    disks: list[Disk] = field(default_factory=list)
    nics: list[str] = field(default_factory=list)  # -nic values, e.g. "user,model=e1000" or "socket,mcast=…"
    bios: str | None = None  # a firmware file (OVMF) instead of SeaBIOS
    # UEFI as on a real machine: OVMF's code read-only in flash, and a copy
    # of its variable store (the VM writes boot entries into it).
    uefi_code: str | None = None
    uefi_vars: str | None = None
    extra_args: list[str] = field(default_factory=list)
    # A command QEMU runs under, e.g. ["ip", "netns", "exec", NAME] for a
    # tap device in a network namespace of the test's own.
    wrapper: list[str] = field(default_factory=list)
    kvm: bool = os.environ.get("SPIRIT_VM_KVM") == "1"


class VM:
    """One QEMU guest. Use as a context manager: QEMU is killed on exit."""

    _markers = itertools.count(1)

    def __init__(self, config: VMConfig, log_path: str | Path):
        self.config = config
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._workdir = Path(tempfile.mkdtemp(prefix="spirit-vm-"))
        self.qmp_path = self._workdir / "qmp.sock"
        self._buffer = ""
        self._position = 0  # where the next expect() starts looking
        self._lock = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.exit_code: int | None = None

    # -- lifecycle -----------------------------------------------------------

    def command(self) -> list[str]:
        c = self.config
        args = [
            shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
            "-machine", "pc" + (",accel=kvm" if c.kvm else ",accel=tcg"),
            "-m", str(c.memory_mib),
            "-smp", str(c.cpus),
            "-display", "none",
            "-monitor", "none",
            "-serial", "stdio",
            "-no-reboot",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]
        if c.kernel:
            args += ["-kernel", c.kernel, "-append", c.append]
            if c.initrd:
                args += ["-initrd", c.initrd]
        if c.bios:
            args += ["-bios", c.bios]
        if c.uefi_code:
            args += ["-drive", f"if=pflash,format=raw,readonly=on,file={c.uefi_code}"]
            if c.uefi_vars:
                variables = self._workdir / "uefi-vars.fd"
                shutil.copyfile(c.uefi_vars, variables)
                args += ["-drive", f"if=pflash,format=raw,file={variables}"]
        for index, disk in enumerate(c.disks):
            ident = disk.id or f"disk{index}"
            ro = ",readonly=on" if disk.readonly else ""
            boot = f",bootindex={disk.bootindex}" if disk.bootindex is not None else ""
            if disk.interface == "virtio":
                args += ["-drive", f"file={disk.path},format=raw,if=none,id={ident}{ro}",
                         "-device", f"virtio-blk-pci,drive={ident},id={ident}-dev{boot}"]
            elif disk.interface == "usb":
                args += ["-drive", f"file={disk.path},format=raw,if=none,id={ident}{ro}",
                         "-device", "qemu-xhci,id=xhci" if index == 0 else "qemu-xhci",
                         "-device", f"usb-storage,drive={ident},id={ident}-dev{boot}"]
            elif disk.interface == "cdrom" and boot:
                args += ["-drive", f"file={disk.path},format=raw,if=none,id={ident},media=cdrom,readonly=on",
                         "-device", f"ide-cd,drive={ident},id={ident}-dev{boot}"]
            elif disk.interface == "cdrom":
                args += ["-drive", f"file={disk.path},format=raw,media=cdrom,readonly=on"]
            else:
                args += ["-drive", f"file={disk.path},format=raw,if={disk.interface}{ro}"]
        for nic in c.nics:
            args += ["-nic", nic]
        if not c.nics:
            args += ["-nic", "none"]
        return args + c.extra_args

    def start(self) -> "VM":
        with open(self.log_path, "wb") as log:
            log.write(("# " + " ".join(self.config.wrapper + self.command()) + "\n").encode())
        self._process = subprocess.Popen(
            self.config.wrapper + self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process and self._process.stdout
        fd = self._process.stdout.fileno()
        pending = ""
        with open(self.log_path, "ab", buffering=0) as log:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                log.write(chunk)
                text = pending + chunk.decode("utf-8", errors="replace").replace("\r", "")
                incomplete = INCOMPLETE_ESCAPE.search(text)
                pending = text[incomplete.start():] if incomplete else ""
                text = ESCAPE.sub("", text[: incomplete.start()] if incomplete else text)
                with self._lock:
                    self._buffer += text
                    self._lock.notify_all()
        code = self._process.wait()
        with self._lock:
            self.exit_code = code
            self._lock.notify_all()

    def kill(self) -> None:
        if self._process and self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.wait(timeout=10)
        if self._reader:
            self._reader.join(timeout=10)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "VM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()

    # -- the console ---------------------------------------------------------

    @property
    def console(self) -> str:
        with self._lock:
            return self._buffer

    def expect(self, pattern: str, timeout: float = DEFAULT_TIMEOUT, partial: bool = False) -> re.Match[str]:
        """Waits for `pattern` (a regex, multi-line) in the console output
        after the previous match; returns the match. Only whole lines are
        searched (so that `$` is the end of a line, not of what has arrived
        so far), unless `partial` is set, for prompts."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                end = len(self._buffer) if partial else self._buffer.rfind("\n") + 1
                match = regex.search(self._buffer, self._position, max(end, self._position))
                if match:
                    self._position = match.end()
                    return match
                if self.exit_code is not None:
                    raise ConsoleTimeout(f"QEMU exited ({self.exit_code}) before {pattern!r} appeared; log: {self.log_path}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConsoleTimeout(f"{pattern!r} did not appear within {timeout:.0f} s; log: {self.log_path}")
                self._lock.wait(min(remaining, 1.0))

    def expect_absent(self, pattern: str, seconds: float, partial: bool = False) -> None:
        """Asserts that `pattern` does not appear within `seconds` (while
        QEMU runs)."""
        try:
            match = self.expect(pattern, seconds, partial)
        except ConsoleTimeout:
            return
        raise AssertionError(f"{match.group(0)!r} appeared, and should not have; log: {self.log_path}")

    def wait_line(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """A line anywhere in the console so far, or until it comes, without
        typing meanwhile: a daemon's line may arrive while a command ran, and
        the console echoes typed characters as they arrive, so an echo could
        land inside a line written at that moment (seen on a loaded CI
        machine)."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.console, re.M)):
            assert time.monotonic() < deadline, f"{pattern!r} did not appear within {timeout:.0f} s; log: {self.log_path}"
            time.sleep(0.2)
        return found

    def send(self, text: str) -> None:
        assert self._process and self._process.stdin
        self._process.stdin.write(text.encode())
        self._process.stdin.flush()

    def run(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Runs a shell command at the shell on the console; returns its exit
        status and output. The markers are written as arithmetic so that the
        shell's echo of the typed line cannot match them."""
        n = next(self._markers)
        self.send(f"echo @@BEGIN-$(({n}+0))@@; {command}; echo @@END-$(({n}+0))-$?@@\n")
        self.expect(rf"^@@BEGIN-{n}@@$", timeout)
        start = self._position
        end = self.expect(rf"^@@END-{n}-(\d+)@@$", timeout)
        output = self.console[start:end.start()].strip("\n")
        return int(end.group(1)), output

    def check(self, command: str, timeout: float = 60) -> str:
        """Like run(), but the command must succeed."""
        status, output = self.run(command, timeout)
        assert status == 0, f"{command!r} exited {status}: {output}\nlog: {self.log_path}"
        return output

    def answer(self, command: str, timeout: float = 60) -> str:
        """Like check(), without what others write to the same console
        meanwhile: the `spirit:` lines of the supervisor and the daemons,
        and the kernel's records at `quiet`'s level (an OOM kill's "Memory
        cgroup out of memory" landed inside `spiritctl --json status` on a
        CI run). The kernel writes its record to the UART whenever it
        comes, so it can also cut a line of the command's output in two:
        the record is taken out wherever it starts, and the line joined.
        Not for the kernel's log itself (`dmesg`): use check()."""
        output = KERNEL_RECORD.sub("", self.check(command, timeout))
        return "\n".join(line for line in output.splitlines() if not line.startswith("spirit: "))

    def timeline(self) -> dict:
        """/run/spirit/timeline.json from inside the guest."""
        return json.loads(self.answer("cat /run/spirit/timeline.json"))

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.exit_code is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConsoleTimeout(f"QEMU did not exit within {timeout:.0f} s; log: {self.log_path}")
                self._lock.wait(min(remaining, 1.0))
            return self.exit_code

    # -- the QEMU monitor (QMP) ----------------------------------------------

    def qmp(self, command: str, **arguments) -> dict:
        """One QMP command (device_del, query-block, …); returns its answer."""
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.qmp_path))
            reader = s.makefile("r")
            json.loads(reader.readline())  # greeting
            s.sendall(b'{"execute":"qmp_capabilities"}\n')
            json.loads(reader.readline())
            s.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
            while True:
                answer = json.loads(reader.readline())
                if "return" in answer or "error" in answer:
                    return answer
