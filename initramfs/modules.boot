# The kernel modules stage 1 always loads, each after what it depends on.
# A name the target kernel builds in is skipped; one it lacks is a warning
# at build time and at boot. Drivers for hardware are in modules.hardware:
# carried, and loaded only for devices that are there (coldplug, uevents).

# Filesystems of the RAM root (the boot media's are in modules.mount)
squashfs
overlay
ext4
# The RAM block devices, and zram's compressors (zram names them whether or
# not their crypto modules are loaded)
zram
zstd
lz4
loop
