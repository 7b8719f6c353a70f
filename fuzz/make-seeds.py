#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus, fuzz/corpus/TARGET/NAME: a few
dozen small, valid or nearly valid inputs per parser, so that libFuzzer
starts from the formats' real shapes instead of from nothing. Files that
`make fuzz` adds beside them (new coverage, named by their SHA-1) are kept
when small; rerunning this script rewrites only the named seeds.

Usage: fuzz/make-seeds.py [CORPUS_DIR]   (default: fuzz/corpus)
"""
import hashlib
import io
import os
import struct
import sys
import tarfile

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
SHA = "ab" * 32


def seed(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)


# cmdline: /proc/cmdline as boot loaders write it.
for i, line in enumerate([
    "BOOT_IMAGE=/kernel console=ttyS0 quiet crom.debug=1\n",
    "crom.mode=http crom.http=http://10.0.2.2:8000/spirit/ crom.network.timeout=30",
    "crom.mode=nodus crom.nodus=discover crom.nodus.server=192.168.1.7:10809",
    "crom.ram.limit=2048 crom.upper=tmpfs crom.break=premount crom.modules=nbd,squashfs",
    "crom.layers=vm,ai crom.gpu=passthrough crom.mode=usb",
    'root=live "crom.http=http://a b/" crom.debug=yes crom.ram.limit=-1 crom.mode=',
    "crom.mode=rescue -- init=/bin/sh single",
    "crom.nodus=off crom.nodus.server=[fe80::1]:99999 crom.network.timeout=1e9",
    "crom.layers=none crom.upper=zram crom.break crom.debug=0 quiet splash",
]):
    seed("cmdline", f"seed-{i:02}", line)

# manifest: the image, layer and release manifests, the layer state, crom.layers=.
manifests = {
    "image": '{\n  "format": "crom-spirit-manifest/1",\n  "image": "rootfs.squashfs",\n  "size": 123456789,\n'
             f'  "sha256": "{SHA}",\n  "version": "0.4.1",\n  "build_time": 1795355103,\n  "signature": "{"cd" * 64}"\n}}\n',
    "layer": '{\n  "format": "crom-spirit-layer/1",\n  "name": "vm",\n  "image": "vm.squashfs",\n  "size": 4096,\n'
             f'  "sha256": "{SHA}",\n  "version": "1.0.0",\n  "build_time": 1,\n  "bases": ["0.4.1", "0.4.2"]\n}}\n',
    "release": '{\n  "format": "crom-spirit-release/1",\n  "version": "0.5.0",\n  "build_time": 1795355103,\n  "files": [\n'
               f'    {{"path": "kernel", "size": 9, "sha256": "{SHA}"}},\n'
               f'    {{"path": "layers/vm.squashfs", "size": 3, "sha256": "{SHA}"}},\n'
               f'    {{"path": "manifest.json", "size": 3, "sha256": "{SHA}"}}\n  ]\n}}\n',
    "state": f'{{"layers":[{{"name":"vm","version":"1.0.0","sha256":"{SHA}","size":4096,"origin":"/run/spirit/image/layers",'
             '"stacking":"boot","added":1795355103}]}\n',
    "selection": "vm,ai",
    "escapes": '{"a": "\\u00e9\\ud83d\\ude00\\n\\"", "b": [1, -2, 3.5e10, true, false, null], "c": {}}',
    "deep": "[" * 40 + "]" * 40,
    "numbers": '[0, -0, 9223372036854775807, -9223372036854775808, 9223372036854775808, 1e400, 0.1]',
    "bad-format": '{"format": "crom-spirit-manifest/2", "image": "../etc/passwd", "size": -1}',
    "empty": "{}",
}
for name, text in manifests.items():
    seed("manifest", name, text)

# config: service files, VM definitions, the persistence selection, modprobe.d.
configs = {
    "service": '# A service\ncommand = ["/bin/spirit", "nodus", "serve",\n           "--image", "/run/x"]\n'
               'restart = "always"\nready = "notify"\nsignal = "SIGTERM"\nmemory-max = "256M"\n'
               'after = ["modules"]\nenvironment = ["A=1", "B=two"]\n',
    "service-bad": 'command = "/bin/true"\nrestart = "sometimes"\nmemory-max = "12Q"\nsignal = "SIGNOPE"\n',
    "vm": 'memory-mib = 8192\ncpus = 4\nmachine = "q35"\nfirmware = "uefi-secure"\ntpm = true\nagent = "isa-serial"\n'
          'os = "windows"\nvga = "std"\n\n[disk.system]\npath = "/dev/disk/by-id/nvme-x"\nformat = "raw"\nbus = "nvme"\n'
          'overlay = true\n\n[gpu]\naddress = "0000:01:00.0"\n',
    "vm-small": 'memory-mib = 256\nmachine = "pc"\naccel = "tcg"\nkernel = "/cache/vmlinuz"\nappend = "console=ttyS0"\n'
                '[disk.data]\npath = "/a.qcow2"\nformat = "qcow2"\nbus = "ahci"\nread-only = true\n',
    "persist": 'paths = ["/etc", "/home", "/root/.ssh"]\nexclude = ["/etc/machine-id", "/home/*/.cache"]\n',
    "strings": "a = 'single'\nb = \"esc \\\" \\\\ \\u00e9 \\t\"\nc = 0x1F\nd = -9223372036854775808\ne = 1_000\nf = [\n  1,\n  2,\n]\n",
    "tables": '[a]\nx = 1\n[a.b]\ny = "z"\n[[c]]\nq = true\n',
    "modprobe": "alias pci:v00008086d* e1000e\nblacklist nouveau\noptions kvm_amd nested=1\nsoftdep nbd pre: loop post: zram\n",
}
for name, text in configs.items():
    seed("config", name, text)


# NBD, server side: what a client sends (client flags, options, requests).
def option(code, data=b""):
    return struct.pack(">QII", 0x49484156454F5054, code, len(data)) + data


def request(kind, offset, length, cookie=1, flags=0):
    return struct.pack(">IHHQQI", 0x25609513, flags, kind, cookie, offset, length)


def go_data(name=b"", infos=(3,)):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) + b"".join(struct.pack(">H", i) for i in infos)


FLAGS = struct.pack(">I", 3)
nbd_server = {
    "go-read": FLAGS + option(7, go_data()) + request(0, 0, 4096) + request(0, 60000, 8192) + request(2, 0, 0),
    "go-named": FLAGS + option(7, go_data(b"spirit", (0, 1, 2, 3))) + request(0, 512, 512) + request(3, 0, 0) + request(2, 0, 0),
    "export-name": struct.pack(">I", 1) + option(1, b"spirit") + request(0, 0, 1) + request(2, 0, 0),
    "list-info": FLAGS + option(3) + option(6, go_data(b"nope")) + option(6, go_data()) + option(2),
    "structured": FLAGS + option(8) + option(10, b"x") + option(7, go_data()) + request(1, 0, 4, 9) + request(0, 65530, 100),
    "abort": FLAGS + option(2),
    "starttls": FLAGS + option(5) + option(9999, b"\xff" * 8) + option(7, go_data(b"\xff\xfe")),
    "bad-magic": FLAGS + b"\x00" * 16,
    "huge-length": FLAGS + struct.pack(">QII", 0x49484156454F5054, 7, 0xFFFFFFFF),
}
for name, data in nbd_server.items():
    seed("nbd-server", name, data)


# NBD, client side: what a server sends (greeting, option replies, read replies).
def greeting(flags=3):
    return struct.pack(">QQH", 0x4E42444D41474943, 0x49484156454F5054, flags)


def reply(kind, data=b"", opt=7):
    return struct.pack(">QIII", 0x3E889045565A9, opt, kind, len(data)) + data


def info_export(size, flags=0x1 | 0x2):
    return reply(3, struct.pack(">HQH", 0, size, flags))


def simple(cookie, data=b"", error=0):
    return struct.pack(">IIQ", 0x67446698, error, cookie) + data


nbd_client = {
    "go": greeting() + info_export(1024) + reply(3, struct.pack(">HIII", 3, 1, 512, 512)) + reply(1)
          + simple(1, b"a" * 512) + simple(2, b"b" * 512),
    "go-unordered": greeting() + info_export(2048) + reply(1) + simple(2, b"b" * 512) + simple(1, b"a" * 512)
                    + simple(4, b"d" * 512) + simple(3, b"c" * 512),
    "export-name": greeting() + reply(0x80000001) + struct.pack(">QH", 1000, 1) + b"\0" * 124 + simple(1, b"x" * 512),
    "export-name-nozeroes": greeting() + reply(0x80000001) + struct.pack(">QH", 700, 1) + simple(1, b"y" * 512) + simple(2, b"z" * 188),
    "unknown": greeting() + reply(0x80000006, b"no such export"),
    "error-reply": greeting() + info_export(512) + reply(1) + simple(1, b"", error=5),
    "other-replies": greeting() + reply(3, struct.pack(">H", 1) + b"name") + reply(2, b"") + info_export(0) + reply(1),
    "oldstyle": struct.pack(">QQQ", 0x4E42444D41474943, 0x00420281861253, 4096) + b"\0" * 128,
    "wrong-cookie": greeting() + info_export(512) + reply(1) + simple(7, b"q" * 512),
}
for name, data in nbd_client.items():
    seed("nbd-client", name, data)

# discovery: seeks and answers on UDP 7331.
ext_seek = "CROM_SPIRIT_SEEK\nv=1\npad="
ext_seek += "." * (256 - len(ext_seek) - 1) + "\n"
for name, text in {
    "seek-bare": "CROM_SPIRIT_SEEK",
    "seek-extended": ext_seek,
    "seek-v0": "CROM_SPIRIT_SEEK\nv=0\n",
    "answer-bare": "CROM_SPIRIT_HERE:192.168.1.7:10809",
    "answer-v6": "CROM_SPIRIT_HERE:fe80::1:10809",
    "answer-extended": f"CROM_SPIRIT_HERE:10.0.0.2:10809\nv=1\nsha256={SHA}\nversion=0.4.1\nbuilt=1795355103\nsize=123456789\n",
    "answer-bad": "CROM_SPIRIT_HERE:evil host:0\nv=x\nsize=-5\n",
    "crlf": "CROM_SPIRIT_SEEK\r\nv=1\r\n",
}.items():
    seed("discovery", name, text)

# http: a server's answer as it comes off the socket.
for name, text in {
    "ok": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello",
    "chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n",
    "to-close": "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nthe body runs to the close",
    "partial": "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-104/200\r\nContent-Length: 5\r\n\r\n12345",
    "redirect": "HTTP/1.1 302 Found\r\nLocation: http://other.example:8080/spirit/manifest.json\r\nContent-Length: 0\r\n\r\n",
    "relative": "HTTP/1.1 301 Moved\r\nLocation: ../elsewhere/\r\n\r\n",
    "not-found": "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found",
    "short": "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a few",
    "bad-chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "huge-length": "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "neg-chunk": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n-1\r\n\r\n",
    "folded": "HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\nContent-Length:3\r\n\r\nabc",
    "url": "http://boot.crom.run:8080/spirit/",
    "url-v6": "http://[fe80::1%25eth0]:80/a?b#c",
}.items():
    seed("http", name, text)

# uevent: from the kernel's netlink socket.
for name, parts in {
    "add-pci": ["add@/devices/pci0000:00/0000:00:03.0", "ACTION=add", "DEVPATH=/devices/pci0000:00/0000:00:03.0",
                "SUBSYSTEM=pci", "MODALIAS=pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", "SEQNUM=1234"],
    "usb": ["add@/devices/usb1/1-1", "ACTION=add", "SUBSYSTEM=usb", "MODALIAS=usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00"],
    "remove": ["remove@/devices/virtual/block/loop0", "ACTION=remove", "SUBSYSTEM=block"],
    "libudev": ["libudev", "\xfe\xed\xca\xfe", "garbage=1"],
    "no-at": ["change", "X"],
}.items():
    seed("uevent", name, "\0".join(parts) + "\0")

# qmp: lines from QEMU's QMP socket and the guest agent.
for name, text in {
    "greeting": '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2"}, "capabilities": ["oob"]}}',
    "return": '{"return": {}, "id": "1"}',
    "status": '{"return": {"status": "running", "singlestep": false, "running": true}}',
    "error": '{"id": "2", "error": {"class": "GenericError", "desc": "VFIO device doesn\'t support migration"}}',
    "event": '{"timestamp": {"seconds": 1795355103, "microseconds": 5}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}',
    "exec-status": '{"return": {"exited": true, "exitcode": 0, "out-data": "aGVsbG8K", "err-data": "", "out-truncated": false}}',
    "exec-running": '{"return": {"exited": false}}',
    "exec-bad64": '{"return": {"exited": true, "exitcode": 1, "out-data": "!!!="}}',
    "neither": '{"hello": 1}',
}.items():
    seed("qmp", name, text + "\n")


# grubenv: 1024-byte blocks (the target pads shorter inputs with #).
def block(lines):
    text = "# GRUB Environment Block\n" + "".join(line + "\n" for line in lines)
    return text + "#" * (1024 - len(text))


for name, lines in {
    "empty": [],
    "slots": ["spirit_slot=a", "spirit_try=b", "spirit_tries=1", "saved_entry=spirit-a"],
    "next-entry": ["next_entry=1", "spirit_good=a"],
    "escaped": ["a=b\\\\c", "x=", "=y"],
}.items():
    seed("grubenv", name, block(lines))
seed("grubenv", "no-header", "spirit_slot=a\n")


# persist: ustar archives as the persistence codec writes them.
def tar(members, fmt=tarfile.USTAR_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for info, data in members:
            info.mtime = 1795355103
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def member(name, kind=tarfile.REGTYPE, data=b"", **extra):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in extra.items():
        setattr(info, key, value)
    return info, data if kind == tarfile.REGTYPE else None


seed("persist", "files", tar([member("etc", tarfile.DIRTYPE), member("etc/hostname", data=b"spirit\n"),
                              member("etc/motd", data=b"hello" * 20)]))
seed("persist", "links", tar([member("root/.profile", tarfile.SYMTYPE, linkname="/etc/profile"),
                              member("dev-null", tarfile.CHRTYPE, devmajor=0, devminor=0)]))
seed("persist", "pax", tar([member("home/" + "d" * 120 + "/file", data=b"x"),
                            member("opt", tarfile.DIRTYPE, pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"})],
                           tarfile.PAX_FORMAT))
seed("persist", "unsafe", tar([member("../escape", data=b"x"), member("/abs", data=b"y")]))
seed("persist", "empty", b"\0" * 1024)


# sentinel: /dev/kmsg records (exact kernel formats), pressure files,
# memory.events, mm_stat, the supervisor's status json, a rules file.
seed("sentinel", "kmsg-oom", "6,1501,93201832,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
     "oom_memcg=/spirit/leaky,task_memcg=/spirit/leaky,task=leaky,pid=4242,uid=0\n"
     "3,1502,93201833,-;Memory cgroup out of memory: Killed process 4242 (leaky) total-vm:35000kB, anon-rss:32768kB, "
     "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:100kB oom_score_adj:0\n SUBSYSTEM=memory\n")
seed("sentinel", "kmsg-other", "6,7,100,-;crashy[1234]: segfault at 0 ip 000055d4c0a0b139 sp 00007ffc3e6b3c10 error 6 in crashy[55d4c0a0b000+1000]\n"
     "3,8,101,-;I/O error, dev sda, sector 2048 op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 2\n"
     "3,9,102,-;SQUASHFS error: Unable to read data cache entry [2a05f]\n"
     "3,10,103,-;INFO: task kworker/0:1:57 blocked for more than 120 seconds.\n"
     "4,11,104,-;CPU2: Package temperature is above threshold, cpu clock is throttled (total events = 12)\n"
     "3,12,105,-;EXT4-fs error (device zram0): ext4_lookup:1855: inode #2: comm ls: iget: bad extra_isize 65535\n")
seed("sentinel", "pressure", "some avg10=12.00 avg60=3.50 avg300=0.80 total=4315227\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
seed("sentinel", "events", "low 0\nhigh 0\nmax 37\noom 2\noom_kill 2\noom_group_kill 0\n")
seed("sentinel", "mm-stat", "   413696    61440   131072        0   131072        0        0        0        0\n")
seed("sentinel", "status", 'ok\n{"now_ms":1234.5,"services":[{"name":"crashy","state":"failed","pid":null,"restarts":3,"ready":false,'
     '"enabled":true,"since_ms":1000.0,"detail":"crash loop: 3 restarts within 60 s"}]}\n')
seed("sentinel", "rules", '[oom-kill]\nsignal = "kmsg.oom-kill"\nat-least = 1\nwithin-seconds = 60\nseverity = "critical"\n'
     '[memory-pressure]\nsignal = "psi.memory.some.avg10"\nabove = 10\nfor-seconds = 30\nseverity = "warning"\naction = "restart-largest"\n')

# hydrate: /run/spirit/hydrate.json as `spirit nodus hydrate` writes it.
seed("hydrate", "streaming", '{"state":"streaming","blocks_present":3,"blocks_total":45,"bytes_present":3145728,'
     '"bytes_total":46919680,"started_us":4000000,"peers":[{"name":"10.77.5.1:10809","blocks":3}]}\n')
seed("hydrate", "failed", '{"state":"failed","blocks_present":0,"blocks_total":1,"bytes_present":0,"bytes_total":4096,'
     '"started_us":1,"ended_us":2,"problem":"no peer is left","peers":[{"name":"a","blocks":0,"dropped":"gone"}]}\n')

# journal: a whole chain of three records (canonical lines, as JournalRecord
# writes them), the same with a record edited, and a line cut short.
def journal_chain(count, prev="0" * 64):
    lines = []
    for seq in range(1, count + 1):
        fields = {"service": f"svc{seq}", "reason": "restart after it exited with status 3"}
        members = [f'"seq":{seq}', f'"time_ms":{seq * 1000}'] + ([f'"wall":{1795000000 + seq}'] if seq > 1 else []) + [
            '"kind":"service.start"', '"process":"supervisor"',
            '"fields":{' + ",".join(f'"{k}":"{v}"' for k, v in fields.items()) + "}", f'"prev":"{prev}"']
        canonical = "{" + ",".join(members) + "}"
        prev = hashlib.sha256(canonical.encode()).hexdigest()
        lines.append(canonical[:-1] + f',"hash":"{prev}"' + "}\n")
    return lines


chain = journal_chain(3)
seed("journal", "whole", "".join(chain))
seed("journal", "edited", "".join(chain).replace("svc2", "svc9"))
seed("journal", "cut", "".join(chain)[:-40])
seed("journal", "reordered", chain[0] + chain[2] + chain[1])
