# The kernel modules stage 1 loads, in this order, each after what it depends
# on (resolved when the initramfs is built). A name the target kernel builds
# in is skipped; one it lacks is a warning at build time and at boot.

# Filesystems of the RAM root and of the boot media
squashfs
overlay
ext4
isofs
vfat
ntfs3
# vfat's default code page and character set (mounting fails without them)
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
# Disks: virtio (VMs), NVMe, SATA, USB
virtio_pci
virtio_blk
virtio_scsi
sd_mod
sr_mod
nvme
ahci
xhci_pci
ehci_pci
uas
usb_storage
# Network for the HTTP and Nodus sources
virtio_net
e1000
e1000e
