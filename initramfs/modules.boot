# The kernel modules stage 1 always loads, each after what it depends on.
# A name the target kernel builds in is skipped; one it lacks is a warning
# at build time and at boot. Drivers for hardware are in modules.hardware:
# carried, and loaded only for devices that are there (coldplug, uevents).

# Filesystems of the RAM root and of the boot media
squashfs
overlay
ext4
isofs
vfat
ntfs3
# FUSE, for ntfs-3g where the kernel has no ntfs3 (Debian 12's 6.1)
fuse
# vfat's default code page and character set
nls_cp437
nls_iso8859_1
nls_utf8
# The RAM and network block devices, and zram's compressors (zram names
# them whether or not their crypto modules are loaded)
zram
zstd
lz4
loop
nbd
