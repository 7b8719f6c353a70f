#!/usr/bin/env bash
# Builds Spirit's hybrid ISO with grub-mkrescue: BIOS and UEFI El Torito for
# a CD, MBR + GPT so that `dd` to a USB stick boots too. Volume label
# CROM_SPIRIT (what the USB seed source looks for); at the root, the media
# files of ARCHITECTURE.md: kernel, initramfs.zst, rootfs.squashfs,
# manifest.json, and bootx64.efi for parasite installs. GRUB shows its menu
# on the screen and on the serial port, each line once.
#
#   scripts/mkiso.sh KERNEL INITRAMFS ROOTFS MANIFEST OUTPUT
#
# ISO_LAYERS="out/layers/vm.squashfs …" puts those layers (each with its
# signed NAME.json beside it, from make layer) in layers/ with an index.
#
# Reproducible: the same inputs and SOURCE_DATE_EPOCH give the same bytes.
# xorriso honours SOURCE_DATE_EPOCH only in part when grub-mkrescue drives
# it, so the volume dates, the volume UUID (and the GPT GUIDs made from it)
# and every file date are set after `--` (xorriso's native commands); mtools
# dates the EFI image's FAT entries from SOURCE_DATE_EPOCH, and a wrapper
# gives mformat a fixed serial number instead of a random one.
set -euo pipefail

kernel=$1 initramfs=$2 rootfs=$3 manifest=$4 output=$5
: "${SOURCE_DATE_EPOCH:=0}"
export SOURCE_DATE_EPOCH
label=${ISO_LABEL:-CROM_SPIRIT}
die() { echo "iso: $*" >&2; exit 1; }
for input in "$kernel" "$initramfs" "$rootfs" "$manifest"; do
    [[ -r $input ]] || die "no $input (make initramfs rootfs builds them)"
done
for tool in grub-mkrescue grub-mkimage xorriso mformat mcopy; do
    command -v "$tool" >/dev/null || die "unable to build the ISO: '$tool' is missing (scripts/deps.sh installs it)"
done
[[ -d /usr/lib/grub/i386-pc ]] || die "unable to build the ISO: no BIOS GRUB (apt-get install grub-pc-bin)"
[[ -d /usr/lib/grub/x86_64-efi ]] || die "unable to build the ISO: no UEFI GRUB (apt-get install grub-efi-amd64-bin)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022
root=$work/root
mkdir -p "$root/boot/grub" "$work/bin"
cp "$kernel" "$root/kernel"
cp "$initramfs" "$root/initramfs.zst"
cp "$rootfs" "$root/rootfs.squashfs"
cp "$manifest" "$root/manifest.json"
source "$(dirname "$0")/media-layers.sh"
# shellcheck disable=SC2086 # a list of paths
layer_bytes=$(copy_layers "$root" ${ISO_LAYERS:-}) || die "unable to put the layers on the ISO"

# The kernel line of every entry: the console on the screen and on the
# serial port (the last console= is /dev/console, where spirit: lines go).
console="console=tty0 console=ttyS0,115200"
cat > "$root/boot/grub/grub.cfg" <<GRUB
# Crom-OS Spirit (made by scripts/mkiso.sh)
serial --unit=0 --speed=115200
terminal_input console serial
# A BIOS's screen through vga_text, which writes to video memory, not
# through the BIOS's int 10h (console): SeaBIOS copies int 10h output to the
# serial port when QEMU has no display (-nographic), so with console every
# line came twice on the serial console, the copy redrawn and cut mid-word.
if [ "\$grub_platform" = pc ]; then
    terminal_output vga_text serial
else
    terminal_output console serial
fi
set timeout=5
set default=spirit

menuentry "Spirit" --id spirit {
    echo "spirit: loading the kernel and the initramfs"
    linux /kernel $console quiet
    initrd /initramfs.zst
}
menuentry "Spirit (debug)" --id debug {
    echo "spirit: loading the kernel and the initramfs (debug)"
    linux /kernel $console crom.debug=1
    initrd /initramfs.zst
}
menuentry "Spirit rescue" --id rescue {
    echo "spirit: loading the kernel and the initramfs (rescue)"
    linux /kernel $console quiet crom.mode=rescue
    initrd /initramfs.zst
}
menuentry "Spirit from the network (HTTP)" --id http {
    echo "spirit: loading the kernel and the initramfs (HTTP)"
    linux /kernel $console quiet crom.mode=http
    initrd /initramfs.zst
}
menuentry "Spirit from the network (Nodus peers)" --id nodus {
    echo "spirit: loading the kernel and the initramfs (Nodus)"
    linux /kernel $console quiet crom.mode=nodus
    initrd /initramfs.zst
}
GRUB

# bootx64.efi: a GRUB for UEFI that reads NTFS and boots a parasite install
# (C:\CromSpirit\, see `spirit install parasite`, which copies it there for
# the Windows Boot Manager entry). Its config is built in, so it is one
# file; the kernel line is the one of the install's GRUB entry
# (ParasiteEntries.kernelArguments in Sources/SpiritCommands/InstallCommand.swift).
cat > "$work/parasite.cfg" <<'GRUB'
search --no-floppy --file --set=root /CromSpirit/kernel
echo "Loading Crom-OS Spirit..."
linux /CromSpirit/kernel crom.mode=parasite crom.nodus=auto quiet
initrd /CromSpirit/initramfs.zst
boot
GRUB
grub-mkimage -O x86_64-efi -p /CromSpirit -c "$work/parasite.cfg" -o "$root/bootx64.efi" \
    part_gpt part_msdos ntfs fat search search_fs_file linux echo boot

printf '#!/bin/sh\n# a fixed FAT serial number for the EFI image, not a random one\nexec %s -N 5350524e "$@"\n' \
    "$(command -v mformat)" > "$work/bin/mformat"
chmod 755 "$work/bin/mformat"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

uuid=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S00)
mkdir -p "$(dirname "$output")"
rm -f "$output.tmp"
PATH=$work/bin:$PATH grub-mkrescue --output="$output.tmp" --compress=xz --fonts= --locales= --themes= "$root" -- \
    -volid "$label" \
    -volume_date uuid "$uuid" -volume_date c "=$SOURCE_DATE_EPOCH" -volume_date m "=$SOURCE_DATE_EPOCH" \
    -volume_date x default -volume_date f default \
    -volume_date all_file_dates "=$SOURCE_DATE_EPOCH" -iso_nowtime "=$SOURCE_DATE_EPOCH" \
    -boot_image any gpt_disk_guid=volume_date_uuid \
    > "$work/log" 2>&1 || die "grub-mkrescue failed:
$(cat "$work/log")"
mv "$output.tmp" "$output"
size=$(stat -c %s "$output")
echo "iso: $output: $((size / 1048576)) MiB ($size bytes), sha256 $(sha256sum "$output" | cut -d' ' -f1)"
if [[ -n ${ISO_LAYERS:-} ]]; then
    echo "iso:   with the layers $(cat "$root/layers/index" | tr '\n' ' ')($((layer_bytes / 1048576)) MiB); about $(((size - layer_bytes) / 1048576)) MiB without them"
fi
