import Glibc
import Persistence
import SpiritCore
import Testing

@Suite struct SelectionTests {
    @Test func pathsAreNormalizedDeduplicatedAndNested() throws {
        let selection = try PersistSelection(paths: ["/root/", "/etc", "/etc/ssh", "/root"], exclude: ["/root/.cache"])
        #expect(selection.paths == ["etc", "root"])
        #expect(selection.selects("etc") && selection.selects("etc/hostname") && selection.selects("root/notes"))
        #expect(!selection.selects("etcetera") && !selection.selects("var/log/x") && !selection.selects("usr"))
        #expect(!selection.selects("root/.cache") && !selection.selects("root/.cache/x") && selection.selects("root/.cachet"))
        #expect(selection.description == "/etc /root (except /root/.cache)")
    }

    @Test(arguments: [("etc", "absolute"), ("/", "the whole root"), ("//", "the whole root"), ("/etc/../var", "'..'"), ("/./etc", "'.'")])
    func aBadPathIsRefused(_ path: String, _ why: String) {
        do {
            _ = try PersistSelection(paths: [path])
            Issue.record("\(path) was accepted")
        } catch {
            #expect(error.description.contains(why), "\(error)")
        }
    }

    @Test func theConfigFileSetsPathsAndExcludes() throws {
        let file = try ConfigFile.parse("paths = [\"/etc\", \"/home\"]\nexclude = [\"/home/x/.cache\"]\n", path: "/etc/spirit/persist.toml")
        let selection = try PersistSelection.parse(file)
        #expect(selection.paths == ["etc", "home"] && selection.exclude == ["home/x/.cache"])
        #expect(try PersistSelection.parse(ConfigFile.parse("", path: "p")).paths == ["etc", "root"])
        #expect(throws: ConfigError(path: "p", line: 2, field: "keep", "unknown field (persist.toml has paths and exclude)")) {
            try PersistSelection.parse(ConfigFile.parse("paths = [\"/etc\"]\nkeep = true\n", path: "p"))
        }
        #expect(throws: ConfigError.self) { try PersistSelection.parse(ConfigFile.parse("paths = [\"/\"]\n", path: "p")) }
    }

    @Test func diffSaysAddedChangedRemoved() {
        let saved = [
            PersistEntry(path: "etc/a", kind: .file([1])), PersistEntry(path: "etc/b", kind: .file([2])),
            PersistEntry(path: "etc/c", kind: .file([3]), modificationTime: 5), PersistEntry(path: "root/gone", kind: .file([])),
        ]
        let current = [
            PersistEntry(path: "etc/a", kind: .file([1]), mode: 0o600), PersistEntry(path: "etc/b", kind: .file([2])),
            PersistEntry(path: "etc/c", kind: .file([3]), modificationTime: 99), PersistEntry(path: "etc/motd", kind: .whiteout),
            PersistEntry(path: "etc/ssh", kind: .directory(opaque: true)),
        ]
        #expect(PersistChange.compare(saved: saved, current: current).map(\.description) == [
            "changed /etc/a (file)", "added /etc/motd (deletion)", "added /etc/ssh (directory, replacing the image's)",
            "removed /root/gone (file)",
        ])
    }

    @Test func summaryCountsKindsAndBytes() {
        #expect(persistSummary(sampleEntries().prefix(5).map { $0 }) == "5 entries (1 file, 3 directories, 1 deletion), 11 bytes")
        #expect(persistSummary([]) == "0 entries, 0 bytes")
    }

    @Test func utcDates() {
        #expect(utcText(0) == "1970-01-01 00:00:00 UTC")
        #expect(utcText(1_764_116_467) == "2025-11-26 00:21:07 UTC")
        #expect(utcText(951_782_400) == "2000-02-29 00:00:00 UTC")
    }
}

@Suite struct MediumTests {
    let stick = BootMedium(source: "usb", origin: "/dev/sda (vfat, CROM_SPIRIT)", device: "/dev/sda", fstype: "vfat", label: "CROM_SPIRIT",
                           uuid: "1234-ABCD")

    @Test func theRecordRoundTrips() throws {
        #expect(try BootMedium(json: Array(stick.json.utf8)) == stick)
        let http = BootMedium(source: "http", origin: "http://10.0.2.2:8080/")
        #expect(try BootMedium(json: Array(http.json.utf8)) == http)
        #expect(stick.description == "/dev/sda (vfat, CROM_SPIRIT, UUID 1234-ABCD)")
    }

    @Test func aWritableStickIsAcceptedAndEveryOtherMediumSaysWhatWouldWork() {
        #expect(PersistMedium.refusal(stick) == nil)
        var ext4 = stick
        ext4.fstype = "ext4"
        #expect(PersistMedium.refusal(ext4) == nil)
        var cd = stick
        cd.fstype = "iso9660"
        #expect(PersistMedium.refusal(cd)?.contains("is ISO 9660, read-only by nature") == true)
        var parasite = stick
        parasite.fstype = "ntfs"
        #expect(PersistMedium.refusal(parasite)?.contains("only ever mounts read-only") == true)
        let http = BootMedium(source: "http", origin: "http://10.0.2.2:8080/")
        let refusal = PersistMedium.refusal(http) ?? ""
        #expect(refusal.hasPrefix("this Spirit booted from http://10.0.2.2:8080/ (http), which is not a disk"))
        for reason in [PersistMedium.refusal(cd), PersistMedium.refusal(parasite), refusal] {
            #expect(reason?.hasSuffix("a writable CROM_SPIRIT filesystem (vfat or ext4; `spirit-usb DEVICE` makes one)") == true)
        }
    }

    /// The commit as data: the new file is on the disk before the rename,
    /// and the rename before the unmount.
    @Test func theCommitWritesSyncsRenamesSyncs() {
        var parasiteLike = stick
        parasiteLike.directory = "CromSpirit"
        #expect(ArchiveWriteStep.commitPlan(device: "/dev/sdb", fstype: "vfat", medium: parasiteLike, bytes: 1024).map(\.shell) == [
            "mkdir -p /run/spirit/persist-medium",
            "mount -t vfat -o nosuid,nodev,noexec,iocharset=utf8 /dev/sdb /run/spirit/persist-medium",
            "cat > /run/spirit/persist-medium/CromSpirit/spirit.persist.new  # 1024 bytes",
            "sync /run/spirit/persist-medium/CromSpirit/spirit.persist.new",
            "mv /run/spirit/persist-medium/CromSpirit/spirit.persist.new /run/spirit/persist-medium/CromSpirit/spirit.persist",
            "sync /run/spirit/persist-medium/CromSpirit",
            "umount /run/spirit/persist-medium",
        ])
        let plan = ArchiveWriteStep.commitPlan(device: "/dev/vda", fstype: "ext4", medium: stick, bytes: 1)
        #expect(plan[1] == .mount(MountSpec(source: "/dev/vda", target: "/run/spirit/persist-medium", fstype: "ext4", flags: [.noSUID, .noDev, .noExec])))
        #expect(plan[4] == .rename("/run/spirit/persist-medium/spirit.persist.new", to: "/run/spirit/persist-medium/spirit.persist"))
        #expect(plan[5] == .syncDirectory("/run/spirit/persist-medium"))
    }
}

/// The I/O shell on a fixture tree: a scan of an upper directory, and an
/// archive applied to another root.
@Suite struct ScanAndApplyTests {
    func tree(_ name: String) throws -> String {
        let path = "/tmp/spirit-test-persist-\(name)-\(getpid())"
        try Kernel.removeAll(path)
        try Kernel.makeDirectory(path, parents: true)
        return path
    }

    @Test func scanKeepsSelectedChangesAndApplyRestoresThem() throws {
        let upper = try tree("upper")
        defer { try? Kernel.removeAll(upper) }
        for directory in ["etc", "etc/ssh", "root", "root/.cache", "var", "var/log"] { try Kernel.makeDirectory(upper + "/" + directory) }
        try Kernel.writeFile(upper + "/etc/hostname", bytes: Array("box\n".utf8))
        try Kernel.setMode(upper + "/etc/hostname", 0o640)
        try Kernel.setModificationTime(upper + "/etc/hostname", seconds: 1_700_000_000)
        try Kernel.writeFile(upper + "/root/notes", bytes: [1, 2, 3])
        try Kernel.writeFile(upper + "/root/.cache/big", bytes: [9])
        try Kernel.writeFile(upper + "/var/log/messages", bytes: [7])
        try Kernel.makeSymbolicLink(upper + "/root/link", to: "notes")
        let selection = try PersistSelection(paths: ["/etc", "/root"], exclude: ["/root/.cache"])
        let (entries, skipped) = try UpperScan(upper: upper, selection: selection).entries()
        #expect(skipped.isEmpty)
        #expect(entries.map(\.path) == ["etc", "etc/hostname", "etc/ssh", "root", "root/link", "root/notes"])
        let hostname = entries[1]
        #expect(hostname.kind == .file(Array("box\n".utf8)) && hostname.mode == 0o640 && hostname.modificationTime == 1_700_000_000)
        #expect(entries[4].kind == .symbolicLink("notes"))

        // Applied to a root that has a file the archive deletes and a file it replaces.
        let root = try tree("root")
        defer { try? Kernel.removeAll(root) }
        try Kernel.makeDirectory(root + "/etc")
        try Kernel.writeFile(root + "/etc/hostname", bytes: Array("old-name-that-is-longer\n".utf8))
        try Kernel.writeFile(root + "/etc/motd", bytes: [1])
        try Kernel.makeDirectory(root + "/etc/ssh")
        try Kernel.writeFile(root + "/etc/ssh/from-the-image", bytes: [1])
        var archive = try PersistArchive.open(try PersistArchive.seal(entries, time: 0)).1
        archive.append(PersistEntry(path: "etc/motd", kind: .whiteout))
        archive[2].kind = .directory(opaque: true)
        let (applied, failures) = ArchiveApply(root: root).apply(archive)
        #expect(failures.isEmpty && applied == archive.count, "\(failures)")
        #expect(try Kernel.readText(root + "/etc/hostname") == "box\n")
        #expect(try Kernel.status(root + "/etc/hostname").permissions == 0o640)
        #expect(try Kernel.status(root + "/etc/hostname").modificationTime == 1_700_000_000)
        #expect(Kernel.readLink(root + "/root/link") == "notes")
        #expect(!Kernel.exists(root + "/etc/motd"))
        #expect(Kernel.listDirectory(root + "/etc/ssh").isEmpty)  // opaque: the image's content is gone
        #expect(try UpperScan(upper: root, selection: try PersistSelection(paths: ["/root"])).entries().entries.map(\.path)
                == ["root", "root/link", "root/notes"])
    }

    @Test func nothingIsWrittenThroughALink() throws {
        let root = try tree("trap")
        let outside = try tree("outside")
        defer { try? Kernel.removeAll(root); try? Kernel.removeAll(outside) }
        try Kernel.makeSymbolicLink(root + "/etc", to: outside)
        let (applied, failures) = ArchiveApply(root: root).apply([PersistEntry(path: "etc/passwd", kind: .file([1]))])
        #expect(applied == 0 && failures.count == 1)
        #expect(failures.first?.contains("is not a directory (a link or a file)") == true)
        #expect(Kernel.listDirectory(outside).isEmpty)
    }
}
