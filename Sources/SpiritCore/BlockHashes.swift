import Crypto

/// The SHA-256 of each fixed-size block of an image, in order: what lets a
/// reader that fetches blocks from several peers check every block as it
/// arrives and name the peer that sent a bad one. The list's own SHA-256 is
/// in the signed manifest (`Manifest.Blocks`), so a list a peer hands over
/// is trusted only once it hashes to that.
///
/// Why a hash list of our own rather than dm-verity: the copy reads the
/// image in user space from several peers at once, and must know WHICH
/// peer sent a block that does not match, to drop that peer and go on with
/// the others. dm-verity checks reads of one kernel block device: it can
/// say a sector is bad, never from which of the peers behind it the bytes
/// came. A flat list (one level: 32 bytes per MiB, 16 KiB for a 512 MiB
/// image) is all a reader that holds the whole list needs; a deeper tree
/// would only pay off for proving single blocks without the list.
public struct BlockHashes: Sendable, Equatable {
    public static let defaultBlockSize = 1 << 20
    public static let digestSize = 32

    public let blockSize: Int
    public let imageSize: Int64
    /// One 32-byte digest per block, the last block possibly short.
    public let digests: [[UInt8]]

    public init(blockSize: Int, imageSize: Int64, digests: [[UInt8]]) {
        self.blockSize = blockSize
        self.imageSize = imageSize
        self.digests = digests
    }

    /// Without `imageSize + blockSize - 1`, which a hostile manifest's size
    /// near Int64.max would overflow.
    public static func blockCount(imageSize: Int64, blockSize: Int) -> Int {
        let size = Int64(blockSize)
        return Int(imageSize / size + (imageSize % size == 0 ? 0 : 1))
    }

    public var count: Int { digests.count }

    /// The byte range of block `index` in the image.
    public func range(of index: Int) -> (offset: Int64, length: Int) {
        let offset = Int64(index) * Int64(blockSize)
        return (offset, Int(min(Int64(blockSize), imageSize - offset)))
    }

    /// The list as it is served and hashed: the digests back to back.
    public var encoded: [UInt8] { digests.flatMap { $0 } }

    /// The SHA-256 of `encoded`, hex: what the manifest signs.
    public var listSHA256: String { Hex.encode(SHA256Digest.of(encoded)) }

    /// Reads a list served by a peer, trusted only if it hashes to the
    /// manifest's `blocks_sha256` and has one digest per block.
    public static func parse(_ bytes: [UInt8], blocks: Manifest.Blocks, imageSize: Int64) throws(ManifestError) -> BlockHashes {
        let count = blockCount(imageSize: imageSize, blockSize: blocks.blockSize)
        guard bytes.count == count * digestSize else {
            throw .malformed("the block list is \(bytes.count) bytes; \(count) blocks of \(blocks.blockSize) bytes need \(count * digestSize)")
        }
        let digest = Hex.encode(SHA256Digest.of(bytes))
        guard digest == blocks.sha256 else {
            throw .imageMismatch("the block list's SHA-256 is \(digest.prefix(12)), the manifest says \(blocks.sha256.prefix(12))")
        }
        let digests = stride(from: 0, to: bytes.count, by: digestSize).map { Array(bytes[$0..<($0 + digestSize)]) }
        return BlockHashes(blockSize: blocks.blockSize, imageSize: imageSize, digests: digests)
    }

    /// Whether `bytes` are block `index` (its length included).
    public func verify(_ index: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard index >= 0, index < digests.count, bytes.count == range(of: index).length else { return false }
        return Array(SHA256.hash(data: bytes)) == digests[index]
    }

    public func verify(_ index: Int, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { verify(index, $0) }
    }

    /// The blocks of `image` that do not match, by index (a whole image
    /// checked against the list).
    public func mismatches(in image: [UInt8]) -> [Int] {
        guard Int64(image.count) == imageSize else { return Array(0..<count) }
        return (0..<count).filter { index in
            let (offset, length) = range(of: index)
            return image.withUnsafeBytes { !verify(index, UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<(Int(offset) + length)])) }
        }
    }

    /// The list of `image`, in memory.
    public static func of(_ image: [UInt8], blockSize: Int = defaultBlockSize) -> BlockHashes {
        var builder = BlockHashBuilder(blockSize: blockSize)
        image.withUnsafeBytes { builder.update($0) }
        return builder.finish()
    }
}

/// Builds a block list from an image fed in pieces of any size (the image
/// build, and Nodus before it serves, hash it as they read it).
public struct BlockHashBuilder: Sendable {
    public let blockSize: Int
    var hasher = SHA256()
    var filled = 0
    var total: Int64 = 0
    var digests: [[UInt8]] = []

    public init(blockSize: Int = BlockHashes.defaultBlockSize) {
        precondition(blockSize > 0)
        self.blockSize = blockSize
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let n = min(blockSize - filled, rest.count)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: rest.prefix(n)))
            rest = rest.dropFirst(n)
            filled += n
            total += Int64(n)
            if filled == blockSize {
                digests.append(Array(hasher.finalize()))
                hasher = SHA256()
                filled = 0
            }
        }
    }

    public func finish() -> BlockHashes {
        var digests = digests
        if filled > 0 { digests.append(Array(hasher.finalize())) }
        return BlockHashes(blockSize: blockSize, imageSize: total, digests: digests)
    }
}
