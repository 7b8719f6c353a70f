import json
import os
import re
import shutil
import subprocess
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


@pytest.fixture(scope="session")
def system_image() -> dict:
    """out/rootfs.squashfs and out/manifest.json, from `make rootfs`."""
    image = Path(_artifact("SPIRIT_ROOTFS", "out/rootfs.squashfs"))
    manifest = Path(_artifact("SPIRIT_MANIFEST", "out/manifest.json"))
    return {"image": image, "manifest": manifest, "sha256": json.loads(manifest.read_text())["sha256"]}


def make_media(directory: Path, files: dict[str, Path], label: str = "CROM_SPIRIT", fstype: str = "ext4") -> Path:
    """A disk image (ext4 or vfat, no partition table) labelled `label`
    holding `files` at its root, made without mounting: mkfs.ext4 -d, or
    mkfs.vfat and mtools' mcopy."""
    total = sum(Path(source).stat().st_size for source in files.values())
    disk = directory / f"media-{fstype}.img"
    with open(disk, "wb") as f:
        f.truncate(total + (total >> 2) + (16 << 20))
    if fstype == "ext4":
        content = directory / "content"
        content.mkdir(parents=True)
        for name, source in files.items():
            (content / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, content / name)
        subprocess.run(["mkfs.ext4", "-q", "-L", label, "-d", str(content), str(disk)], check=True)
        shutil.rmtree(content)
    elif fstype == "vfat":
        subprocess.run(["mkfs.vfat", "-n", label, str(disk)], check=True, stdout=subprocess.DEVNULL)
        for name, source in files.items():
            subprocess.run(["mcopy", "-i", str(disk), str(source), f"::{name}"], check=True)
    else:
        raise ValueError(f"make_media: no way to make a {fstype} medium")
    return disk


@pytest.fixture(scope="session")
def media_disk(tmp_path_factory, system_image) -> Path:
    """A CROM_SPIRIT ext4 disk with the system image and its manifest."""
    return make_media(tmp_path_factory.mktemp("media"),
                      {"rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"]})


@pytest.fixture(scope="session")
def vfat_media_disk(tmp_path_factory, system_image) -> Path:
    """The same on vfat, as most USB sticks are."""
    return make_media(tmp_path_factory.mktemp("media"),
                      {"rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"]}, fstype="vfat")


@pytest.fixture
def boot(request, kernel, initramfs):
    """boot(append=..., **VMConfig fields) starts a VM whose console goes to
    out/vm-logs/<test>.log; QEMU is always killed at the end of the test,
    and the log is kept (its path is in every failure message)."""
    vms: list[VM] = []

    def start(append: str = "", **config) -> VM:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name) + (f"-{len(vms)}" if vms else "")
        config = {"kernel": kernel, "initrd": initramfs, **config}
        vm = VM(VMConfig(append=f"console=ttyS0 quiet {append}".strip(), **config),
                LOGS / f"{name}.log")
        vms.append(vm)
        return vm.start()

    yield start
    for vm in vms:
        vm.kill()


@pytest.fixture(scope="session")
def iso() -> Path:
    """out/crom-spirit.iso, from `make iso`."""
    return Path(_artifact("SPIRIT_ISO", "out/crom-spirit.iso"))


@pytest.fixture(scope="session")
def stick() -> Path:
    """out/crom-spirit-stick.img, from `make stick`: slot a holds this build."""
    return Path(_artifact("SPIRIT_STICK", "out/crom-spirit-stick.img"))


@pytest.fixture
def boot_firmware(request):
    """boot_firmware(**VMConfig fields) starts a VM with no -kernel: the
    firmware (SeaBIOS, or OVMF with uefi_code=) boots from the disks, by
    their bootindex. Logs and cleanup as `boot`."""
    vms: list[VM] = []

    def start(**config) -> VM:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name) + (f"-{len(vms)}" if vms else "")
        vm = VM(VMConfig(**config), LOGS / f"{name}.log")
        vms.append(vm)
        return vm.start()

    yield start
    for vm in vms:
        vm.kill()
