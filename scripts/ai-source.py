#!/usr/bin/env python3
"""Prints the path of one pinned file of ai/sources.lock in the download
cache, fetching the lock's files with pip first if that file is missing or
does not match its pinned sha256.

    scripts/ai-source.py NAME [LOCK]     # e.g. llama-cpp-python

The cache is $SPIRIT_CACHE/pypi (default ~/.cache/crom-spirit/pypi), outside
the clone, so a fresh clone on the same machine downloads nothing. A file in
the cache is used only if its sha256 is the lock's: pip is then not run at
all (it would ask the index again even for a file it already has).
"""
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path


def parse_lock(text):
    """The lock's requirements as {name: (version, [sha256, ...])}."""
    pins = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", line)
        if not match:
            raise ValueError(f"not a pinned requirement: {line!r}")
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        if not hashes:
            raise ValueError(f"{match.group(1)} has no --hash=sha256:")
        pins[normalize(match.group(1))] = (match.group(2), hashes)
    return pins


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find(directory, name, version, hashes):
    """The cached file of NAME==VERSION whose sha256 is pinned, or None."""
    prefix = f"{name.replace('-', '_')}-{version}"
    if not directory.is_dir():
        return None
    for path in sorted(directory.iterdir()):
        if path.name.lower().startswith(prefix.lower()) and sha256(path) in hashes:
            return path
    return None


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: ai-source.py NAME [LOCK]")
    name = normalize(sys.argv[1])
    lock = Path(sys.argv[2] if len(sys.argv) == 3 else Path(__file__).parent.parent / "ai/sources.lock")
    pins = parse_lock(lock.read_text())
    if name not in pins:
        sys.exit(f"ai-source: {name} is not pinned in {lock}")
    version, hashes = pins[name]
    cache = Path(os.environ.get("SPIRIT_CACHE") or Path.home() / ".cache/crom-spirit") / "pypi"
    path = find(cache, name, version, hashes)
    if path is None:
        print(f"ai-source: downloading the pins of {lock} into {cache}", file=sys.stderr)
        cache.mkdir(parents=True, exist_ok=True)
        # Never --no-binary :all: here: it applies to the build requirements
        # too, and pip then builds cmake from source to read the metadata.
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                        "-d", str(cache), "-r", str(lock)], check=True, stdout=sys.stderr)
        path = find(cache, name, version, hashes)
        if path is None:
            sys.exit(f"ai-source: pip gave no file of {name}=={version} with the pinned sha256 in {cache}")
    print(path)


if __name__ == "__main__":
    main()
