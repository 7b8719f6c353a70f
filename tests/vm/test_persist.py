"""Opt-in persistence on a real kernel: `spirit persist commit` on a boot
from a writable CROM_SPIRIT disk keeps /root and /etc (a file written, one
changed, one deleted) across a reboot (a second QEMU on the same disk
file); QEMU killed while a commit writes leaves the previous archive in
force; a damaged archive is ignored with the reason, nothing of it applied;
a read-only medium (the ISO as a CD) says why it cannot take an archive;
the journal of a boot from a vfat stick checks out, is saved at poweroff
and linked by the next boot, and an edited record is named."""

import hashlib
import json
import re
import subprocess

from conftest import ROOT, make_media
from harness import Disk

ARCHIVE = "/run/spirit/media/usb/spirit.persist"


def archive_on_disk(disk) -> bytes:
    """spirit.persist as the disk file holds it (debugfs reads the ext4
    image without mounting it)."""
    out = subprocess.run(["debugfs", "-R", "cat /spirit.persist", str(disk)], check=True, capture_output=True)
    return out.stdout


def test_commit_reboot_cut_commit_and_damaged_archive(boot, tmp_path, system_image):
    disk = make_media(tmp_path, {"rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"]})
    # Room for the 64 MiB archive of the cut commit below (make_media leaves ~16 MiB).
    with open(disk, "ab") as f:
        f.truncate(disk.stat().st_size + (160 << 20))
    subprocess.run(["resize2fs", "-f", str(disk)], check=True, capture_output=True)

    # Boot 1: nothing to restore; a file written, one changed, one deleted; commit.
    vm = boot("", disks=[Disk(str(disk))])
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    assert "spirit: persist:" not in vm.console
    vm.check("echo kept-across-boots > /root/note && echo spirit-persisted > /etc/hostname "
             "&& rm /etc/spirit/services/nexus.toml && mkdir -p /var/scratch && echo not-kept > /var/scratch/x")
    status = vm.check("spirit persist status")
    assert re.search(r"^boot medium: /dev/vda \(ext4, CROM_SPIRIT, UUID [0-9a-f-]{36}\), writable$", status, re.M), status
    assert "archive: none" in status and "paths: /etc /root" in status, status
    diff = vm.check("spirit persist diff").splitlines()
    for line in ["added /root/note (file)", "added /etc/hostname (file)", "added /etc/spirit/services/nexus.toml (deletion)"]:
        assert line in diff, diff
    assert not [line for line in diff if "/var" in line], diff
    out = vm.check("spirit persist commit 2>&1")
    assert re.search(r"^spirit: persist: saved \d+ entries \(.*1 deletion\), \d+ bytes of /etc /root to /dev/vda", out, re.M), out
    assert vm.check("spirit persist diff") == ""
    assert "/run/spirit/persist-medium" not in vm.check("cat /proc/mounts")
    vm.kill()  # no clean shutdown: the commit itself made the archive durable

    # The archive is a tar a user can read with standard tools, with its trailer.
    first = archive_on_disk(disk)
    assert first[-512:].startswith(b"SPIRIT-PERSIST 1 cipher=none size=")
    (tmp_path / "first.persist").write_bytes(first)
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "first.persist")], check=True, capture_output=True, text=True).stdout
    assert "root/note" in listing and re.search(r"^c.* etc/spirit/services/nexus.toml$", listing, re.M), listing

    # Boot 2: restored before stage 2 (the HUD's service file stays deleted).
    vm = boot("", disks=[Disk(str(disk))])
    restored = vm.expect(rf"^spirit: persist: restored (\d+) entries .* from {ARCHIVE}$")
    vm.expect(r"^spirit: Crom-OS Spirit \S+: init is process 1, stage 2")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    assert vm.check("cat /root/note") == "kept-across-boots"
    assert vm.check("cat /etc/hostname") == "spirit-persisted"
    assert vm.check("test -e /etc/spirit/services/nexus.toml || echo gone") == "gone"
    assert vm.check("test -e /var/scratch/x || echo gone") == "gone"
    assert "nexus" not in vm.check("spiritctl status")
    assert f"at boot: restored {restored.group(1)} entries" in vm.check("spirit persist status")
    steps = [step["step"] for step in vm.timeline()["steps"]]
    assert steps.index("persist:read") < steps.index("copy") < steps.index("mount") < steps.index("persist:apply") < steps.index("switch_root"), steps

    # A commit cut short: QEMU killed while the new archive is being written
    # (64 MiB of random data makes the write take seconds under TCG).
    vm.check("echo second > /root/second && dd if=/dev/urandom of=/root/big bs=1M count=64 2>/dev/null")
    vm.send("spirit persist commit\n")
    vm.expect(r"^spirit: persist: writing /run/spirit/persist-medium/spirit.persist.new \(\d+ bytes\)$", 300)
    vm.kill()
    assert "spirit: persist: saved" not in vm.console, "the commit ended before QEMU was killed"
    assert hashlib.sha256(archive_on_disk(disk)).digest() == hashlib.sha256(first).digest(), "the old archive changed"

    # Boot 3: the previous archive is in force; then it is damaged on the medium.
    vm = boot("", disks=[Disk(str(disk))])
    vm.expect(rf"^spirit: persist: restored {restored.group(1)} entries .* from {ARCHIVE}$")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    assert vm.check("cat /root/note") == "kept-across-boots"
    assert vm.check("test -e /root/second || test -e /root/big || echo absent") == "absent"
    vm.check("mkdir -p /mnt/stick && mount /dev/vda /mnt/stick && printf XXXX | dd of=/mnt/stick/spirit.persist bs=1 seek=100 conv=notrunc "
             "2>/dev/null && umount /mnt/stick && sync")
    status = vm.check("spirit persist status")
    assert f"{len(first)} bytes: damaged: its SHA-256 does not match the one in its trailer" in status, status
    vm.kill()

    # Boot 4: ignored with the reason; nothing of it applied.
    vm = boot("", disks=[Disk(str(disk))])
    vm.expect(rf"^spirit: persist: ignored {ARCHIVE}: damaged: its SHA-256 does not match the one in its trailer$")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    assert vm.check("test -e /root/note || echo absent") == "absent"
    assert vm.check("test -e /etc/spirit/services/nexus.toml && echo there") == "there"

    # An encrypted commit replaces it; run time restores it with the
    # passphrase only; the boot ignores it, saying why.
    vm.check("echo 'correct horse' > /tmp/pass && echo wrong > /tmp/wrong && echo secret > /root/enc")
    out = vm.check("spirit persist commit --passphrase-file /tmp/pass 2>&1")
    assert re.search(r"^spirit: persist: saved .*, encrypted$", out, re.M), out
    assert "encrypted (ChaCha20-Poly1305, scrypt)" in vm.check("spirit persist status")
    vm.check("rm /root/enc")
    status, out = vm.run("spirit persist restore 2>&1")
    assert status == 111 and "encrypted: it needs its passphrase" in out, out
    status, out = vm.run("spirit persist restore --passphrase-file /tmp/wrong 2>&1")
    assert status == 111 and "the passphrase does not open it (wrong passphrase)" in out, out
    out = vm.check("spirit persist restore --passphrase-file /tmp/pass 2>&1")
    assert re.search(r"^spirit: persist: restored (\d+) of \1 entries from /dev/vda", out, re.M), out
    assert vm.check("cat /root/enc") == "secret"
    vm.kill()
    encrypted = archive_on_disk(disk)
    assert encrypted[-512:].startswith(b"SPIRIT-PERSIST 1 cipher=chacha20-poly1305 kdf=scrypt n=32768 r=8 p=1 salt=")
    assert b"secret" not in encrypted and b"root/enc" not in encrypted

    # Boot 5: the encrypted archive is not restored at boot.
    vm = boot("", disks=[Disk(str(disk))])
    vm.expect(rf"^spirit: persist: ignored {ARCHIVE}: encrypted: it needs its passphrase, which the boot does not ask for "
              r"\(spirit persist restore --passphrase-file FILE\)$")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    assert vm.check("test -e /root/enc || echo absent") == "absent"


def test_a_vfat_stick_with_a_tmpfs_upper(boot, tmp_path, system_image):
    """The common stick (vfat) and the other writable layer (tmpfs); a
    directory removed and made again (overlayfs's opaque directory) replaces
    the image's on restore; crom.persist=off boots clean."""
    disk = make_media(tmp_path, {"rootfs.squashfs": system_image["image"], "manifest.json": system_image["manifest"]}, fstype="vfat")
    vm = boot("crom.upper=tmpfs", disks=[Disk(str(disk))])
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    vm.check("mkdir -p /root/dir && echo on-vfat > /root/dir/v && chmod 600 /root/dir/v && ln -s dir/v /root/link")
    # Only nodus's service file is left, in a directory made anew.
    vm.check("cp /etc/spirit/services/nodus.toml /tmp/ && rm -r /etc/spirit/services && mkdir /etc/spirit/services "
             "&& cp /tmp/nodus.toml /etc/spirit/services/")
    assert "added /etc/spirit/services (directory, replacing the image's)" in vm.check("spirit persist diff --paths /root,/etc")
    assert "(vfat, CROM_SPIRIT, UUID " in vm.check("spirit persist commit --paths /root,/etc 2>&1")
    vm.kill()
    listing = subprocess.run(["mdir", "-b", "-i", str(disk), "::"], check=True, capture_output=True, text=True).stdout.split()
    assert "::/spirit.persist" in listing and "::/spirit.persist.new" not in listing, listing

    vm = boot("crom.upper=tmpfs", disks=[Disk(str(disk))])
    vm.expect(r"^spirit: persist: restored \d+ entries .* from /run/spirit/media/usb/spirit.persist$")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    assert vm.check("cat /root/link && stat -c %a /root/dir/v") == "on-vfat\n600"
    assert vm.check("ls /etc/spirit/services") == "nodus.toml"
    # The journal: the boot's decisions and the services' starts, chained
    # whole; no previous journal (the first boot was killed, not shut down).
    assert re.search(r"^journal: \d+ records, the chain is whole; head [0-9a-f]{64}$", vm.check("spirit journal verify"), re.M)
    records = [json.loads(line) for line in vm.check("spirit journal --json").splitlines()]
    kinds = [r["kind"] for r in records]
    for kind in ["boot.flags", "boot.cascade", "boot.source", "boot.image", "boot.root", "boot.stage2", "service.start"]:
        assert kind in kinds, kinds
    assert "boot.previous" not in kinds, kinds
    image = next(r for r in records if r["kind"] == "boot.image")
    assert image["fields"]["sha256"] == system_image["sha256"], image
    # A clean poweroff saves the journal beside the archive.
    vm.send("spirit poweroff\n")
    saved = vm.expect(r"^spirit: shutdown: journal saved to /dev/vda \(vfat, CROM_SPIRIT, UUID [^)]+\) \((\d+) records, head ([0-9a-f]{16})\)$")
    vm.wait_exit()
    listing = subprocess.run(["mdir", "-b", "-i", str(disk), "::"], check=True, capture_output=True, text=True).stdout.split()
    assert "::/spirit.journal" in listing and "::/spirit.journal.new" not in listing, listing

    # crom.persist=off boots clean, without reading the archive; the last
    # boot's journal is read all the same, and this boot's chain holds its head.
    vm = boot("crom.upper=tmpfs crom.persist=off", disks=[Disk(str(disk))])
    vm.expect(rf"^spirit: journal: the last boot's, {saved.group(1)} records with head {saved.group(2)}, checks out$")
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    previous = next(json.loads(line) for line in vm.check("spirit journal --json").splitlines() if '"boot.previous"' in line)
    assert previous["fields"]["head"].startswith(saved.group(2)) and previous["fields"]["check"] == "whole", previous
    # One byte of the third record changed in place: verify names it.
    vm.check(r"sed -i '3s/boot\./bOot./' /run/log/journal.jsonl")
    code, out = vm.run("spirit journal verify")
    assert code == 1 and "journal: /run/log/journal.jsonl:3 (seq 3): edited" in out, out
    assert "spirit: persist:" not in vm.console
    # The image's own services, as rootfs/services has them.
    shipped = "\n".join(sorted(path.name for path in (ROOT / "rootfs/services").glob("*.toml")))
    assert vm.check("test -e /root/dir/v || ls -1 /etc/spirit/services") == shipped
    assert "at boot: nothing restored" in vm.check("spirit persist status")


def test_a_read_only_medium_says_what_would_work(boot, iso):
    vm = boot("", disks=[Disk(str(iso), interface="cdrom")])
    vm.expect(r"^spirit: ready$")
    vm.expect(r"spirit:/# ", partial=True)
    vm.check("echo x > /root/note")
    status, out = vm.run("spirit persist commit 2>&1")
    assert status == 111, out
    assert re.search(r"^spirit: error: unable to commit: the boot medium /dev/sr0 \(iso9660, CROM_SPIRIT, UUID [^)]*\) is ISO 9660, "
                     r"read-only by nature .*; persistence needs a boot from a USB stick with a writable CROM_SPIRIT filesystem", out, re.M), out
    assert "would save: " in vm.check("spirit persist status")
