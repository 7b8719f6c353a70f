import Crypto
import Glibc
import Overlay
import SpiritCore
import Testing

@Suite struct ZramTests {
    @Test func halfOfMemoryUpTo16GiB() {
        #expect(Zram.sizeBytes(memTotalKiB: 1_000_000, ramLimitMiB: nil) == 512_000_000)
        #expect(Zram.sizeBytes(memTotalKiB: 64 << 20, ramLimitMiB: nil) == 16 << 30)
        #expect(Zram.sizeBytes(memTotalKiB: 32 << 20, ramLimitMiB: nil) == 16 << 30)
        #expect(Zram.sizeBytes(memTotalKiB: 8 << 20, ramLimitMiB: nil) == 4 << 30)
    }

    @Test func ramLimitReplacesTheRule() {
        #expect(Zram.sizeBytes(memTotalKiB: 8 << 20, ramLimitMiB: 256) == 256 << 20)
        #expect(Zram.sizeBytes(memTotalKiB: 1 << 20, ramLimitMiB: 4096) == 4 << 30)
    }

    @Test func memTotal() {
        #expect(Zram.memTotalKiB(meminfo: "MemTotal:         983552 kB\nMemFree: 1 kB\n") == 983_552)
        #expect(Zram.memTotalKiB(meminfo: "MemFree: 1 kB\n") == nil)
    }

    @Test func algorithmsBestFirst() {
        #expect(Zram.candidates(available: "lzo lzo-rle lz4 lz4hc 842 [zstd]\n") == ["zstd", "lz4", "lzo-rle", "lzo"])
        #expect(Zram.candidates(available: "lzo [lzo-rle] lz4\n") == ["lz4", "lzo-rle", "lzo"])
        #expect(Zram.candidates(available: "[lzo]") == ["lzo"])
        #expect(Zram.candidates(available: "842").isEmpty)
    }
}

@Suite struct RootLayoutTests {
    let layout = RootLayout()

    @Test func mountOptionStrings() {
        #expect(layout.overlayMount().description
                == "mount -t overlay -o lowerdir=/run/spirit/lower,upperdir=/run/spirit/rw/upper,workdir=/run/spirit/rw/work overlay /sysroot")
        #expect(layout.squashfsMount(loopDevice: "/dev/loop0").description == "mount -t squashfs -o ro /dev/loop0 /run/spirit/lower")
        #expect(layout.readWriteMount(.zram, zramDevice: "/dev/zram0", bytes: 512 << 20).description
                == "mount -t ext4 -o nosuid,nodev,discard /dev/zram0 /run/spirit/rw")
        #expect(layout.readWriteMount(.tmpfs, zramDevice: "/dev/zram0", bytes: 512 << 20).description
                == "mount -t tmpfs -o nosuid,nodev,mode=0755,size=512m spirit-rw /run/spirit/rw")
        #expect(layout.mediaMount(device: "/dev/sr0", fstype: "iso9660").description
                == "mount -t iso9660 -o ro,nosuid,nodev,noexec /dev/sr0 /run/spirit/media")
        #expect(layout.mediaMount(device: "/dev/sda1", fstype: "vfat").description
                == "mount -t vfat -o ro,nosuid,nodev,noexec,iocharset=utf8 /dev/sda1 /run/spirit/media")
    }

    @Test func imageTmpfsFitsTheImage() {
        #expect(layout.imageMount(imageBytes: 43_548_672).data == "mode=0700,size=43m")
        #expect(layout.imageMount(imageBytes: (41 << 20) + 1).data == "mode=0700,size=43m")
        #expect(layout.imageMount(imageBytes: 0).data == "mode=0700,size=1m")
    }
}

/// An image source that plays the network: chunks of fixed sizes.
struct ChunkedStream: ImageStream {
    var bytes: [UInt8]
    var chunk: Int
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(chunk, buffer.count, bytes.count)
        buffer.copyBytes(from: bytes[0..<n])
        bytes.removeFirst(n)
        return n
    }
    func close() {}
}

@Suite struct ImageCopyTests {
    @Test func copiesAndHashesInOnePass() throws {
        let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var stream = ChunkedStream(bytes: data, chunk: 7_777)
        let result = try ImageCopy.copy(from: &stream, to: "/dev/null", expectedSize: Int64(data.count))
        #expect(result.size == Int64(data.count))
        var whole = ChunkedStream(bytes: data, chunk: data.count)
        #expect(try ImageCopy.copy(from: &whole, to: "/dev/null", expectedSize: Int64(data.count)).sha256 == result.sha256)
    }

    @Test func knownDigest() throws {
        var stream = ChunkedStream(bytes: Array("abc".utf8), chunk: 1)
        #expect(try ImageCopy.copy(from: &stream, to: "/dev/null", expectedSize: 3).sha256
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// Many more chunks than the hasher's ring has buffers, of sizes that
    /// never line up with them: the file gets every byte in order, and the
    /// digest is the one-shot SHA-256 of the whole.
    @Test func theBackgroundHashKeepsTheOrder() throws {
        let data = (0..<(7 << 20 + 12_345)).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
        let path = "/tmp/spirit-image-copy-test-\(getpid())"
        defer { unlink(path) }
        var stream = ChunkedStream(bytes: data, chunk: 300_001)
        let result = try ImageCopy.copy(from: &stream, to: path, expectedSize: Int64(data.count))
        #expect(result.sha256 == Hex.encode(SHA256.hash(data: data)))
        #expect(try Kernel.readFile(path) == data)
    }

    @Test func aSourceThatFailsMidwayIsAnError() {
        struct Failing: ImageStream {
            var left = 5
            mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
                left -= 1
                if left == 0 { throw SpiritError("the connection broke") }
                buffer.initializeMemory(as: UInt8.self, repeating: 7)
                return buffer.count
            }
            func close() {}
        }
        var stream = Failing()
        #expect(throws: SpiritError.self) { try ImageCopy.copy(from: &stream, to: "/dev/null", expectedSize: 1 << 30) }
    }

    @Test func stopsWhenTheSourceSendsMoreThanPromised() {
        var stream = ChunkedStream(bytes: [UInt8](repeating: 1, count: 100), chunk: 10)
        #expect(throws: SpiritError.self) { try ImageCopy.copy(from: &stream, to: "/dev/null", expectedSize: 50) }
    }
}
