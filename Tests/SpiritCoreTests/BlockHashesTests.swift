import SpiritCore
import Testing

@Suite struct BlockHashesTests {
    /// 10 blocks of 4 KiB and a short eleventh.
    let image: [UInt8] = {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<(10 * 4096 + 1000)).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return UInt8(truncatingIfNeeded: state >> 32)
        }
    }()

    var publicKey: [UInt8] { try! SigningKey.publicKey(forPrivateKey: TestOnlyKey.privateKey) }

    @Test func buildsOneDigestPerBlockAndVerifiesEach() {
        let list = BlockHashes.of(image, blockSize: 4096)
        #expect(list.count == 11)
        #expect(list.encoded.count == 11 * 32)
        #expect(list.range(of: 10) == (40960, 1000))
        for index in 0..<list.count {
            let (offset, length) = list.range(of: index)
            #expect(list.verify(index, Array(image[Int(offset)..<Int(offset) + length])))
        }
        #expect(list.mismatches(in: image).isEmpty)
        // A block's bytes are not another block's, nor a short read of it.
        #expect(!list.verify(1, Array(image[0..<4096])))
        #expect(!list.verify(10, Array(image[40960..<41959])))
        #expect(!list.verify(11, []))
    }

    @Test func aFlippedByteIsNamedByItsBlock() {
        let list = BlockHashes.of(image, blockSize: 4096)
        var tampered = image
        tampered[7 * 4096 + 123] ^= 0x40
        #expect(list.mismatches(in: tampered) == [7])
        tampered[40960] ^= 1
        #expect(list.mismatches(in: tampered) == [7, 10])
    }

    @Test func piecesOfAnySizeBuildTheSameList() {
        let whole = BlockHashes.of(image, blockSize: 4096)
        var builder = BlockHashBuilder(blockSize: 4096)
        var offset = 0
        for size in [1, 4095, 4097, 3, 10_000, 100_000] where offset < image.count {
            let end = min(image.count, offset + size)
            image[offset..<end].withUnsafeBytes { builder.update($0) }
            offset = end
        }
        #expect(builder.finish() == whole)
    }

    @Test func aListIsTrustedOnlyIfItHashesToTheManifest() throws {
        let list = BlockHashes.of(image, blockSize: 4096)
        let blocks = Manifest.Blocks(blockSize: 4096, sha256: list.listSHA256)
        #expect(try BlockHashes.parse(list.encoded, blocks: blocks, imageSize: Int64(image.count)) == list)
        var forged = list.encoded
        forged[40] ^= 1
        #expect(throws: ManifestError.self) { try BlockHashes.parse(forged, blocks: blocks, imageSize: Int64(image.count)) }
        #expect(throws: ManifestError.self) { try BlockHashes.parse(Array(list.encoded.dropLast(32)), blocks: blocks, imageSize: Int64(image.count)) }
    }

    func manifest(blocks: Manifest.Blocks?) throws -> Manifest {
        try Manifest(image: "rootfs.squashfs", size: Int64(image.count), sha256: sha256Hex(image), version: "0.2.0",
                     buildTime: 1_795_355_103, blocks: blocks).signed(privateKey: TestOnlyKey.privateKey)
    }

    @Test func theManifestCarriesTheListSignedOnItsOwn() throws {
        let list = BlockHashes.of(image, blockSize: 4096)
        let signed = try manifest(blocks: Manifest.Blocks(blockSize: 4096, sha256: list.listSHA256))
        let parsed = try Manifest.parse(Array(signed.json.utf8))
        #expect(parsed == signed)
        #expect(parsed.blocks?.signature != nil)
        try parsed.verifySignature(publicKey: publicKey)
        // The image's signature covers the same text as before block lists:
        // an older initramfs, which ignores the block members, still accepts it.
        let without = try manifest(blocks: nil)
        #expect(parsed.signature == without.signature)

        // A block list swapped for another (with the image's signature kept) is refused.
        var tampered = parsed
        tampered.blocks?.sha256 = String(repeating: "0", count: 64)
        #expect(throws: ManifestError.self) { try tampered.verifySignature(publicKey: publicKey) }
        var unsigned = parsed
        unsigned.blocks?.signature = nil
        #expect(throws: ManifestError.self) { try unsigned.verifySignature(publicKey: publicKey) }
    }

    @Test func malformedBlockMembersAreRefused() throws {
        let signed = try manifest(blocks: Manifest.Blocks(blockSize: 4096, sha256: BlockHashes.of(image, blockSize: 4096).listSHA256))
        for (from, to) in [("\"block_size\": 4096", "\"block_size\": 4000"), ("\"block_size\": 4096", "\"block_size\": 1024"),
                           ("\"blocks_sha256\": \"", "\"blocks_sha256\": \"x")] {
            let json = signed.json.replacing(from, with: to)
            #expect(json != signed.json)
            #expect(throws: ManifestError.self) { try Manifest.parse(Array(json.utf8)) }
        }
    }
}
