#!/usr/bin/env python3
"""Builds an add-on layer from its recipe: OUT/NAME.squashfs (zstd,
reproducible: the same recipe, packages and SOURCE_DATE_EPOCH give the same
bytes) and its signed OUT/NAME.json.

    scripts/mklayer.py layers/NAME.toml SPIRIT_BINARY SIGNING_KEY OUT_DIR

A recipe is data: the Debian packages the layer comes from (installed on
this host with apt when missing), the files it holds (globs over those
packages' files), files this build made (a `[built]` table: the path in the
layer = the path on this host, relative to the directory make runs in), and
optionally `version` and `bases` (the system image versions it fits; both
default to this build's version). Every ELF file brings the shared libraries
it loads (ldd), placed at their /usr paths; the dynamic loader itself is the
system image's. A layer holds only usr/: at run time it is merged over /usr
(see Sources/Overlay/LayerMerge.swift).
"""
import fnmatch
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib

LOADERS = {"/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-x86-64.so.2"}


def die(message: str) -> None:
    print(f"mklayer: {message}", file=sys.stderr)
    sys.exit(1)


def read_recipe(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            recipe = tomllib.load(f)
    except FileNotFoundError:
        die(f"{path}: no such recipe (layers/: {', '.join(sorted(os.listdir(os.path.dirname(path) or '.')))})")
    except tomllib.TOMLDecodeError as error:
        die(f"{path}: {error}")
    recipe.setdefault("packages", [])
    recipe.setdefault("files", [])
    recipe.setdefault("built", {})
    for key in ["packages", "files"]:
        if not isinstance(recipe[key], list) or not all(isinstance(x, str) for x in recipe[key]):
            die(f"{path}: '{key}' must be a list of strings")
    if bool(recipe["packages"]) != bool(recipe["files"]):
        die(f"{path}: 'packages' and 'files' go together: the files are taken from the packages")
    built = recipe["built"]
    if not isinstance(built, dict) or not all(isinstance(v, str) for v in built.values()):
        die(f"{path}: 'built' must be a table of \"/usr/path/in/layer\" = \"path/on/host\"")
    for layer_path in built:
        if not layer_path.startswith("/usr/") or os.path.normpath(layer_path) != layer_path:
            die(f"{path}: built: {layer_path} is not a normal path under /usr/: a layer holds only usr/")
    if not recipe["files"] and not built:
        die(f"{path}: the layer holds nothing: give 'packages' and 'files', or 'built'")
    unknown = set(recipe) - {"description", "packages", "files", "built", "version", "bases"}
    if unknown:
        die(f"{path}: unknown keys {', '.join(sorted(unknown))} (known: description, packages, files, built, version, bases)")
    return recipe


def installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == "install ok installed"


def ensure_packages(packages: list[str]) -> None:
    missing = [p for p in packages if not installed(p)]
    if not missing:
        return
    print(f"mklayer: installing {' '.join(missing)} with apt", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False)
        if subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env).returncode != 0:
            die(f"apt could not install {' '.join(missing)}")


def package_files(packages: list[str]) -> list[str]:
    files: set[str] = set()
    for package in packages:
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
        files.update(line for line in listing.splitlines() if line.startswith("/"))
    return sorted(files)


def in_usr(path: str) -> str:
    """The path a file has under /usr on this (usr-merged) host: /lib/x → /usr/lib/x."""
    directory = os.path.realpath(os.path.dirname(path))
    result = os.path.join(directory, os.path.basename(path))
    if not result.startswith("/usr/"):
        die(f"{path} is not under /usr (its directory is {directory}): a layer holds only usr/")
    return result


def is_elf(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def libraries(path: str) -> list[str]:
    result = subprocess.run(["ldd", path], capture_output=True, text=True)
    if result.returncode != 0:
        return []  # not dynamic (a static program, a firmware blob)
    found = []
    for line in result.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target == "not":
                die(f"{path} needs {parts[0]}, which this host does not have")
            if target.startswith("/"):
                found.append(target)
        elif parts and parts[0].startswith("/"):
            found.append(parts[0])
    return [library for library in found if library not in LOADERS]


def main() -> None:
    if len(sys.argv) != 5:
        die("usage: mklayer.py layers/NAME.toml SPIRIT_BINARY SIGNING_KEY OUT_DIR")
    recipe_path, spirit, key, out = sys.argv[1:]
    name = os.path.basename(recipe_path).removesuffix(".toml")
    recipe = read_recipe(recipe_path)
    this_version = subprocess.run([spirit, "version"], capture_output=True, text=True, check=True).stdout.split()[1]
    version = recipe.get("version", this_version)
    bases = recipe.get("bases", [this_version])
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

    ensure_packages(recipe["packages"])
    offered = package_files(recipe["packages"])
    wanted: dict[str, str] = {}  # path in the layer -> path on this host

    def add(host_path: str, layer_path: str | None = None) -> None:
        layer_path = layer_path or in_usr(host_path)
        if layer_path in wanted:
            return
        wanted[layer_path] = host_path
        if os.path.islink(host_path):
            target = os.path.join(os.path.dirname(host_path), os.readlink(host_path))
            add(os.path.normpath(target))
        elif os.path.isfile(host_path) and is_elf(host_path):
            for library in libraries(host_path):
                # By the name the program asks for (the soname), its content.
                add(os.path.realpath(library), in_usr(library))

    for pattern in recipe["files"]:
        matches = [f for f in offered if fnmatch.fnmatchcase(f, pattern) and not os.path.isdir(f)]
        if not matches:
            die(f"{recipe_path}: files: {pattern} matches no file of {', '.join(recipe['packages'])}")
        for match in matches:
            add(match)
    for layer_path, host_path in sorted(recipe["built"].items()):
        if not os.path.isfile(host_path):
            die(f"{recipe_path}: built: {layer_path} comes from {host_path}, which is not there (not built yet?)")
        add(os.path.realpath(host_path), layer_path)

    os.makedirs(out, exist_ok=True)
    image = os.path.join(out, f"{name}.squashfs")
    raw = 0
    with tempfile.TemporaryDirectory() as stage:
        os.umask(0o022)
        for layer_path, host_path in sorted(wanted.items()):
            destination = stage + layer_path
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            if os.path.islink(host_path) and layer_path == in_usr(host_path):
                os.symlink(os.readlink(host_path), destination)
            else:
                shutil.copyfile(host_path, destination)
                executable = os.stat(host_path).st_mode & stat.S_IXUSR
                os.chmod(destination, 0o755 if executable else 0o644)
                raw += os.path.getsize(destination)
        if sorted(os.listdir(stage)) != ["usr"]:
            die(f"the layer would hold {', '.join(sorted(os.listdir(stage)))}: only usr/ is allowed")
        for root, directories, files in os.walk(stage):
            for entry in directories + files:
                os.utime(os.path.join(root, entry), (epoch, epoch), follow_symlinks=False)
        os.utime(stage, (epoch, epoch))
        if os.path.exists(image):
            os.remove(image)
        subprocess.run(["mksquashfs", stage, image, "-comp", "zstd", "-Xcompression-level", "19", "-all-root", "-noappend",
                        "-quiet", "-no-progress"], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, SOURCE_DATE_EPOCH=str(epoch)))
    subprocess.run([spirit, "layer", "manifest", "--image", image, "--key", key, "--version", version, "--bases", " ".join(bases),
                    "--build-time", str(epoch), "--out", os.path.join(out, f"{name}.json")], check=True)
    size = os.path.getsize(image)
    print(f"mklayer: {image}: {size:,} bytes ({size / 1048576:.1f} MiB; {raw / 1048576:.1f} MiB of files, {len(wanted)} paths), "
          f"version {version}, fits {' '.join(bases)}")


if __name__ == "__main__":
    main()
