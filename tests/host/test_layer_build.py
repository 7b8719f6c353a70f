"""scripts/mklayer.py (make layer NAME=vm) on the host: two builds of the
vm recipe give the same squashfs, holding only usr/ with QEMU, its TCG
module, its firmware and the libraries they load; the signed manifest
checks, and a tampered layer or a forged manifest is refused by `spirit
layer verify` with the reason. A recipe that names a file none of its
packages has is refused, naming it."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPIRIT = os.environ.get("SPIRIT_BINARY", str(ROOT / "out" / "spirit"))


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("key") / "signing.key"
    subprocess.run([SPIRIT, "image", "keygen", str(path)], check=True, capture_output=True)
    return path


def build(recipe: Path, key: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", str(ROOT / "scripts" / "mklayer.py"), str(recipe), SPIRIT, str(key), str(out)],
                          capture_output=True, text=True, env=dict(os.environ, SOURCE_DATE_EPOCH="1795600000"))


@pytest.fixture(scope="module")
def builds(tmp_path_factory, key) -> list[Path]:
    outs = []
    for n in range(2):
        out = tmp_path_factory.mktemp(f"layer{n}")
        result = build(ROOT / "layers" / "vm.toml", key, out)
        assert result.returncode == 0, result.stderr
        assert "mklayer: " in result.stdout and "fits 0.1.0" in result.stdout, result.stdout
        outs.append(out)
    return outs


def test_the_vm_layer_is_reproducible_and_holds_qemu(builds):
    first, second = (hashlib.sha256((out / "vm.squashfs").read_bytes()).hexdigest() for out in builds)
    assert first == second
    manifest = json.loads((builds[0] / "vm.json").read_text())
    assert manifest["sha256"] == first and manifest["name"] == "vm" and manifest["bases"] == ["0.1.0"]
    listing = subprocess.run(["unsquashfs", "-l", "-d", "", str(builds[0] / "vm.squashfs")],
                             capture_output=True, text=True, check=True).stdout.split()
    top = {path.split("/")[1] for path in listing if path.count("/") >= 1}
    assert top == {"usr"}, top
    for path in ["/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img", "/usr/bin/swtpm",
                 "/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so", "/usr/share/seabios/bios-256k.bin",
                 "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/lib/x86_64-linux-gnu/libglib-2.0.so.0"]:
        assert path in listing, path


def test_a_tampered_layer_or_a_forged_manifest_is_refused(builds, key, tmp_path):
    good = builds[0]
    public = f"{key}.pub"
    verify = [SPIRIT, "layer", "verify", "--public-key", public]
    ok = subprocess.run(verify + ["--image", str(good / "vm.squashfs"), "--manifest", str(good / "vm.json")], capture_output=True, text=True)
    assert ok.returncode == 0 and "signature and SHA-256" in ok.stderr, ok.stderr

    tampered = tmp_path / "vm.squashfs"
    data = bytearray((good / "vm.squashfs").read_bytes())
    data[len(data) // 3] ^= 0x40
    tampered.write_bytes(data)
    bad = subprocess.run(verify + ["--image", str(tampered), "--manifest", str(good / "vm.json")], capture_output=True, text=True)
    assert bad.returncode == 111 and "the layer does not match its manifest: vm.squashfs's SHA-256 is" in bad.stderr, bad.stderr

    forged = json.loads((good / "vm.json").read_text())
    forged["bases"] = ["*"]
    (tmp_path / "vm.json").write_text(json.dumps(forged))
    bad = subprocess.run(verify + ["--image", str(good / "vm.squashfs"), "--manifest", str(tmp_path / "vm.json")],
                         capture_output=True, text=True)
    assert bad.returncode == 111 and "signature is not valid" in bad.stderr, bad.stderr


def test_a_recipe_naming_a_missing_file_is_refused(key, tmp_path):
    recipe = tmp_path / "odd.toml"
    recipe.write_text('packages = ["qemu-utils"]\nfiles = ["/usr/bin/qemu-img", "/usr/bin/no-such-program"]\n')
    result = build(recipe, key, tmp_path / "out")
    assert result.returncode == 1
    assert "files: /usr/bin/no-such-program matches no file of qemu-utils" in result.stderr, result.stderr
    assert not (tmp_path / "out" / "odd.squashfs").exists()


def test_a_recipe_takes_files_this_build_made(key, tmp_path):
    """A `[built]` table: the path in the layer = a file made here (a static
    program brings no libraries); without packages the recipe still builds."""
    (tmp_path / "tool").write_bytes(Path("/bin/busybox").read_bytes())  # static (busybox-static)
    (tmp_path / "tool").chmod(0o700)
    (tmp_path / "LICENSE").write_text("the tool's license\n")
    recipe = tmp_path / "made.toml"
    recipe.write_text(f'[built]\n"/usr/libexec/spirit/tool" = "{tmp_path}/tool"\n'
                      f'"/usr/share/doc/tool/LICENSE" = "{tmp_path}/LICENSE"\n')
    result = build(recipe, key, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "2 paths" in result.stdout, result.stdout
    listing = subprocess.run(["unsquashfs", "-lls", "-d", "", str(tmp_path / "out" / "made.squashfs")],
                             capture_output=True, text=True, check=True).stdout
    files = {line.split()[-1]: line.split()[0] for line in listing.splitlines() if line.startswith("-")}
    assert files == {"/usr/libexec/spirit/tool": "-rwxr-xr-x", "/usr/share/doc/tool/LICENSE": "-rw-r--r--"}, listing


@pytest.mark.parametrize("table, error", [
    ('"/usr/libexec/spirit/tool" = "/no/such/file"', "built: /usr/libexec/spirit/tool comes from /no/such/file, which is not there"),
    ('"/etc/tool" = "/bin/busybox"', "built: /etc/tool is not a normal path under /usr/"),
    ('"/usr/../etc/tool" = "/bin/busybox"', "built: /usr/../etc/tool is not a normal path under /usr/"),
])
def test_a_built_file_missing_or_outside_usr_is_refused(key, tmp_path, table, error):
    recipe = tmp_path / "made.toml"
    recipe.write_text(f"[built]\n{table}\n")
    result = build(recipe, key, tmp_path / "out")
    assert result.returncode == 1 and error in result.stderr, result.stderr
    assert not (tmp_path / "out" / "made.squashfs").exists()
