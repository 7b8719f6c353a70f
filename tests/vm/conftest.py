import os
import re
from pathlib import Path

import pytest

from harness import VM, VMConfig

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "out" / "vm-logs"


def _artifact(variable: str, default: str) -> str:
    path = Path(os.environ.get(variable, ROOT / default))
    if not path.exists():
        pytest.exit(f"{variable}={path} does not exist: run the VM tests through 'make test' (or 'make vm-test')", 2)
    return str(path)


@pytest.fixture(scope="session")
def kernel() -> str:
    return _artifact("SPIRIT_KERNEL", ".cache/debian-kernel/current/vmlinuz")


@pytest.fixture(scope="session")
def initramfs() -> str:
    return _artifact("SPIRIT_INITRAMFS", "out/initramfs.zst")


@pytest.fixture
def boot(request, kernel, initramfs):
    """boot(append=..., **VMConfig fields) starts a VM whose console goes to
    out/vm-logs/<test>.log; QEMU is always killed at the end of the test,
    and the log is kept (its path is in every failure message)."""
    vms: list[VM] = []

    def start(append: str = "", **config) -> VM:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name) + (f"-{len(vms)}" if vms else "")
        vm = VM(VMConfig(kernel=kernel, initrd=initramfs, append=f"console=ttyS0 quiet {append}".strip(), **config),
                LOGS / f"{name}.log")
        vms.append(vm)
        return vm.start()

    yield start
    for vm in vms:
        vm.kill()
