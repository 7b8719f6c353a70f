#!/usr/bin/env bash
# Builds the folder an HTTP server serves for a network boot: the media
# files of ARCHITECTURE.md (kernel, initramfs.zst, rootfs.squashfs,
# manifest.json) and the design's iPXE script (5.1), boot.ipxe, which fetches
# the kernel and initramfs from SERVER and boots them with crom.mode=http
# crom.http=SERVER, so that the HTTP source fetches the image from there too.
#
#   scripts/mknetboot.sh KERNEL INITRAMFS ROOTFS MANIFEST SERVER OUTPUT_DIR
#
# SERVER is the base URL the folder is served at (http://host:port/path/).
# NETBOOT_LAYERS="out/layers/vm.squashfs …" puts those layers (each with its
# signed NAME.json) in layers/ with the index the HTTP source reads.
# iPXE runs boot.ipxe from TFTP, HTTP or a USB stick: `chain SERVER/boot.ipxe`.
# NETBOOT_SPIRIT and NETBOOT_KEY (the spirit binary and the signing key)
# add release.json, which makes the folder a release `spirit upgrade
# --from SERVER` writes to a stick's other slot.
set -euo pipefail

kernel=$1 initramfs=$2 rootfs=$3 manifest=$4 server=$5 output=$6
die() { echo "netboot: $*" >&2; exit 1; }
for input in "$kernel" "$initramfs" "$rootfs" "$manifest"; do
    [[ -r $input ]] || die "no $input (make initramfs rootfs builds them)"
done
[[ $server =~ ^https?://[^/[:space:]]+(/[^[:space:]]*)?$ ]] \
    || die "SERVER=$server is not an http:// or https:// URL (make netboot SERVER=http://host:port/)"
[[ $server == */ ]] || server=$server/
: "${SOURCE_DATE_EPOCH:=0}"

rm -rf "$output.tmp"
mkdir -p "$output.tmp"
cp "$kernel" "$output.tmp/kernel"
cp "$initramfs" "$output.tmp/initramfs.zst"
cp "$rootfs" "$output.tmp/rootfs.squashfs"
cp "$manifest" "$output.tmp/manifest.json"
source "$(dirname "$0")/media-layers.sh"
# shellcheck disable=SC2086 # a list of paths
copy_layers "$output.tmp" ${NETBOOT_LAYERS:-} > /dev/null || die "unable to put the layers in the folder"
cat > "$output.tmp/boot.ipxe" <<IPXE
#!ipxe
# Crom-OS Spirit Network Boot (made by scripts/mknetboot.sh)

set spirit-server $server
set kernel-url \${spirit-server}kernel
set initrd-url \${spirit-server}initramfs.zst

echo Crom-OS Spirit Network Boot
echo ============================

dhcp || goto fallback
route

echo Downloading kernel...
kernel \${kernel-url} initrd=initramfs.zst console=tty0 console=ttyS0,115200 quiet crom.mode=http crom.http=\${spirit-server} || goto fallback

echo Downloading initramfs...
initrd \${initrd-url} || goto fallback

echo Booting Spirit...
boot || goto fallback

:fallback
echo Boot failed. Entering the iPXE shell.
shell
IPXE
if [[ -n ${NETBOOT_SPIRIT:-} ]]; then
    "$NETBOOT_SPIRIT" image release "$output.tmp" --key "$NETBOOT_KEY" >/dev/null || die "unable to sign the release"
fi
find "$output.tmp" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -rf "$output"
mv "$output.tmp" "$output"
echo "netboot: $output for $server: $(ls "$output" | tr '\n' ' ')($(du -sm "$output" | cut -f1) MB)"
