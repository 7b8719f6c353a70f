#!/usr/bin/env bash
# Builds the system image: rootfs.squashfs (zstd, reproducible) and its
# signed manifest.json.
#
#   scripts/mkrootfs.sh SPIRIT_BINARY KERNEL_DIR SIGNING_KEY OUTPUT_DIR
#
# BASE=debian (the default) makes the base from Debian's packages here:
# busybox-static and e2fsprogs' mke2fs. BASE=alpine installs Alpine's
# busybox and musl with apk from ALPINE_MIRROR instead; it stops at once if
# the mirror cannot be reached.
set -euo pipefail

spirit=$1 kernel_dir=$2 key=$3 out=$4
: "${SOURCE_DATE_EPOCH:=0}"
base=${BASE:-debian}
here=$(cd "$(dirname "$0")/.." && pwd)

# PID 1, spirit-init (Sources/SpiritPID1), is built beside spirit.
init=${SPIRIT_INIT:-$(dirname "$spirit")/spirit-init}

die() { echo "mkrootfs: $*" >&2; exit 1; }
[[ -x $spirit ]] || die "no spirit binary at $spirit (run 'make spirit')"
[[ -x $init ]] || die "no spirit-init binary at $init (run 'make spirit')"
[[ -r $kernel_dir/release ]] || die "no kernel at $kernel_dir"
[[ -r $key ]] || die "no signing key at $key"
release=$(cat "$kernel_dir/release")
modules=$kernel_dir/lib/modules/$release
version=$("$spirit" version | awk '{print $2}')

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
umask 022
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/spirit,proc,sys,dev,run,root,tmp,home,mnt,var/log,var/tmp,lib/modules/"$release"}
chmod 1777 "$stage/tmp" "$stage/var/tmp"
chmod 0700 "$stage/root"

case $base in
debian)
    source "$here/scripts/copy-exec.sh"
    install -m 755 /bin/busybox "$stage/bin/busybox"
    while read -r applet; do
        [[ -e $stage/$applet || -L $stage/$applet ]] || ln -s /bin/busybox "$stage/$applet"
    done < <(/bin/busybox --list-full)
    copy_exec /sbin/mke2fs "$stage" /sbin/mke2fs
    ;;
alpine)
    mirror=${ALPINE_MIRROR:-https://dl-cdn.alpinelinux.org/alpine}
    command -v curl >/dev/null || die "BASE=alpine needs curl to reach $mirror (apt-get install curl). Nothing was built."
    if ! curl -fsS --max-time 10 -o /dev/null "$mirror/latest-stable/main/x86_64/APKINDEX.tar.gz"; then
        die "BASE=alpine: the Alpine mirror $mirror cannot be reached from this machine; set ALPINE_MIRROR to one that can, or use BASE=debian. Nothing was built."
    fi
    command -v apk >/dev/null || die "BASE=alpine needs apk (apk-tools or apk.static) on PATH. Nothing was built."
    apk --root "$stage" --initdb --allow-untrusted -X "$mirror/latest-stable/main" --no-cache add busybox musl e2fsprogs \
        || die "BASE=alpine: apk could not install the base from $mirror"
    ;;
*)
    die "BASE=$base: expected debian or alpine"
    ;;
esac

# The CA bundle for HTTPS in stage 2 (spirit image fetch, upgrade, ai pull).
source "$here/scripts/ca-bundle.sh"
install_ca_bundle "$stage"
# The key layers added at run time (spirit layer add) must be signed with.
install -D -m 644 "$key.pub" "$stage/etc/spirit/signing.pub"
install -m 755 "$spirit" "$stage/bin/spirit"
install -m 755 "$init" "$stage/sbin/init"
ln -sf spirit "$stage/bin/spiritctl"
# The rescue tools of stage 1 (spirit-diag…), on stage 2's PATH too.
source "$here/scripts/rescue-tools.sh"
link_rescue_tools "$stage"
# The module priority groups, for stage 2's modules service.
install -D -m 644 "$here/initramfs/modules-load.d/spirit.conf" "$stage/etc/modules-load.d/spirit.conf"
# The services the supervisor starts in stage 2.
mkdir -p "$stage/etc/spirit/services"
for service in "$here"/rootfs/services/*.toml; do
    if [[ -e $service ]]; then install -m 644 "$service" "$stage/etc/spirit/services/"; fi
done
# iPXE for the netboot service's PXE clients, from Debian's ipxe package:
# undionly.kpxe (BIOS, 73 KiB) and ipxe.efi (UEFI x64, 831 KiB), at the
# path the package uses (`spirit serve netboot --loaders` names another).
for loader in undionly.kpxe ipxe.efi; do
    [[ -r /usr/lib/ipxe/$loader ]] || die "no /usr/lib/ipxe/$loader (apt-get install ipxe)"
    install -D -m 644 "/usr/lib/ipxe/$loader" "$stage/usr/lib/ipxe/$loader"
done
# The Sentinel's rules (its service reads them at start).
install -D -m 644 "$here/rootfs/sentinel/rules.toml" "$stage/etc/spirit/sentinel/rules.toml"

cat > "$stage/etc/os-release" <<OS
NAME="Crom-OS Spirit"
ID=crom-spirit
VERSION_ID=$version
PRETTY_NAME="Crom-OS Spirit $version"
HOME_URL="https://crom.run/"
OS
echo "crom-spirit" > "$stage/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$stage/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' > "$stage/etc/group"
cat > "$stage/etc/profile" <<'PROFILE'
# /run/spirit/vm/bin: the VM manager's @NAME commands (@windows dir).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/run/spirit/vm/bin
export PS1='spirit:\w\$ '
PROFILE

# The kernel modules: whole driver classes, then everything they need.
mapfile -t dirs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/rootfs/modules.dirs")
declare -A wanted=()
for pattern in "${dirs[@]}"; do
    for path in $modules/kernel/$pattern; do
        [[ -e $path ]] || continue
        while IFS= read -r file; do wanted["${file#"$modules"/}"]=1; done < <(find "$path" -name '*.ko*')
    done
done
# Close over modules.dep: each line is "module: dependencies...".
changed=1
while ((changed)); do
    changed=0
    while IFS= read -r line; do
        module=${line%%:*}
        [[ -n ${wanted[$module]:-} ]] || continue
        for dependency in ${line#*:}; do
            if [[ -z ${wanted[$dependency]:-} ]]; then wanted[$dependency]=1; changed=1; fi
        done
    done < "$modules/modules.dep"
done
for relative in "${!wanted[@]}"; do
    install -D -m 644 "$modules/$relative" "$stage/lib/modules/$release/$relative"
done
for index in modules.builtin modules.builtin.modinfo modules.order; do
    [[ -e $modules/$index ]] && install -m 644 "$modules/$index" "$stage/lib/modules/$release/$index"
done
depmod -b "$stage" "$release"
# The binary index the modules service reads instead of parsing depmod's
# text files (modules.spirit; the text files stay, for kmod and old spirits).
"$spirit" modules index "$stage/lib/modules/$release"

find "$stage" -mindepth 1 -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
rm -f "$out/rootfs.squashfs"
# mksquashfs takes its timestamps from SOURCE_DATE_EPOCH.
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH mksquashfs "$stage" "$out/rootfs.squashfs" -comp zstd -Xcompression-level 19 \
    -all-root -noappend -quiet -no-progress >/dev/null
"$spirit" image manifest --image "$out/rootfs.squashfs" --key "$key" --version "$version" \
    --build-time "$SOURCE_DATE_EPOCH" --out "$out/manifest.json"

echo "mkrootfs: $out/rootfs.squashfs: $(du -h --apparent-size "$out/rootfs.squashfs" | cut -f1) (base $base, kernel $release)"
echo "mkrootfs:   $(du -sh --apparent-size "$stage/lib/modules" | cut -f1) of kernel modules (${#wanted[@]} files), busybox $(/bin/busybox | head -1 | awk '{print $2}'), spirit $version, $(find "$stage" -type f | wc -l) files in all"
