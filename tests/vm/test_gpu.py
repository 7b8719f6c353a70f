"""GPU passthrough as data, on a real boot: Spirit on q35 with an emulated
Intel IOMMU (interrupt remapping needs the split irqchip), the bochs VGA at
00:02.0 with the HUD on it and an e1000 at 00:03.0. `spirit gpu
passthrough --device` gives each to vfio-pci (the HUD stopped, with its
reason in `spiritctl status`), `spirit gpu return` gives it back: bochs-drm
bound and the HUD on screen again; the e1000 gets a DHCP lease after its
return. The times the command reports are printed (the README's figures).
`spirit gpu passthrough VM` does the same for a VM definition's [gpu]
devices with QEMU from the vm layer inside Spirit, and the VM manager gives
them back when that QEMU ends."""

import json
import re
import time

from conftest import make_media
from harness import Disk
from test_layers import vm_layer  # noqa: F401  (a fixture)
from test_nexus import assert_hud, screen

VGA = "0000:00:02.0"
NIC = "0000:00:03.0"

EXTRA = [
    "-machine", "q35,kernel-irqchip=split",
    "-device", "intel-iommu,intremap=on,caching-mode=on",
    "-vga", "none", "-device", "VGA,xres=1024,yres=768,addr=02.0",
    "-netdev", "user,id=n0", "-device", "e1000,netdev=n0,addr=03.0",
]


def driver(vm, address: str) -> str:
    return vm.check(f"basename $(readlink /sys/bus/pci/devices/{address}/driver) 2>/dev/null || echo none").splitlines()[-1]


def nexus(vm) -> dict:
    out = vm.check("spiritctl --json status")
    # A console line of PID 1 (a service ready) may come first.
    return {s["name"]: s for s in json.loads(out[out.index('{"now_ms"'):])["services"]}["nexus"]


def moved(vm, command: str) -> int:
    """Runs `spirit gpu …`; returns the milliseconds it reports."""
    out = vm.check(command + " 2>&1", timeout=120)
    found = re.search(r"\((\d+) ms, \d+ steps\)", out)
    assert found, out
    print(f"{command}: {found.group(1)} ms")
    return int(found.group(1))


def test_the_vga_and_the_e1000_go_to_vfio_and_come_back(boot, media_disk, tmp_path):
    vm = boot("intel_iommu=on", disks=[Disk(str(media_disk), id="media")], extra_args=EXTRA, memory_mib=1536)
    vm.expect(r"^spirit: ready$", timeout=300)
    vm.expect(r"spirit:/# ", partial=True)
    assert nexus(vm)["state"] == "running", nexus(vm)
    assert driver(vm, VGA) == "bochs-drm"
    _, _, before = screen(vm, tmp_path, "before")
    assert_hud(before, "the HUD before the passthrough")

    status = vm.check("spirit gpu status")
    line = next(line for line in status.splitlines() if line.startswith(VGA))
    assert re.search(r"iommu group \d+ \(0000:00:02\.0\)", line), status
    assert "driver bochs-drm" in line and re.search(r"card0: spirit nexus \(pid \d+\)", line), status

    # q35's ICH9 functions share one group: one of them alone is refused,
    # the others named, nothing moved.
    lpc_sata = (driver(vm, "0000:00:1f.0"), driver(vm, "0000:00:1f.2"))
    code, refused = vm.run("spirit gpu passthrough --device 0000:00:1f.3 2>&1")
    assert code == 100 and re.search(r"also holds 0000:00:1f\.0 \([^)]*\), 0000:00:1f\.2 \([^)]*\)", refused), refused
    assert (driver(vm, "0000:00:1f.0"), driver(vm, "0000:00:1f.2")) == lpc_sata

    # The plan, as shell, before anything is done.
    plan = vm.check(f"spirit gpu plan passthrough --device {VGA}")
    assert "spiritctl stop nexus" in plan and f"echo {VGA} > /sys/bus/pci/drivers/bochs-drm/unbind" in plan, plan
    assert driver(vm, VGA) == "bochs-drm"

    took = moved(vm, f"spirit gpu passthrough --device {VGA}")
    assert driver(vm, VGA) == "vfio-pci"
    group = vm.check(f"basename $(readlink /sys/bus/pci/devices/{VGA}/iommu_group)")
    vm.check(f"test -c /dev/vfio/{group}")
    hud = nexus(vm)
    assert hud["state"] == "stopped", hud
    assert hud.get("detail") == f"gpu {VGA} passed through (spirit gpu passthrough)", hud
    # Twice is nothing to do.
    assert "nothing to do" in vm.check(f"spirit gpu passthrough --device {VGA}")

    took_back = moved(vm, f"spirit gpu return --device {VGA}")
    assert driver(vm, VGA) == "bochs-drm"
    deadline = time.monotonic() + 60
    while not (nexus(vm)["state"] == "running" and nexus(vm)["ready"]):
        assert time.monotonic() < deadline, nexus(vm)
        time.sleep(0.5)
    _, _, after = screen(vm, tmp_path, "after")
    assert_hud(after, "the HUD after the return")
    print(f"VGA: passthrough {took} ms, return {took_back} ms")

    # The e1000: no HUD involved; a DHCP lease once it is back.
    nic_before = driver(vm, NIC)
    assert nic_before == "e1000", nic_before
    took = moved(vm, f"spirit gpu passthrough --device {NIC}")
    assert driver(vm, NIC) == "vfio-pci"
    assert nexus(vm)["state"] == "running"
    took_back = moved(vm, f"spirit gpu return --device {NIC}")
    assert driver(vm, NIC) == "e1000"
    print(f"e1000: passthrough {took} ms, return {took_back} ms")
    interface = vm.check(f"ls /sys/bus/pci/devices/{NIC}/net").split()[-1]
    vm.check(f"ip link set {interface} up")
    lease = vm.check(f"udhcpc -i {interface} -n -q -t 10 -s /bin/true 2>&1", timeout=120)
    assert re.search(r"lease of 10\.0\.2\.\d+ obtained", lease), lease


def test_with_crom_gpu_passthrough_the_return_loads_the_graphics_driver(boot, media_disk, tmp_path):
    """crom.gpu=passthrough keeps graphics drivers from loading: the VGA has
    no driver and the HUD has no screen. The return loads bochs through the
    module loader (its modalias), and the HUD comes up on it."""
    vm = boot("intel_iommu=on crom.gpu=passthrough", disks=[Disk(str(media_disk), id="media")], extra_args=EXTRA,
              memory_mib=1536)
    vm.expect(r"^spirit: ready$", timeout=300)
    vm.expect(r"spirit:/# ", partial=True)
    assert driver(vm, VGA) == "none"
    vm.check("test ! -d /sys/module/bochs")
    assert nexus(vm)["state"] != "running", nexus(vm)
    # Stage 1 loaded vfio-pci first (the initramfs carries no kvm); stage
    # 2's modules service loads kvm once it is ready (it claims no device).
    steps = [step["step"] for step in vm.timeline()["steps"]]
    storage = next(i for i, step in enumerate(steps) if step.startswith("modules:storage"))
    assert steps.index("modules:virtualization") < storage, steps
    assert "stage2-modules:virtualization" in steps and "stage2-modules:graphics" not in steps, steps
    vm.check("for i in $(seq 100); do test -d /sys/module/kvm && break; sleep 0.2; done; test -d /sys/module/vfio_pci && test -d /sys/module/kvm")
    moved(vm, f"spirit gpu passthrough --device {VGA}")
    assert driver(vm, VGA) == "vfio-pci"
    plan = vm.check(f"spirit gpu plan return --device {VGA}")
    assert "spirit modules load bochs" in plan, plan
    moved(vm, f"spirit gpu return --device {VGA}")
    assert driver(vm, VGA) == "bochs-drm"
    deadline = time.monotonic() + 60
    while not (nexus(vm)["state"] == "running" and nexus(vm)["ready"]):
        assert time.monotonic() < deadline, nexus(vm)
        time.sleep(0.5)
    _, _, after = screen(vm, tmp_path, "after")
    assert_hud(after, "the HUD after the return")


# A VM with nothing to boot (SeaBIOS finds no disk and waits): enough for
# its QEMU to hold both devices through vfio-pci.
INNER = f"""memory-mib = 64
machine = "pc"
accel = "tcg"
agent = "none"
vga = "none"
[gpu]
devices = ["{VGA}", "{NIC}"]
"""


def test_a_vm_gets_the_gpu_and_the_vm_manager_gives_it_back_when_it_ends(boot, tmp_path, system_image, vm_layer):  # noqa: F811
    disk = make_media(tmp_path, {
        "rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"],
        "layers/vm.squashfs": vm_layer["image"], "layers/vm.json": vm_layer["manifest"],
    })
    vm = boot("intel_iommu=on crom.layers=vm", disks=[Disk(str(disk), id="media")], extra_args=EXTRA, memory_mib=1536)
    vm.expect(r"^spirit: ready$", timeout=300)
    vm.expect(r"spirit:/# ", partial=True)
    assert driver(vm, VGA) == "bochs-drm" and driver(vm, NIC) == "e1000"
    vm.check("printf '%s\\n' " + " ".join(f"'{line}'" for line in INNER.splitlines()) + " > /tmp/inner.toml")
    vm.check("spirit vm define /tmp/inner.toml")

    # kvm comes after `spirit: ready`; a VM that wants KVM before it makes
    # the VM manager load it first (here: kvm unloaded again, and a VM whose
    # disk is missing, refused after that check, so no nested KVM runs).
    vm.check("for i in $(seq 150); do grep -q stage2-modules:hypervisor /run/spirit/timeline.json && break; sleep 0.2; done")
    vm.check("rmmod kvm_amd kvm && test ! -e /dev/kvm")
    vm.check("printf '%s\\n' 'memory-mib = 64' 'accel = \"kvm:tcg\"' 'agent = \"none\"' 'vga = \"none\"' '[disk.data]' "
             "'path = \"/nonexistent.raw\"' > /tmp/wantskvm.toml && spirit vm define /tmp/wantskvm.toml")
    code, out = vm.run("spirit vm start wantskvm 2>&1")
    assert code == 100 and "/nonexistent.raw) does not exist" in out, out
    vm.check("test -e /dev/kvm")
    assert "wantskvm wants KVM and /dev/kvm is not there yet: the hypervisor's modules: 2 loaded" in vm.answer("spiritctl logs vm")

    # A VM without [gpu] devices, or one that is not defined, is refused before anything moves.
    code, out = vm.run("spirit gpu passthrough nothere 2>&1")
    assert code == 100 and "no VM named 'nothere'" in out, out
    plan = vm.check("spirit gpu plan passthrough inner")
    assert "spiritctl stop nexus    # gpu 0000:00:02.0 passed through to VM inner (spirit gpu passthrough inner)" in plan, plan

    out = vm.check("spirit gpu passthrough inner 2>&1", timeout=180)
    found = re.search(r"\((\d+) ms, \d+ steps\); .*\((\d+) ms with the start\)", out)
    assert found, out
    print(f"spirit gpu passthrough inner: devices {found.group(1)} ms, with the VM's start {found.group(2)} ms")
    assert driver(vm, VGA) == "vfio-pci" and driver(vm, NIC) == "vfio-pci"
    out = vm.check("spirit vm list --json")
    listed = {v["name"]: v for v in json.loads(out[out.index('{"vms"'):])["vms"]}
    assert listed["inner"]["state"] == "running", listed
    assert nexus(vm).get("detail") == "gpu 0000:00:02.0 passed through to VM inner (spirit gpu passthrough inner)", nexus(vm)
    # QEMU has the groups open: the return is refused while it runs.
    code, out = vm.run("spirit gpu return inner 2>&1")
    assert code == 100 and "its QEMU holds the devices" in out, out
    assert driver(vm, VGA) == "vfio-pci"

    # The VM ends: the VM manager gives both back and the HUD comes back.
    started = time.monotonic()
    vm.check("spirit vm stop inner --force", timeout=120)
    deadline = time.monotonic() + 120
    while not (driver(vm, VGA) == "bochs-drm" and driver(vm, NIC) == "e1000"):
        assert time.monotonic() < deadline, vm.check("spirit gpu status; spiritctl status")
        time.sleep(0.5)
    while not (nexus(vm)["state"] == "running" and nexus(vm)["ready"]):
        assert time.monotonic() < deadline, nexus(vm)
        time.sleep(0.5)
    print(f"the VM's end to the GPU back and the HUD ready: {time.monotonic() - started:.1f} s")
    vm.check("test ! -e /run/spirit/vms/inner.gpu")
    _, _, after = screen(vm, tmp_path, "after")
    assert_hud(after, "the HUD after the VM ended")
    assert "nothing is handed over" in vm.check("spirit gpu return")
    interface = vm.check(f"ls /sys/bus/pci/devices/{NIC}/net").split()[-1]
    vm.check(f"ip link set {interface} up")
    lease = vm.check(f"udhcpc -i {interface} -n -q -t 10 -s /bin/true 2>&1", timeout=120)
    assert re.search(r"lease of 10\.0\.2\.\d+ obtained", lease), lease
