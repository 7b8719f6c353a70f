import Crypto
import Glibc
import Persistence
import SpiritCore
import Testing

/// Entries of every kind, with the names ustar cannot hold in its 100-byte
/// field: one that needs the prefix field, one that needs a pax header.
func sampleEntries() -> [PersistEntry] {
    let deep = "root/" + String(repeating: "d", count: 120)
    let tooLong = "root/" + String(repeating: "x", count: 260)
    return [
        PersistEntry(path: "etc", kind: .directory(opaque: false), mode: 0o755, modificationTime: 1_764_115_200),
        PersistEntry(path: "etc/hostname", kind: .file(Array("spirit-box\n".utf8)), mode: 0o644, modificationTime: 1_764_115_201),
        PersistEntry(path: "etc/motd", kind: .whiteout, mode: 0, modificationTime: 1_764_115_202),
        PersistEntry(path: "etc/ssh", kind: .directory(opaque: true), mode: 0o700),
        PersistEntry(path: "root", kind: .directory(opaque: false), mode: 0o700),
        PersistEntry(path: "root/.profile", kind: .symbolicLink("/etc/profile"), mode: 0o777),
        PersistEntry(path: "root/far", kind: .symbolicLink(String(repeating: "../", count: 40) + "target"), mode: 0o777),
        PersistEntry(path: "root/notes", kind: .file((0..<5000).map { UInt8($0 % 251) }), mode: 0o4750, uid: 1000, gid: 100),
        PersistEntry(path: "root/empty", kind: .file([]), mode: 0o600),
        PersistEntry(path: deep, kind: .directory(opaque: false), mode: 0o755),
        PersistEntry(path: deep + "/" + String(repeating: "f", count: 90), kind: .file([1, 2, 3])),
        PersistEntry(path: tooLong, kind: .file([4, 5])),
    ]
}

@Suite struct TarCodecTests {
    @Test func everyKindRoundTrips() throws {
        let entries = sampleEntries()
        let tar = TarCodec.encode(entries)
        #expect(tar.count % 512 == 0)
        #expect(try TarCodec.decode(tar) == entries)
    }

    @Test func aWhiteoutIsACharacterDevice00AndAnOpaqueDirectoryAPaxXattr() throws {
        let tar = TarCodec.encode([PersistEntry(path: "etc/motd", kind: .whiteout, mode: 0)])
        #expect(tar[156] == UInt8(ascii: "3"))
        #expect(Array(tar[329..<344]) == Array("0000000\u{0}0000000".utf8))
        let opaque = TarCodec.encode([PersistEntry(path: "etc/ssh", kind: .directory(opaque: true), mode: 0o700)])
        #expect(opaque[156] == UInt8(ascii: "x"))
        #expect(String(decoding: opaque[512..<560], as: UTF8.self).contains("SCHILY.xattr.trusted.overlay.opaque=y\n"))
    }

    /// GNU tar lists what the codec writes: a user can look inside with standard tools.
    @Test func gnuTarListsIt() throws {
        let path = "/tmp/spirit-test-tar-\(getpid()).tar"
        defer { Kernel.remove(path) }
        try Kernel.writeFile(path, bytes: PersistArchive.seal(sampleEntries(), time: 0))
        let out = path + ".txt"
        defer { Kernel.remove(out) }
        let pid = try Spawn.spawn("/bin/sh", ["sh", "-c", "tar --numeric-owner -tvf \"$0\" > \"$1\" 2>&1", path, out])
        #expect(try Spawn.wait(pid)?.status == .exited(0), "\((try? Kernel.readText(out)) ?? "")")
        let listing = try Kernel.readText(out)
        #expect(listing.contains("crw-------") || listing.contains("c---------"), "\(listing)")
        #expect(listing.contains("etc/hostname"))
        #expect(listing.contains("root/.profile -> /etc/profile"))
        #expect(listing.contains("rwsr-x--- 1000/100"))
        #expect(listing.contains("root/" + String(repeating: "x", count: 260)))
    }

    @Test(arguments: ["../etc/passwd", "/etc/passwd", "etc/../../x", "etc//x", "./"])
    func anUnsafePathIsRefused(_ path: String) {
        let tar = TarCodec.encode([PersistEntry(path: path, kind: .file([1]))])
        #expect(throws: PersistError.self) { try TarCodec.decode(tar) }
    }

    @Test func aFlippedHeaderBitIsFoundByTheHeaderChecksum() {
        var tar = TarCodec.encode(sampleEntries())
        tar[3] ^= 0x20
        #expect(throws: PersistError.notAnArchive("a bad tar header checksum at byte 0")) { try TarCodec.decode(tar) }
    }
}

@Suite struct PersistArchiveTests {
    let fast = PersistArchive.KDFParameters(n: 1 << 10, r: 8, p: 1)

    @Test func aPlainArchiveRoundTripsWithItsTrailer() throws {
        let file = try PersistArchive.seal(sampleEntries(), time: 1_764_115_200)
        let trailer = String(decoding: file.suffix(512).prefix { $0 != 0 }, as: UTF8.self)
        #expect(trailer.hasPrefix("SPIRIT-PERSIST 1 cipher=none size=\(file.count - 512) time=1764115200 sha256="))
        #expect(trailer.hasSuffix("\n"))
        let (info, entries) = try PersistArchive.open(file)
        #expect(entries == sampleEntries())
        #expect(!info.encrypted && info.time == 1_764_115_200 && info.size == file.count - 512)
    }

    @Test(arguments: [1, 100, 511, 512, 513, 4096])
    func aTruncatedFileIsRefusedWhole(_ cut: Int) throws {
        let file = try PersistArchive.seal(sampleEntries(), time: 0)
        #expect(throws: PersistError.self) { try PersistArchive.open(Array(file.dropLast(cut))) }
        // Cut only inside the archive, the trailer still there: truncated, by its size.
        var inside = file
        inside.removeSubrange(1000..<(1000 + cut))
        do {
            _ = try PersistArchive.open(inside)
            Issue.record("a file cut short was accepted")
        } catch {
            #expect(error == .truncated("the trailer says \(file.count - 512) bytes of archive, the file holds \(file.count - 512 - cut)"))
        }
    }

    @Test func anEmptyFileIsTruncated() {
        #expect(throws: PersistError.truncated("0 bytes, less than the 512-byte trailer")) { try PersistArchive.open([]) }
    }

    /// A bit flipped anywhere: in a file's content (which no tar checksum
    /// covers), in a header, in the padding, in the trailer's fields.
    @Test func aFlippedBitAnywhereIsFound() throws {
        let file = try PersistArchive.seal(sampleEntries(), time: 7)
        let trailerStart = file.count - 512
        for position in [0, 700, 1030, 2000, trailerStart - 1, trailerStart + 20, trailerStart + 40, file.count - 512 + 100] {
            var flipped = file
            flipped[position] ^= 0x01
            #expect(throws: PersistError.self, "byte \(position)") { try PersistArchive.open(flipped) }
        }
        var content = file
        content[1100] ^= 0x80  // inside etc/hostname's data block
        #expect(throws: PersistError.damaged("its SHA-256 does not match the one in its trailer")) { try PersistArchive.open(content) }
    }

    @Test func anEncryptedArchiveNeedsItsPassphrase() throws {
        let passphrase = Array("correct horse battery staple".utf8)
        let file = try PersistArchive.seal(sampleEntries(), time: 9, passphrase: passphrase, kdf: fast)
        // Nothing of the content shows.
        #expect(!String(decoding: file, as: UTF8.self).contains("spirit-box"))
        let trailer = try PersistArchive.check(file)
        #expect(trailer.encrypted && trailer.kdf == fast && trailer.salt.count == 16)
        #expect(try PersistArchive.open(file, passphrase: passphrase).1 == sampleEntries())
        #expect(throws: PersistError.needsPassphrase) { try PersistArchive.open(file) }
        #expect(throws: PersistError.wrongPassphrase) { try PersistArchive.open(file, passphrase: Array("wrong".utf8)) }
        // Damage is told apart from a wrong passphrase: the checksum comes first.
        var flipped = file
        flipped[40] ^= 0x01
        #expect(throws: PersistError.damaged("its SHA-256 does not match the one in its trailer")) {
            try PersistArchive.open(flipped, passphrase: passphrase)
        }
        // Two commits of the same content differ (new salt and nonce).
        #expect(try PersistArchive.seal(sampleEntries(), time: 9, passphrase: passphrase, kdf: fast) != file)
    }

    /// A trailer with a right checksum that asks for 4 GiB of scrypt is
    /// refused before any key is derived.
    @Test func anArchiveCannotAskForAHugeKDF() throws {
        let sealed = try PersistArchive.seal([], time: 0, passphrase: [1], kdf: fast)
        let payload = Array(sealed.dropLast(512))
        let line = String(decoding: sealed.suffix(512).prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        let head = String(line.dropLast(64 + 8)).replacing("n=1024 ", with: "n=4194304 ") + " sha256="
        let sha = Hex.encode(SHA256.hash(data: payload + Array(head.utf8)))
        let trailer = Array((head + sha + "\n").utf8)
        let file = payload + trailer + [UInt8](repeating: 0, count: 512 - trailer.count)
        #expect(throws: PersistError.notAnArchive("scrypt parameters out of bounds (n=4194304 r=8 p=1)")) { try PersistArchive.check(file) }
    }

    @Test func defaultKDFIsScrypt32MiB() {
        let kdf = PersistArchive.KDFParameters()
        #expect(kdf.n == 32768 && kdf.r == 8 && kdf.p == 1)
    }
}
