import Glibc
@testable import Nexus
import SpiritCore
import Testing

@Suite struct PNGTests {
    @Test func checksumsMatchTheirKnownVectors() {
        #expect(PNG.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(PNG.crc32([]) == 0)
        #expect(PNG.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
        #expect(PNG.adler32([]) == 1)
        // Long enough to need the modulo more than once.
        #expect(PNG.adler32([UInt8](repeating: 0xFF, count: 100_000)) == 0x149A_302C)
        // The IEND chunk every PNG ends with.
        #expect(PNG.chunk("IEND", []) == [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82])
    }

    @Test func storedBlocksSplitAt65535Bytes() {
        let data = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let stream = PNG.zlibStored(data)
        #expect(stream.count == 2 + (5 + 65535) + (5 + 4465) + 4)
        #expect(Array(stream[0..<7]) == [0x78, 0x01, 0x00, 0xFF, 0xFF, 0x00, 0x00])
        #expect(Array(stream[(2 + 5 + 65535)..<(2 + 5 + 65535 + 5)]) == [0x01, 0x71, 0x11, 0x8E, 0xEE])
        #expect(inflateStored(stream) == data)
        #expect(PNG.zlibStored([]) == [0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01])
    }

    @Test func aFrameRoundTripsThroughTheChunks() throws {
        var buffer = PixelBuffer(width: 3, height: 2, pitch: 16, fill: Color(0x0B0F14))
        buffer.plot(x: 2, y: 1, Color(0x2A9D8F))
        let png = PNG.encode(buffer)
        #expect(Array(png[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var chunks: [(String, [UInt8])] = []
        var offset = 8
        while offset < png.count {
            let length = Int(png[offset]) << 24 | Int(png[offset + 1]) << 16 | Int(png[offset + 2]) << 8 | Int(png[offset + 3])
            let typeAndData = Array(png[(offset + 4)..<(offset + 8 + length)])
            let crc = png[(offset + 8 + length)..<(offset + 12 + length)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            #expect(crc == PNG.crc32(typeAndData))
            chunks.append((String(decoding: typeAndData.prefix(4), as: UTF8.self), Array(typeAndData.dropFirst(4))))
            offset += 12 + length
        }
        #expect(chunks.map(\.0) == ["IHDR", "IDAT", "IEND"])
        #expect(chunks[0].1 == [0, 0, 0, 3, 0, 0, 0, 2, 8, 2, 0, 0, 0])
        #expect(inflateStored(chunks[1].1) == [0, 0x0B, 0x0F, 0x14, 0x0B, 0x0F, 0x14, 0x0B, 0x0F, 0x14,
                                               0, 0x0B, 0x0F, 0x14, 0x0B, 0x0F, 0x14, 0x2A, 0x9D, 0x8F])
    }

    /// An independent reader: Python's zlib inflates the IDAT and checks
    /// every CRC, on the build host (Debian's python3).
    @Test(.enabled(if: Kernel.exists("/usr/bin/python3")))
    func pythonsZlibReadsIt() throws {
        var buffer = PixelBuffer(width: 300, height: 250, fill: Color(0x0B0F14))
        buffer.fill(Rect(x: 10, y: 10, width: 100, height: 50), Color(0x2A9D8F))
        let directory = "/tmp/nexus-png-test-\(getpid())"
        try Kernel.makeDirectory(directory)
        defer { _ = unlink(directory + "/frame.png"); _ = unlink(directory + "/check.py"); _ = unlink(directory + "/out"); _ = rmdir(directory) }
        let png = PNG.encode(buffer)
        let file = fopen(directory + "/frame.png", "wb")
        #expect(fwrite(png, 1, png.count, file) == png.count)
        fclose(file)
        try Kernel.writeFile(directory + "/check.py", """
            import struct, sys, zlib
            data = open(sys.argv[1], "rb").read()
            assert data[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
            pos, idat = 8, b""
            while pos < len(data):
                length, kind = struct.unpack(">I4s", data[pos:pos + 8])
                body = data[pos + 8:pos + 8 + length]
                assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0], kind
                if kind == b"IHDR": width, height = struct.unpack(">II", body[:8])
                if kind == b"IDAT": idat += body
                pos += 12 + length
            raw = zlib.decompress(idat)
            row = 1 + width * 3
            def pixel(x, y): return raw[y * row + 1 + x * 3:y * row + 4 + x * 3].hex()
            open(sys.argv[2], "w").write("%dx%d %s %s %d" % (width, height, pixel(10, 10), pixel(110, 10), len(raw)))
            """)
        let pid = try Spawn.spawn("/usr/bin/python3", ["python3", directory + "/check.py", directory + "/frame.png", directory + "/out"])
        let status = try Spawn.wait(pid)?.status
        #expect(status == .exited(0))
        #expect(try Kernel.readText(directory + "/out") == "300x250 2a9d8f 0b0f14 \(250 * 901)")
    }
}

/// Inflates a zlib stream of stored blocks, checking the header and the Adler-32.
func inflateStored(_ stream: [UInt8]) -> [UInt8]? {
    guard stream.count >= 6, stream[0] == 0x78, (Int(stream[0]) << 8 | Int(stream[1])) % 31 == 0 else { return nil }
    var out: [UInt8] = []
    var offset = 2
    while true {
        let header = stream[offset]
        guard header & 0x06 == 0 else { return nil } // only stored blocks
        let length = Int(stream[offset + 1]) | Int(stream[offset + 2]) << 8
        let inverse = Int(stream[offset + 3]) | Int(stream[offset + 4]) << 8
        guard length ^ inverse == 0xFFFF else { return nil }
        out += stream[(offset + 5)..<(offset + 5 + length)]
        offset += 5 + length
        if header & 1 == 1 { break }
    }
    let adler = stream[offset..<(offset + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    return adler == PNG.adler32(out) && offset + 4 == stream.count ? out : nil
}
