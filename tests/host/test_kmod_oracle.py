"""The oracle: the Swift module resolver against libkmod (kmod's own
library, loaded here through ctypes, never into Spirit), on Debian's kernel:
every alias of modules.alias and every module's dependencies; each from the
text files and again from Spirit's binary index (modules.spirit, written by
`spirit modules index` into a copy of the kernel's index files)."""

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL_DIR = Path(os.environ.get("SPIRIT_KERNEL_DIR", ROOT / ".cache/debian-kernel/current"))
SPIRIT = Path(os.environ.get("SPIRIT_BINARY", ROOT / "out/spirit"))


class Kmod:
    def __init__(self, modules_dir: Path, config_dir: Path):
        self.lib = ctypes.CDLL("libkmod.so.2")
        lib = self.lib
        lib.kmod_new.restype = ctypes.c_void_p
        lib.kmod_new.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
        lib.kmod_load_resources.argtypes = [ctypes.c_void_p]
        lib.kmod_module_new_from_lookup.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.kmod_module_new_from_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.kmod_list_next.restype = ctypes.c_void_p
        lib.kmod_list_next.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.kmod_module_get_module.restype = ctypes.c_void_p
        lib.kmod_module_get_module.argtypes = [ctypes.c_void_p]
        lib.kmod_module_get_name.restype = ctypes.c_char_p
        lib.kmod_module_get_name.argtypes = [ctypes.c_void_p]
        lib.kmod_module_get_dependencies.restype = ctypes.c_void_p
        lib.kmod_module_get_dependencies.argtypes = [ctypes.c_void_p]
        lib.kmod_module_unref.argtypes = [ctypes.c_void_p]
        lib.kmod_module_unref_list.argtypes = [ctypes.c_void_p]
        # An empty configuration directory on both sides: the host's
        # /etc/modprobe.d must not decide the comparison.
        paths = (ctypes.c_char_p * 2)(str(config_dir).encode(), None)
        self.ctx = lib.kmod_new(str(modules_dir).encode(), paths)
        assert self.ctx, "kmod_new failed"
        assert lib.kmod_load_resources(self.ctx) == 0

    def _names(self, kmod_list) -> list[str]:
        names = []
        node = kmod_list
        while node:
            module = self.lib.kmod_module_get_module(node)
            names.append(self.lib.kmod_module_get_name(module).decode())
            self.lib.kmod_module_unref(module)
            node = self.lib.kmod_list_next(kmod_list, node)
        return names

    def lookup(self, alias: str) -> list[str]:
        result = ctypes.c_void_p()
        assert self.lib.kmod_module_new_from_lookup(self.ctx, alias.encode(), ctypes.byref(result)) >= 0
        names = self._names(result.value)
        self.lib.kmod_module_unref_list(result.value)
        return names

    def dependencies(self, name: str) -> list[str]:
        module = ctypes.c_void_p()
        assert self.lib.kmod_module_new_from_name(self.ctx, name.encode(), ctypes.byref(module)) == 0
        deps = self.lib.kmod_module_get_dependencies(module)
        names = self._names(deps)
        self.lib.kmod_module_unref_list(deps)
        self.lib.kmod_module_unref(module)
        return names


@pytest.fixture(scope="module", params=["text", "binary"])
def kernel(request, tmp_path_factory):
    if not (KERNEL_DIR / "release").exists() or not SPIRIT.exists():
        pytest.fail(f"needs {KERNEL_DIR} and {SPIRIT}: run through 'make test'")
    release = (KERNEL_DIR / "release").read_text().strip()
    config = tmp_path_factory.mktemp("modprobe.d")
    root, options = KERNEL_DIR, []
    if request.param == "binary":
        # The kernel's index files copied (the cache is shared: nothing is
        # written beside them), modules.spirit made from them, and every
        # query told to refuse the text files.
        root = tmp_path_factory.mktemp("binary-root")
        directory = root / "lib/modules" / release
        directory.mkdir(parents=True)
        for path in (KERNEL_DIR / "lib/modules" / release).glob("modules.*"):
            shutil.copyfile(path, directory / path.name)
        subprocess.run([str(SPIRIT), "modules", "index", str(directory)], check=True, capture_output=True)
        assert (directory / "modules.spirit").stat().st_size > 100_000
        options = ["--binary-index"]
    return {"release": release, "config": config, "root": root, "options": options,
            "kmod": Kmod(KERNEL_DIR / "lib/modules" / release, config)}


def spirit_modules(kernel, *arguments, stdin: str | None = None) -> list[tuple[str, list[str]]]:
    out = subprocess.run([str(SPIRIT), "modules", *arguments, "--root", str(kernel["root"]), "--kernel", kernel["release"],
                          "--config", str(kernel["config"]), *kernel["options"]], check=True, capture_output=True, text=True,
                         input=stdin).stdout
    rows = []
    for line in out.splitlines():
        key, _, value = line.partition("\t")
        rows.append((key, value.split()))
    return rows


def concrete(pattern: str, star: str) -> str:
    """A modalias the pattern matches: each * as `star`, each ? as 0, each
    [set] as a character it admits, escapes resolved."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(star)
        elif c == "?":
            out.append("0")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(pattern[i])
        elif c == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            if body[0] in "!^":
                out.append(next(ch for ch in "0123456789ABCDEFGZ" if ch not in body[1:]))
            else:
                out.append(body[0])
            i = end
        else:
            out.append(c)
        i += 1
    return "".join(out)


def test_every_alias_resolves_as_kmod_resolves_it(kernel):
    """Every pattern of modules.alias, made into the modaliases it stands
    for (two of each: '*' as nothing and as 'Z9'), resolved by both.
    A real modalias never holds *, ? or [, so the patterns are not queried
    as they are written: for such strings kmod's answer depends on the
    shape of its binary trie, not on matching."""
    patterns = {line.split()[1] for line in
                (KERNEL_DIR / "lib/modules" / kernel["release"] / "modules.alias").read_text().splitlines()
                if line.startswith("alias ")}
    queries = sorted({concrete(p, star) for p in patterns for star in ("", "Z9")})
    ours = {key: set(value) for key, value in spirit_modules(kernel, "lookup", "-", stdin="\n".join(queries) + "\n")}
    assert set(ours) == set(queries)
    kmod = kernel["kmod"]
    disagreements = [(q, sorted(ours[q]), sorted(set(kmod.lookup(q)))) for q in queries if ours[q] != set(kmod.lookup(q))]
    unresolved = [q for q in queries if not ours[q]]
    print(f"kmod oracle: {len(patterns)} alias patterns as {len(queries)} modaliases, {len(disagreements)} disagree")
    assert not disagreements, disagreements[:10]
    assert not unresolved, unresolved[:10]


def test_every_module_has_kmods_dependencies(kernel):
    rows = spirit_modules(kernel, "deps")
    assert len(rows) > 3000
    # kmod lists them in load order: the reverse of modules.dep's.
    disagreements = [(name, ours, kernel["kmod"].dependencies(name))
                     for name, ours in rows if list(reversed(ours)) != kernel["kmod"].dependencies(name)]
    print(f"kmod oracle: compared the dependencies of {len(rows)} modules, {len(disagreements)} disagree")
    assert not disagreements, disagreements[:10]


@pytest.mark.parametrize("name", ["usb-storage", "crypto-crc32c", "fs-vfat", "symbol:drm_dp_link_train_channel_eq_delay",
                                  "ext4", "overlay", "pci:v00008086d000010D3sv*sd*bc*sc*i*", "no-such-thing"])
def test_names_symbols_and_builtins(kernel, name):
    ours = dict(spirit_modules(kernel, "lookup", name))[name]
    assert set(ours) == set(kernel["kmod"].lookup(name)), (ours, kernel["kmod"].lookup(name))


def test_the_binary_index_is_refused_when_damaged_or_stale(tmp_path):
    """A cut modules.spirit, or one older than a depmod run, is said once
    on stderr, and the text files answer; --binary-index makes it an error."""
    release = (KERNEL_DIR / "release").read_text().strip()
    directory = tmp_path / "lib/modules" / release
    directory.mkdir(parents=True)
    for path in (KERNEL_DIR / "lib/modules" / release).glob("modules.*"):
        shutil.copyfile(path, directory / path.name)
    subprocess.run([str(SPIRIT), "modules", "index", str(directory)], check=True, capture_output=True)
    index = directory / "modules.spirit"

    def lookup(*options):
        return subprocess.run([str(SPIRIT), "modules", "lookup", "--root", str(tmp_path), "--kernel", release,
                               "--config", str(tmp_path), *options, "ext4"], capture_output=True, text=True)

    whole = lookup("--binary-index")
    assert whole.returncode == 0 and whole.stdout.startswith("ext4\text4"), whole
    assert whole.stderr == ""
    index.write_bytes(index.read_bytes()[:-1])
    cut = lookup()
    assert cut.returncode == 0 and cut.stdout.startswith("ext4\text4"), cut
    assert cut.stderr.count("\n") == 1 and f"binary module index {index}: truncated" in cut.stderr, cut.stderr
    assert "reading the text files" in cut.stderr
    assert lookup("--binary-index").returncode == 111
    subprocess.run([str(SPIRIT), "modules", "index", str(directory)], check=True, capture_output=True)
    with open(directory / "modules.dep", "a") as dep:
        dep.write("kernel/extra/extra.ko:\n")
    stale = lookup()
    assert stale.returncode == 0 and "is stale: modules.dep is" in stale.stderr, stale.stderr
