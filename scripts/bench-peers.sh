#!/usr/bin/env bash
# The peers of Spirit's initramfs stage in `make bench`, built once per
# kernel release and cached:
#   OUT_DIR/<release>/initramfs-tools.img   Debian's mkinitramfs (MODULES=most, the default)
#   OUT_DIR/<release>/dracut.img            dracut --no-hostonly, with systemd in the initramfs
#   OUT_DIR/<release>/tiny-initramfs.img    mktirfs with the modules a virtio ext4 root needs
#   OUT_DIR/<release>/root.img              an ext4 root disk whose /sbin/init is bench/probe.c
#   OUT_DIR/<release>/versions.txt          the packages that made them
#
#   scripts/bench-peers.sh KERNEL_DIR OUT_DIR
#
# initramfs-tools, dracut and tiny-initramfs conflict with each other as
# Debian packages, and each reads /lib/modules/<release>, where the bench's
# kernel (KERNEL_DIR, Debian's, not installed here) is not. So they are not
# installed on this machine: one throwaway Debian chroot (mmdebstrap, format
# null: deleted at the end) gets their -core packages (which do not
# conflict), systemd and udev as on any Debian system, the kernel's modules
# copied into its /lib/modules, and runs the three tools; only the images
# come out.
set -euo pipefail

kernel_dir=${1:?usage: bench-peers.sh KERNEL_DIR OUT_DIR}
out_dir=${2:?usage: bench-peers.sh KERNEL_DIR OUT_DIR}
[[ -r $kernel_dir/release ]] || { echo "bench-peers: no kernel in $kernel_dir (no release file)" >&2; exit 1; }
# Absolute paths: mmdebstrap's hooks run them from elsewhere.
kernel_dir=$(cd "$kernel_dir" && pwd)
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
release=$(cat "$kernel_dir/release")
modules=$kernel_dir/lib/modules/$release
[[ -d $modules ]] || { echo "bench-peers: no modules for $release in $modules" >&2; exit 1; }
target=$out_dir/$release
mkdir -p "$target"

# The root disk: the probe as /sbin/init, os-release (systemd's switch-root
# refuses a root that is not an OS tree) and the mount points the
# initramfses move /dev, /proc, /sys and /run onto.
if [[ ! -e $target/root.img || $root/bench/probe.c -nt $target/root.img ]]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/root/sbin" "$work/root/etc" "$work/root/dev" "$work/root/proc" "$work/root/sys" "$work/root/run" "$work/root/tmp"
    gcc -static -O2 -Wall -Wextra -Werror -o "$work/root/sbin/init" "$root/bench/probe.c"
    strip "$work/root/sbin/init"
    printf 'PRETTY_NAME="bench probe root"\nNAME="bench-probe"\nID=bench-probe\n' > "$work/root/etc/os-release"
    truncate -s 16M "$work/root.img"
    mkfs.ext4 -q -L bench-root -d "$work/root" "$work/root.img"
    mv "$work/root.img" "$target/root.img"
    rm -rf "$work"
    trap - EXIT
fi

if [[ -e $target/initramfs-tools.img && -e $target/dracut.img && -e $target/tiny-initramfs.img ]]; then
    exit 0
fi

echo "bench-peers: building initramfs-tools, dracut and tiny-initramfs images for $release in a throwaway chroot" >&2
staging=$(mktemp -d "$target/.build.XXXXXX")
mkdir "$staging/peers"
trap 'rm -rf "$staging"' EXIT
# mkinitramfs reads the kernel's config (/boot/config-<release>) to pick a
# compressor the kernel can unpack; KERNEL_DIR has none, Debian's package
# of that release has it.
config=$kernel_dir/config
if [[ ! -r $config ]]; then
    (cd "$staging" && apt-get download -q "linux-image-$release" >/dev/null 2>&1) \
        || { echo "bench-peers: unable to download linux-image-$release for its /boot/config" >&2; exit 1; }
    dpkg-deb --fsys-tarfile "$staging"/linux-image-*.deb | tar -x -C "$staging" "./boot/config-$release"
    rm "$staging"/linux-image-*.deb
    config=$staging/boot/config-$release
fi
# The tools write the images to /tmp/peers in the chroot; copy-out brings
# them here. Each tool's default configuration except where a chroot has no
# host to detect: dracut is told --no-hostonly (a generic image with every
# storage driver, as a distribution ships it) and mktirfs is given the
# modules of a virtio disk with ext4 instead of guessing the chroot's.
tiny_modules=virtio_pci,virtio_blk,ext4
mmdebstrap --variant=minbase --quiet \
    --include=systemd,systemd-sysv,udev,kmod,busybox,zstd,e2fsprogs,initramfs-tools-core,dracut-core,tiny-initramfs-core \
    --customize-hook="mkdir -p \"\$1/lib/modules/$release\" \"\$1/tmp/peers\" \"\$1/boot\"" \
    --customize-hook="copy-in '$config' /boot" \
    --customize-hook="sync-in '$modules' /lib/modules/$release" \
    --customize-hook="chroot \"\$1\" mkinitramfs -o /tmp/peers/initramfs-tools.img $release" \
    --customize-hook="chroot \"\$1\" dracut --quiet --force --no-hostonly --kver $release /tmp/peers/dracut.img" \
    --customize-hook="chroot \"\$1\" mktirfs -o /tmp/peers/tiny-initramfs.img -m no -M no --include-modules=$tiny_modules $release" \
    --customize-hook="chroot \"\$1\" dpkg-query -W initramfs-tools-core dracut-core tiny-initramfs-core systemd udev busybox > \"\$1/tmp/peers/versions.txt\"" \
    --customize-hook="sync-out /tmp/peers '$staging/peers'" \
    bookworm /dev/null
for name in initramfs-tools dracut tiny-initramfs; do
    [[ -s $staging/peers/$name.img ]] || { echo "bench-peers: $name made no image" >&2; exit 1; }
done
mv "$staging"/peers/*.img "$staging/peers/versions.txt" "$target/"
ls -l "$target" >&2
