#!/usr/bin/env bash
# Fetches Debian's stock kernel (linux-image-amd64) for the VM tests, without
# installing it on this machine: the package is unpacked into a cache and
# depmod is run there. Prints the cache directory, which holds `vmlinuz`,
# `release` and lib/modules/<release>/.
#
#   scripts/debian-kernel.sh [CACHE_DIR]
set -euo pipefail

cache=${1:-.cache/debian-kernel}
mkdir -p "$cache"

if [[ -z ${DEBIAN_KERNEL_PACKAGE:-} ]]; then
    # Reuse what is cached; ask apt only for the first download.
    if [[ -e $cache/current/release ]]; then
        echo "$cache/current"
        exit 0
    fi
    if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
        apt-get update -qq >&2
    fi
    DEBIAN_KERNEL_PACKAGE=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
fi
[[ -n $DEBIAN_KERNEL_PACKAGE ]] || { echo "debian-kernel: unable to find which package linux-image-amd64 depends on" >&2; exit 1; }

target=$cache/$DEBIAN_KERNEL_PACKAGE
if [[ ! -e $target/release ]]; then
    echo "debian-kernel: fetching $DEBIAN_KERNEL_PACKAGE" >&2
    work=$(mktemp -d "$cache/.fetch.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download -q "$DEBIAN_KERNEL_PACKAGE" >&2) \
        || { echo "debian-kernel: unable to download $DEBIAN_KERNEL_PACKAGE with apt-get" >&2; exit 1; }
    dpkg-deb -x "$work"/*.deb "$work/root"
    release=$(ls "$work/root/lib/modules")
    depmod -b "$work/root" "$release"
    mkdir -p "$work/out"
    cp "$work/root/boot/vmlinuz-$release" "$work/out/vmlinuz"
    mkdir -p "$work/out/lib"
    mv "$work/root/lib/modules" "$work/out/lib/modules"
    echo "$release" > "$work/out/release"
    rm -rf "$target"
    mv "$work/out" "$target"
fi
ln -sfn "$DEBIAN_KERNEL_PACKAGE" "$cache/current"
echo "$cache/current"
