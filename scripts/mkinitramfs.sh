#!/usr/bin/env bash
# Builds Spirit's initramfs: a cpio (newc) archive compressed with zstd, with
# /init (Spirit's PID 1), the boot binary as /bin/spirit, busybox and its
# applet links, and the target kernel's boot modules closed over their
# dependencies.
# Reproducible: sorted entries, owner 0:0, every mtime SOURCE_DATE_EPOCH.
#
#   scripts/mkinitramfs.sh SPIRIT_BINARY KERNEL_DIR MODULE_LIST PUBLIC_KEY OUTPUT
#
# SPIRIT_BINARY is the /bin/spirit of stage 1: out/spirit-boot (make spirit),
# the stage-1 commands without stage 2's daemons, which stay in the system
# image's full spirit; the full binary works too, only bigger. It also runs
# here (version, image check-version, modules plan and index).
# PUBLIC_KEY is the Ed25519 key (hex) every image's manifest must be signed
# with; it is baked in as /etc/spirit/signing.pub.
# MIN_VERSION (environment) is the lowest image version the initramfs boots
# (anti-rollback), baked in as /etc/spirit/minimum-version: empty (the
# default) for the spirit binary's own version, `none` for no minimum. A
# value that is not a version stops the build: the boot would refuse every
# image over it.
# EXTRA_CA (environment) names a PEM file of CA certificates appended to
# the bundle HTTPS trusts (Debian's ca-certificates, at
# /etc/ssl/certs/ca-certificates.crt): a private mirror's CA, or the test
# CA of the HTTPS VM test.
# KERNEL_DIR holds `release` and lib/modules/<release>/ (scripts/debian-kernel.sh
# makes one; `make kernel` another).
set -euo pipefail

spirit=$1 kernel_dir=$2 module_list=$3 public_key=$4 output=$5
here=$(cd "$(dirname "$0")/.." && pwd)
: "${SOURCE_DATE_EPOCH:=0}"
busybox=${BUSYBOX:-/bin/busybox}

# PID 1, spirit-init (Sources/SpiritPID1), is built beside spirit.
init=${SPIRIT_INIT:-$(dirname "$spirit")/spirit-init}

die() { echo "mkinitramfs: $*" >&2; exit 1; }
[[ -x $spirit ]] || die "no spirit boot binary at $spirit (run 'make spirit')"
[[ -x $init ]] || die "no spirit-init binary at $init (run 'make spirit')"
[[ -r $kernel_dir/release ]] || die "no kernel at $kernel_dir: it needs a 'release' file and lib/modules/<release>/"
[[ -x $busybox ]] || die "no static busybox at $busybox (apt-get install busybox-static)"
file -L "$busybox" | grep -q "statically linked" || die "$busybox is not statically linked (apt-get install busybox-static)"
[[ $(id -u) -eq 0 ]] || die "must run as root: the archive needs the /dev/console device node"
[[ -r $public_key ]] || die "no public key at $public_key (make keys)"
release=$(cat "$kernel_dir/release")
modules=$kernel_dir/lib/modules/$release
version=$("$spirit" version | awk '{print $2}')
min_version=${MIN_VERSION:-$version}
if [[ $min_version != none ]]; then
    checked=$("$spirit" image check-version "$min_version" 2>&1) || die "MIN_VERSION=$min_version: ${checked#spirit: error: }"
fi
[[ -r $modules/modules.dep ]] || die "no modules.dep in $modules (run depmod -b $kernel_dir $release)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
umask 022

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/spirit,proc,sys,dev,run,root,tmp,sysroot,lib/modules/"$release"}
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"
# The kernel opens /dev/console for PID 1 before /init runs: without this
# node PID 1 starts with no stdin, stdout or stderr.
mknod -m 600 "$stage/dev/console" c 5 1

install -m 755 "$spirit" "$stage/bin/spirit"
install -m 755 "$init" "$stage/init"

install -m 755 "$busybox" "$stage/bin/busybox"
while read -r applet; do
    [[ -e $stage/$applet || -L $stage/$applet ]] || ln -s /bin/busybox "$stage/$applet"
done < <("$busybox" --list-full)

# ext4 for the zram upper layer: busybox's mke2fs makes only ext2.
source "$here/scripts/copy-exec.sh"
copy_exec /sbin/mke2fs "$stage" /sbin/mke2fs
install -m 644 "$public_key" "$stage/etc/spirit/signing.pub"
if [[ $min_version != none ]]; then
    printf '%s\n' "$min_version" > "$stage/etc/spirit/minimum-version"
fi
# The CA bundle the HTTP source checks https:// servers against.
source "$here/scripts/ca-bundle.sh"
install_ca_bundle "$stage"
# DHCP for the HTTP source: busybox's udhcpc runs this script on a lease.
install -m 755 "$here/scripts/udhcpc.script" "$stage/etc/spirit/udhcpc.script"
# NTFS for the parasite source where the kernel has no ntfs3 (Debian 12's
# 6.1): ntfs-3g over FUSE, read-only. Found by the source at /bin/ntfs-3g.
ntfs3g=$(command -v ntfs-3g || true)
if [[ -n $ntfs3g ]]; then
    copy_exec "$ntfs3g" "$stage" /bin/ntfs-3g
else
    echo "mkinitramfs: no ntfs-3g (apt-get install ntfs-3g): the parasite source will need the kernel's ntfs3" >&2
fi
# The rescue tools: links to the multi-call binary, dispatched on argv[0].
source "$here/scripts/rescue-tools.sh"
link_rescue_tools "$stage"
# KMOD=1 adds kmod's modprobe at /usr/local/sbin/modprobe: the peer the
# module benchmark measures Spirit's loader against. Not in normal builds.
if [[ ${KMOD:-0} == 1 ]]; then
    copy_exec /bin/kmod "$stage" /usr/local/sbin/kmod
    ln -s kmod "$stage/usr/local/sbin/modprobe"
fi
# SPIRIT_BASELINE names an older spirit binary, put in as /bin/spirit.baseline (a
# spirit-* name would be a rescue tool):
# the module benchmark's "before" (make bench-modules). Not in normal builds.
if [[ -n ${SPIRIT_BASELINE:-} ]]; then
    install -m 755 "$SPIRIT_BASELINE" "$stage/bin/spirit.baseline"
fi

# The boot modules, the hardware drivers and the priority list, and all
# they need, as Spirit's own planner resolves them for the target kernel
# (the same resolver as at boot); depmod then indexes just this set.
lists_dir=$(dirname "$module_list")
mkdir -p "$stage/etc/modprobe.d"
# Of the priority list's virtualization group, stage 1 needs vfio-pci alone
# (with crom.gpu=passthrough it must claim the GPU before a graphics driver
# can); kvm (3.7 MB of modules) loads in stage 2, from the image.
names=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$module_list" "$lists_dir/modules.mount" "$lists_dir/modules.hardware" \
        "$lists_dir/modules-load.d/spirit.conf" \
        | grep -v -E '^kvm(_[a-z]+)?$')
# The boot list keeps only what this kernel has (the build warns of the rest).
for name in $(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$module_list"); do
    if "$spirit" modules plan --root "$kernel_dir" --kernel "$release" --config "$stage/etc/modprobe.d" --files "$name" >/dev/null 2>&1; then
        echo "$name" >> "$stage/etc/spirit/modules.boot"
    fi
done
install -D -m 644 "$lists_dir/modules-load.d/spirit.conf" "$stage/etc/modules-load.d/spirit.conf"
# What the boot loads when a mount needs it (listed for `spirit-diag` and the bench).
sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$lists_dir/modules.mount" > "$stage/etc/spirit/modules.mount"
# A module the kernel lacks is a warning (the plan exits 1 and names it).
plan_warnings=$stage/.plan-warnings
# shellcheck disable=SC2086
files=$("$spirit" modules plan --root "$kernel_dir" --kernel "$release" --config "$stage/etc/modprobe.d" --files $names \
        2>"$plan_warnings") || [[ $? -eq 1 ]] || die "spirit modules plan failed: $(cat "$plan_warnings")"
sed 's/^spirit: /mkinitramfs: /' "$plan_warnings" >&2
rm -f "$plan_warnings"
count=0
for relative in $files; do
    install -D -m 644 "$modules/$relative" "$stage/lib/modules/$release/$relative"
    count=$((count + 1))
done
for index in modules.builtin modules.builtin.modinfo modules.order; do
    [[ -e $modules/$index ]] && install -m 644 "$modules/$index" "$stage/lib/modules/$release/$index"
done
depmod -b "$stage" "$release"
# The binary index the loader reads at boot instead of parsing depmod's
# text files (modules.spirit; the text files stay, for kmod and old spirits).
"$spirit" modules index "$stage/lib/modules/$release"

cat > "$stage/etc/os-release" <<OS
NAME="Crom-OS Spirit"
ID=crom-spirit
PRETTY_NAME="Crom-OS Spirit (initramfs)"
VERSION_ID=$version
OS

find "$stage" -mindepth 1 -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$(dirname "$output")"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --reproducible --owner=0:0 --quiet) \
    | zstd -q -19 -T1 > "$output.tmp"
mv "$output.tmp" "$output"
echo "mkinitramfs: $output: $(du -h --apparent-size "$output" | cut -f1), kernel $release, $count module files," \
    "minimum image version ${min_version}"
