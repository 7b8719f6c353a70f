#!/usr/bin/env python3
"""The one door to the kernel, enforced (STYLE.md, lesson 2).

Every system call with a side effect goes through SpiritCore (Kernel,
Socket, Spawn, SignalQueue, Reaper, Threads), which holds the one errno
policy and says the whole operation in its errors. This check fails when a
Swift file outside SpiritCore imports CSpirit or calls a side-effecting libc
function itself. A call is the function's name followed by `(`, not after a
`.` (a method: `socket.read(`, `Kernel.mount(`) unless written `Glibc.name(`,
and not a function of the same name that the file declares itself
(`func mount(` in any file of its target). Comments and string literals are
not read.

Usage: door-check.py [SOURCES_DIR]   (default: Sources beside this script's
parent). Exit 0 when the door holds, 1 with one line per call otherwise.
"""
import os
import re
import sys

# The libc functions that change or wait on the system. Reading a value
# (getpid, inet_pton, strdup) is not a door matter.
SIDE_EFFECTS = """
open openat creat close read write pread pwrite readv writev lseek ftruncate truncate fsync fdatasync sync
unlink unlinkat rename renameat chmod fchmod chown fchown mkdir mkdirat rmdir chdir fchdir chroot
readlink symlink link mknod mkfifo opendir closedir readdir stat lstat fstat statfs statvfs realpath
pipe pipe2 dup dup2 dup3 fcntl ioctl poll ppoll select epoll_create1 epoll_ctl epoll_wait eventfd
socket socketpair bind connect listen accept accept4 send sendto sendmsg recv recvfrom recvmsg sendfile
setsockopt getsockopt shutdown
mount umount umount2 swapon swapoff reboot prctl
fork vfork execve execv execvp posix_spawn waitpid wait wait4 kill killpg setsid setuid setgid setgroups
signal sigaction sigprocmask pthread_sigmask signalfd pthread_create pthread_kill
nanosleep usleep
""".split()

# Files allowed a raw call, each with the reason. Keep this short: a new
# entry needs a reason a reviewer would accept.
EXCEPTIONS: dict[tuple[str, str], str] = {
}

CALL = re.compile(r"(?<![\w.])(Glibc\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\(")
QUALIFIED = re.compile(r"\bGlibc\.([A-Za-z_][A-Za-z0-9_]*)\s*\(")
DECLARED = re.compile(r"\b(?:func|case)\s+([A-Za-z_][A-Za-z0-9_]*)\s*[(<]")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def code_lines(text):
    """Each line without its comment and with string literals emptied."""
    in_block = False
    in_text = False
    for number, line in enumerate(text.split("\n"), 1):
        if line.count('"""') % 2 == 1:
            # A multi-line string literal opens or closes here: its lines are text.
            in_text = not in_text
            continue
        if in_text:
            continue
        if in_block:
            end = line.find("*/")
            if end < 0:
                continue
            line = line[end + 2:]
            in_block = False
        line = STRING.sub('""', line)
        start = line.find("/*")
        if start >= 0 and "*/" not in line[start:]:
            line = line[:start]
            in_block = True
        line = re.sub(r"/\*.*?\*/", "", line)
        comment = line.find("//")
        if comment >= 0:
            line = line[:comment]
        yield number, line


def check_file(path, relative, declared):
    text = open(path, encoding="utf-8").read()
    problems = []
    for number, line in code_lines(text):
        if re.match(r"\s*import\s+CSpirit\b", line):
            problems.append(f"{relative}:{number}: imports CSpirit: only SpiritCore talks to the C layer")
            continue
        if re.search(r"\b(func|case)\s", line):
            line = DECLARED.sub("", line)
        names = [(name, True) for name in QUALIFIED.findall(line)]
        names += [(name, False) for qualified, name in CALL.findall(line) if not qualified]
        for name, qualified in names:
            if name.startswith("spirit_"):
                problems.append(f"{relative}:{number}: calls the C shim {name}: go through SpiritCore")
            elif name in SIDE_EFFECTS and (qualified or name not in declared):
                if (relative, name) in EXCEPTIONS:
                    continue
                problems.append(f"{relative}:{number}: calls {name}( itself: use SpiritCore's door (Kernel, Socket, Spawn, …)")
    return problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    sources = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "Sources")
    problems = []
    checked = 0
    for target in sorted(os.listdir(sources)):
        # SpiritCore is the door; SpiritPID1 (spirit-init, Embedded Swift,
        # which cannot link SpiritCore) has its own, Sys in Kernel.swift.
        if target in ("SpiritCore", "SpiritPID1"):
            continue
        paths = [os.path.join(directory, name)
                 for directory, _, files in os.walk(os.path.join(sources, target))
                 for name in sorted(files) if name.endswith(".swift")]
        # A function the target declares itself (in any of its files) is its own.
        declared = set()
        for path in paths:
            for _, line in code_lines(open(path, encoding="utf-8").read()):
                declared.update(DECLARED.findall(line))
        for path in paths:
            problems += check_file(path, os.path.relpath(path, sources), declared)
            checked += 1
    for problem in problems:
        print(f"door-check: {problem}")
    if problems:
        print(f"door-check: {len(problems)} raw calls outside SpiritCore in {checked} files")
        return 1
    print(f"door-check: {checked} Swift files outside SpiritCore reach the kernel only through it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
