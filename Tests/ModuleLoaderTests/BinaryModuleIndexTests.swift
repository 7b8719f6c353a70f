import Glibc
@testable import ModuleLoader
import SpiritCore
import Testing

@Suite struct BinaryModuleIndexTests {
    static let release = "6.1.0-test"
    static let fixture = ModuleIndexTests.root + "/lib/modules/" + release
    static let sizes: [UInt64] = [1, 2, 3, 4, 5]

    func textIndex() throws -> ModuleIndex { try ModuleIndex.readText(Self.fixture) }

    /// What a resolver answers, as plain values, for comparing two indexes.
    func answers(_ index: ModuleIndex) -> [String] {
        let queries = ["usb-storage", "ext4", "overlay", "crypto-crc32c", "no_such", "symbol:jbd2_journal_start",
                       "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00", "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00",
                       "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02"]
        var lines = queries.map { $0 + " → " + index.lookup($0).joined(separator: " ") }
        lines += index.paths.keys.sorted().map { "\($0) \(index.paths[$0]!) \(index.dependencies[$0] ?? [])" }
        lines += index.builtin.sorted()
        lines += index.exactAliases.keys.sorted().map { "\($0) \(index.exactAliases[$0]!)" }
        lines += index.globAliases.map { "\($0.pattern) \($0.module)" }
        lines += index.globsByPrefix.keys.sorted().map { "prefix \($0) \(index.globsByPrefix[$0]!)" }
        lines += index.symbols.keys.sorted().map { "\($0) \(index.symbols[$0]!)" }
        lines += index.softdeps.keys.sorted().map { "\($0) \(index.softdeps[$0]!.pre) \(index.softdeps[$0]!.post)" }
        let plan = index.plan(["uas", "ext4", "overlay", "no_such"])
        lines.append("\(plan.modules.map(\.name)) \(plan.builtin) \(plan.missing)")
        return lines
    }

    @Test func aRoundTripGivesTheSameAnswersAndTheSameBytes() throws {
        let text = try textIndex()
        let bytes = BinaryModuleIndex.encode(text, sourceSizes: Self.sizes)
        let (decoded, sizes) = try BinaryModuleIndex.decode(bytes, file: "modules.spirit")
        #expect(sizes == Self.sizes)
        #expect(answers(decoded) == answers(text))
        #expect(!decoded.globAliases.isEmpty && !decoded.exactAliases.isEmpty && !decoded.symbols.isEmpty && !decoded.softdeps.isEmpty)
        // Reproducible: the same index, in any process, gives the same bytes.
        #expect(BinaryModuleIndex.encode(decoded, sourceSizes: Self.sizes) == bytes)
        #expect(BinaryModuleIndex.encode(try textIndex(), sourceSizes: Self.sizes) == bytes)
    }

    @Test func anEmptyIndexRoundTrips() throws {
        let bytes = BinaryModuleIndex.encode(ModuleIndex(modulesDep: ""), sourceSizes: Self.sizes)
        let (decoded, _) = try BinaryModuleIndex.decode(bytes, file: "empty")
        #expect(decoded.paths.isEmpty && decoded.globAliases.isEmpty && decoded.lookup("ext4").isEmpty)
    }

    func refusal(_ bytes: [UInt8]) -> String? {
        do {
            _ = try BinaryModuleIndex.decode(bytes, file: "/lib/modules/x/modules.spirit")
            return nil
        } catch {
            return error.description
        }
    }

    @Test func everyCutIsRefusedNamingTheFile() throws {
        let bytes = BinaryModuleIndex.encode(try textIndex(), sourceSizes: Self.sizes)
        for length in 0..<bytes.count {
            let message = refusal(Array(bytes.prefix(length)))
            #expect(message?.hasPrefix("unable to read the binary module index /lib/modules/x/modules.spirit: ") == true, "cut at \(length)")
            #expect(message?.contains("truncated") == true, "cut at \(length): \(message ?? "accepted")")
        }
        #expect(refusal(bytes + [0])?.contains("1 bytes after its end") == true)
    }

    @Test func damageIsRefused() throws {
        let bytes = BinaryModuleIndex.encode(try textIndex(), sourceSizes: Self.sizes)
        var foreign = bytes
        foreign[0] = UInt8(ascii: "X")
        #expect(refusal(foreign)?.contains("not a Spirit module index") == true)
        var newer = bytes
        newer[8] = 2
        #expect(refusal(newer)?.contains("format version 2, this spirit reads version 1") == true)
        // Any payload byte changed: the checksum says so.
        for offset in stride(from: BinaryModuleIndex.headerSize, to: bytes.count, by: 7) {
            var damaged = bytes
            damaged[offset] ^= 0x40
            #expect(refusal(damaged)?.contains("checksum mismatch") == true, "byte \(offset)")
        }
    }

    /// A file whose checksum is right but whose tables are not (a bug in
    /// a writer, not damage): refused, not trapped on.
    @Test func badTablesWithAGoodChecksumAreRefused() throws {
        var index = try textIndex()
        // Its last word is then a string number: crc16's.
        index.softdeps["ext4"] = SoftDependencies(pre: ["crypto-crc32c"], post: ["crc16"])
        let bytes = BinaryModuleIndex.encode(index, sourceSizes: Self.sizes)
        #expect(refusal(bytes) == nil)
        func resealed(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
            var file = bytes
            change(&file)
            let sum = BinaryModuleIndex.checksum(file[BinaryModuleIndex.headerSize...])
            for i in 0..<8 { file[24 + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt64(i))) }
            return file
        }
        let badString = resealed { file in file[file.count - 4..<file.count] = [0xff, 0xff, 0, 0] }
        #expect(refusal(badString)?.contains("string 65535 of") == true)
        // More strings than the payload could hold.
        let tooMany = resealed { file in file[12..<16] = [0xff, 0xff, 0xff, 0x0f] }
        #expect(refusal(tooMany)?.contains("strings cannot fit") == true)
    }

    /// A copy of the fixture's kernel directory in a fresh temporary root.
    func scratchRoot() throws -> String {
        var template = Array("/tmp/spirit-modindex-XXXXXX".utf8CString)
        let root = String(cString: mkdtemp(&template)!)
        let directory = root + "/lib/modules/" + Self.release
        _ = system("mkdir -p '\(directory)'")
        for name in BinaryModuleIndex.sourceFiles {
            let bytes = try Kernel.readFile(Self.fixture + "/" + name)
            try Kernel.writeFile(directory + "/" + name, bytes: bytes)
        }
        return root
    }

    @Test func theLoaderReadsTheBinaryIndexAndFallsBackToTheText() throws {
        let root = try scratchRoot()
        defer { _ = system("rm -rf '\(root)'") }
        let directory = root + "/lib/modules/" + Self.release
        let configs = [ModuleIndexTests.root + "/etc/modprobe.d"]
        func load() throws -> (ModuleIndex, [String]) {
            var problems: [String] = []
            let index = try ModuleIndex.load(root: root, release: Self.release, configDirectories: configs) { problems.append("\($0)") }
            return (index, problems)
        }
        let (text, noBinary) = try load()
        #expect(noBinary == ["no binary module index at \(directory)/modules.spirit; reading the text files"])

        let written = try ModuleIndex.writeBinary(directory)
        #expect(written.path == directory + "/modules.spirit")
        let (binary, none) = try load()
        #expect(none.isEmpty)
        #expect(answers(binary) == answers(text))
        // modprobe.d still applies: the fixture blacklists e1000e.
        #expect(binary.config.blacklist.contains("e1000e"))

        // depmod ran again since: the index is stale, the text files answer.
        try Kernel.writeFile(directory + "/modules.dep", "kernel/fs/extra.ko:\n", append: true)
        let (fresh, stale) = try load()
        #expect(stale.count == 1 && stale[0].contains("is stale: modules.dep is"))
        #expect(fresh.paths["extra"] == "kernel/fs/extra.ko")

        // A damaged file: said, and the text files answer (old and broken images still boot).
        try Kernel.writeFile(directory + "/modules.spirit", bytes: Array("SPIRITMI".utf8))
        let (fallback, damaged) = try load()
        #expect(damaged == ["unable to read the binary module index \(directory)/modules.spirit: truncated (8 bytes, shorter than its "
                            + "32-byte header); reading the text files"])
        #expect(fallback.paths["extra"] != nil)
    }
}
