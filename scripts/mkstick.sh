#!/usr/bin/env bash
# Builds a disk image for a USB stick (dd it to the stick) that Spirit can
# upgrade in place: two slots, a/ and b/, each a whole release (kernel,
# initramfs, image, manifest, layers, signed release.json), and GRUB, which
# boots the good slot or, once, the slot `spirit upgrade` armed (GRUB's
# environment block, /boot/grub/grubenv). Slot a holds this build; b is
# empty until the first upgrade.
#
#   scripts/mkstick.sh SPIRIT KEY KERNEL INITRAMFS ROOTFS MANIFEST OUTPUT
#
# STICK_LAYERS="out/layers/vm.squashfs …" puts layers in a/layers/.
# STICK_MB sets the filesystem's size (default: room for two slots and
# 64 MiB; a larger stick keeps the rest unused until resized by hand).
#
# Layout, made without mounting anything (no loop device, no root needed):
#   MBR: GRUB's boot.img; sectors 1…2047: GRUB's core.img (BIOS);
#   partition 1 (FAT, type EF): EFI/BOOT/BOOTX64.EFI, GRUB for UEFI;
#   partition 2 (ext4, CROM_SPIRIT): /boot/grub (grub.cfg, grubenv, the
#   modules of both GRUBs), a/, b/, the persistence archive and upgrades.log.
# Both GRUBs find the ext4 partition by its label and read the same
# grub.cfg and grubenv: GRUB's save_env writes ext4 in place.
set -euo pipefail

spirit=$1 key=$2 kernel=$3 initramfs=$4 rootfs=$5 manifest=$6 output=$7
: "${SOURCE_DATE_EPOCH:=0}"
die() { echo "stick: $*" >&2; exit 1; }
for input in "$spirit" "$key" "$kernel" "$initramfs" "$rootfs" "$manifest"; do
    [[ -r $input ]] || die "no $input"
done
for tool in grub-mkimage mkfs.ext4 mkfs.vfat mcopy mmd sfdisk; do
    command -v "$tool" >/dev/null || die "unable to build the stick: '$tool' is missing (scripts/deps.sh installs it)"
done
[[ -d /usr/lib/grub/i386-pc ]] || die "no BIOS GRUB (apt-get install grub-pc-bin)"
[[ -d /usr/lib/grub/x86_64-efi ]] || die "no UEFI GRUB (apt-get install grub-efi-amd64-bin)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022
root=$work/root
slot=$root/a
mkdir -p "$slot" "$root/boot/grub"
cp "$kernel" "$slot/kernel"
cp "$initramfs" "$slot/initramfs.zst"
cp "$rootfs" "$slot/$(basename "$rootfs")"
cp "$manifest" "$slot/manifest.json"
source "$(dirname "$0")/media-layers.sh"
# shellcheck disable=SC2086 # a list of paths
copy_layers "$slot" ${STICK_LAYERS:-} >/dev/null || die "unable to put the layers on the stick"
"$spirit" image release "$slot" --key "$key" >/dev/null
for platform in i386-pc x86_64-efi; do
    mkdir -p "$root/boot/grub/$platform"
    cp /usr/lib/grub/$platform/*.mod /usr/lib/grub/$platform/*.lst "$root/boot/grub/$platform/"
done

# GRUB's environment: slot a is the good one.
{ printf '# GRUB Environment Block\nslot_good=a\n'; } > "$work/env"
head -c 1024 < <(cat "$work/env" <(yes '#' | tr -d '\n')) > "$root/boot/grub/grubenv"

# The menu. An armed slot is booted once: GRUB clears slot_try and records
# slot_trying with save_env before it loads the kernel, so every boot after
# this one is back on slot_good unless Spirit marks the try good (the
# upgrade service). If save_env fails, the try is not made at all: a slot
# that cannot be disarmed must never be booted. panic=10: a kernel that
# panics on a try restarts the machine, which then boots the good slot.
console="console=tty0 console=ttyS0,115200"
cat > "$root/boot/grub/grub.cfg" <<GRUB
# Crom-OS Spirit stick (made by scripts/mkstick.sh)
serial --unit=0 --speed=115200
terminal_input console serial
if [ "\$grub_platform" = pc ]; then
    terminal_output vga_text serial
else
    terminal_output console serial
fi
set slot_good=a
set slot_try=
load_env
set slot=\$slot_good
if [ -n "\$slot_try" ]; then
    set slot_trying=\$slot_try
    set slot_try=
    if save_env slot_try slot_trying; then
        set slot=\$slot_trying
        echo "spirit: trying slot \$slot once"
    else
        echo "spirit: unable to record the try of slot \$slot_trying; booting slot \$slot_good"
    fi
fi
set other=b
if [ "\$slot" = b ]; then set other=a; fi
set timeout=3
set default=spirit

menuentry "Spirit (slot \$slot)" --id spirit {
    echo "spirit: loading the kernel and the initramfs of slot \$slot"
    linux /\$slot/kernel $console quiet panic=10 crom.slot=\$slot
    initrd /\$slot/initramfs.zst
}
menuentry "Spirit (slot \$other, by hand)" --id other {
    echo "spirit: loading the kernel and the initramfs of slot \$other"
    linux /\$other/kernel $console quiet panic=10 crom.slot=\$other
    initrd /\$other/initramfs.zst
}
menuentry "Spirit rescue (slot \$slot)" --id rescue {
    linux /\$slot/kernel $console quiet crom.mode=rescue crom.slot=\$slot
    initrd /\$slot/initramfs.zst
}
GRUB
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# Both GRUBs start from a built-in config that finds the ext4 by its label.
cat > "$work/early.cfg" <<'GRUB'
search --no-floppy --label --set=root CROM_SPIRIT
set prefix=($root)/boot/grub
GRUB
grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/early.cfg" -p /boot/grub \
    biosdisk part_msdos ext2 search search_label configfile normal
grub-mkimage -O x86_64-efi -o "$work/bootx64.efi" -c "$work/early.cfg" -p /boot/grub \
    part_msdos ext2 fat search search_label configfile normal
(( $(stat -c %s "$work/core.img") < 2047 * 512 )) || die "GRUB's core.img does not fit before the first partition"

esp_mb=8
slot_mb=$(( $(du -sm --apparent-size "$slot" | cut -f1) + 1 ))
grub_mb=$(( $(du -sm --apparent-size "$root/boot" | cut -f1) + 1 ))
data_mb=${STICK_MB:-$(( 2 * slot_mb + grub_mb + 64 ))}
(( data_mb >= slot_mb + grub_mb + 16 )) || die "STICK_MB=$data_mb is too small for a slot of $slot_mb MiB"

mkfs.vfat -C -n CROM_EFI -i 5350524e "$work/esp.img" $((esp_mb * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
truncate -s "${data_mb}M" "$work/data.img"
uuid=$(printf '%08x-0000-4000-8000-%012x' "$SOURCE_DATE_EPOCH" "$SOURCE_DATE_EPOCH")
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L CROM_SPIRIT -U "$uuid" -E root_owner=0:0,hash_seed="$uuid" -d "$root" "$work/data.img"

mkdir -p "$(dirname "$output")"
rm -f "$output.tmp"
truncate -s $(( 1 + esp_mb + data_mb ))M "$output.tmp"
printf 'label: dos\nlabel-id: 0x5350524e\nstart=1MiB, size=%dMiB, type=ef\nstart=%dMiB, type=83, bootable\n' \
    "$esp_mb" $(( 1 + esp_mb )) | sfdisk -q "$output.tmp"
dd if="$work/esp.img" of="$output.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/data.img" of="$output.tmp" bs=1M seek=$(( 1 + esp_mb )) conv=notrunc,sparse status=none
# boot.img's code, not its partition table (bytes 440 on); core.img in the
# gap before the first partition, where boot.img looks for it (sector 1).
dd if=/usr/lib/grub/i386-pc/boot.img of="$output.tmp" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$output.tmp" bs=512 seek=1 conv=notrunc status=none
mv "$output.tmp" "$output"
echo "stick: $output: $(( 1 + esp_mb + data_mb )) MiB (slot a: $slot_mb MiB, version $(sed -n "s/.*\"version\": \"\(.*\)\".*/\1/p" "$manifest")); dd it to a USB stick"
