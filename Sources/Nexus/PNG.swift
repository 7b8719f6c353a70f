/// A PNG writer for `spirit nexus screenshot`: 8-bit RGB, filter 0, and
/// zlib's *stored* (uncompressed) deflate blocks. Screenshots are rare and
/// a zlib in the binary is not worth it for them; a 1024×768 frame comes
/// to about 2.4 MB, which any PNG reader takes.
public enum PNG {
    public static func encode(_ buffer: PixelBuffer) -> [UInt8] {
        // Each row: filter type 0, then R, G, B per pixel.
        var raw: [UInt8] = []
        raw.reserveCapacity(buffer.height * (1 + buffer.width * 3))
        for y in 0..<buffer.height {
            raw.append(0)
            for x in 0..<buffer.width {
                let pixel = buffer.pixels[y * buffer.stride + x]
                raw.append(UInt8(truncatingIfNeeded: pixel >> 16))
                raw.append(UInt8(truncatingIfNeeded: pixel >> 8))
                raw.append(UInt8(truncatingIfNeeded: pixel))
            }
        }
        var header: [UInt8] = []
        header += bigEndian(UInt32(buffer.width))
        header += bigEndian(UInt32(buffer.height))
        header += [8, 2, 0, 0, 0] // depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + chunk("IHDR", header) + chunk("IDAT", zlibStored(raw)) + chunk("IEND", [])
    }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeAndData = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + typeAndData + bigEndian(crc32(typeAndData))
    }

    /// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4),
    /// at most 65535 bytes each.
    public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        // CMF 0x78: deflate, 32 KiB window; FLG 0x01 makes CMF·256+FLG a multiple of 31.
        var out: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let length = min(65535, data.count - offset)
            let final: UInt8 = offset + length == data.count ? 1 : 0
            out.append(final) // BFINAL, BTYPE 00; the rest of the byte is padding
            out += [UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8((~length >> 8) & 0xFF)]
            out += data[offset..<(offset + length)]
            offset += length
        } while offset < data.count
        return out + bigEndian(adler32(data))
    }

    static let crcTable: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 != 0 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
        return crc
    }

    /// CRC-32 as PNG (and zlib, gzip, Ethernet) compute it.
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// Adler-32, zlib's checksum of the uncompressed data.
    public static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        // 5552 bytes is the most that cannot overflow before the modulo (zlib's NMAX).
        var index = 0
        while index < bytes.count {
            let end = min(bytes.count, index + 5552)
            for byte in bytes[index..<end] {
                a += UInt32(byte)
                b += a
            }
            a %= 65521
            b %= 65521
            index = end
        }
        return b << 16 | a
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
}
