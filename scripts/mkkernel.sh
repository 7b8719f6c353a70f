#!/usr/bin/env bash
# Builds Spirit's kernel: x86_64_defconfig + kernel-config/ merged with the
# kernel's own merge_config.sh, checked (scripts/kernel-config-check.sh),
# then bzImage and the modules. Built once per source + fragment: the result
# is cached under CACHE/<hash>/ and reused.
#
#   scripts/mkkernel.sh KERNEL_SRC FRAGMENT CACHE OUTPUT
#
# KERNEL_SRC is a tarball (linux-6.6.tar.xz, Debian's
# /usr/src/linux-source-6.12.tar.xz) or an unpacked, unconfigured tree.
# OUTPUT gets the bzImage; CACHE/current is a KERNEL_DIR for the rest of
# the build (vmlinuz, release, lib/modules/<release>/), like the one
# scripts/debian-kernel.sh makes. The full build log is CACHE/<hash>/build.log.
set -euo pipefail

source_path=$1 fragment=$2 cache=$3 output=$4
here=$(cd "$(dirname "$0")/.." && pwd)
# Absolute paths: make runs in the source tree (-C), where a relative O=
# would name another directory than the one this script reads.
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
[[ -r $fragment ]] && fragment=$(cd "$(dirname "$fragment")" && pwd)/$(basename "$fragment")
jobs=${KERNEL_JOBS:-$(nproc)}
die() { echo "kernel: $*" >&2; exit 1; }
[[ -r $fragment ]] || die "no config fragment at $fragment"
[[ -e $source_path ]] || die "no kernel source at $source_path (a tarball or a tree; Debian: apt-get install linux-source-6.12)"
for tool in make gcc bc flex bison perl; do
    command -v "$tool" >/dev/null || die "unable to build a kernel: '$tool' is missing (scripts/deps.sh kernel installs it)"
done
[[ -e /usr/include/libelf.h ]] || die "unable to build a kernel: libelf.h is missing (apt-get install libelf-dev)"
[[ -e /usr/include/openssl/ssl.h ]] || die "unable to build a kernel: openssl headers are missing (apt-get install libssl-dev)"

# The cache key: the source (the tarball's bytes, or a tree's file list with
# sizes and mtimes, which is cheap) and the fragment.
if [[ -f $source_path ]]; then
    source_hash=$(sha256sum "$source_path" | cut -d' ' -f1)
else
    source_hash=$(cd "$source_path" && find . -type f -printf '%P %s %T@\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1)
fi
key=$(printf '%s\n%s\n' "$source_hash" "$(sha256sum < "$fragment")" | sha256sum | cut -c1-16)
work=$cache/$key
dist=$work/dist

if [[ -r $dist/release ]]; then
    echo "kernel: cached $(cat "$dist/release") in $work (source + fragment unchanged)"
else
    mkdir -p "$work"
    log=$work/build.log
    : > "$log"
    if [[ -f $source_path ]]; then
        tree=$work/src
        if [[ ! -e $tree/Makefile ]]; then
            echo "kernel: unpacking $source_path"
            rm -rf "$tree" "$tree.tmp" && mkdir -p "$tree.tmp"
            tar -xf "$source_path" -C "$tree.tmp" --strip-components=1
            mv "$tree.tmp" "$tree"
        fi
    else
        tree=$(cd "$source_path" && pwd)
    fi
    [[ -e $tree/scripts/kconfig/merge_config.sh ]] || die "$source_path is not a kernel source (no scripts/kconfig/merge_config.sh)"
    build=$work/build
    mkdir -p "$build"
    kmake() { make -C "$tree" O="$build" KBUILD_BUILD_USER=spirit KBUILD_BUILD_HOST=crom \
        KBUILD_BUILD_TIMESTAMP="@${SOURCE_DATE_EPOCH:-0}" "$@"; }

    echo "kernel: configuring $(kmake -s kernelversion 2>/dev/null) (x86_64_defconfig + $fragment)"
    kmake -s x86_64_defconfig >> "$log" 2>&1
    "$tree/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$fragment" >> "$log" 2>&1 \
        || die "merge_config.sh failed (see $log)"
    kmake -s olddefconfig >> "$log" 2>&1
    "$here/scripts/kernel-config-check.sh" "$fragment" "$build/.config" "$tree"
    if [[ ${KERNEL_CONFIG_ONLY:-0} == 1 ]]; then
        echo "kernel: configured and checked: $build/.config (KERNEL_CONFIG_ONLY=1: not built)"
        exit 0
    fi

    # Progress: one line every 30 s with the steps done (and of how many,
    # from the last build), the time so far and the step being built.
    total=$(cat "$cache/steps" 2>/dev/null || echo "")
    echo "kernel: building bzImage and modules with $jobs jobs (log: $log)"
    start=$SECONDS steps=0 shown=$SECONDS
    while IFS= read -r line; do
        echo "$line" >> "$log"
        [[ $line == "  "[A-Z]* ]] || continue
        steps=$((steps + 1))
        if ((SECONDS - shown >= 30)); then
            shown=$SECONDS
            echo "kernel: ${steps}${total:+/$total} steps, $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s, ${line##* }"
        fi
    done < <(kmake -j"$jobs" bzImage modules 2>&1; echo "  EXIT    $?")
    status=$(tail -n 1 "$log" | awk '{print $2}')
    [[ $status == 0 ]] || die "the build failed (exit $status); the end of $log:
$(tail -n 30 "$log")"
    echo "$steps" > "$cache/steps"
    echo "kernel: built in $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"

    release=$(kmake -s kernelrelease)
    rm -rf "$work/dist.new"
    mkdir -p "$work/dist.new"
    kmake -s INSTALL_MOD_PATH="$work/dist.new" INSTALL_MOD_STRIP=1 modules_install >> "$log" 2>&1
    rm -f "$work/dist.new/lib/modules/$release/build" "$work/dist.new/lib/modules/$release/source"
    depmod -b "$work/dist.new" "$release"
    cp "$build/arch/x86/boot/bzImage" "$work/dist.new/vmlinuz"
    cp "$build/.config" "$work/dist.new/config"
    echo "$release" > "$work/dist.new/release"
    rm -rf "$dist"
    mv "$work/dist.new" "$dist"
fi

ln -sfn "$key/dist" "$cache/current"
mkdir -p "$(dirname "$output")"
cp "$dist/vmlinuz" "$output"
echo "kernel: $output: $(du -h --apparent-size "$output" | cut -f1), $(cat "$dist/release"); KERNEL_DIR=$cache/current"
