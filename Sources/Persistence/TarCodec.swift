/// POSIX ustar, the archive inside a persistence file, so that `tar tvf`
/// lists a plain one (GNU tar and busybox tar read it). Names longer than
/// ustar's 100 + 155 bytes, link targets longer than 100, and overlayfs's
/// opaque mark go into pax extended headers (`path=`, `linkpath=`,
/// `SCHILY.xattr.trusted.overlay.opaque=y`, as GNU tar writes with
/// --xattrs). A whiteout is a character device 0/0, as in the upper layer.
/// Pure: bytes in, bytes out.
public enum TarCodec {
    static let block = 512
    static let opaqueRecord = "SCHILY.xattr.trusted.overlay.opaque"

    // MARK: writing

    /// The archive of `entries`, in their order, ended by two zero blocks.
    public static func encode(_ entries: [PersistEntry]) -> [UInt8] {
        var out: [UInt8] = []
        for entry in entries {
            let name: String
            if case .directory = entry.kind { name = entry.path + "/" } else { name = entry.path }
            var records: [(String, String)] = []
            let split = splitName(name)
            if split == nil { records.append(("path", name)) }
            if case .symbolicLink(let target) = entry.kind, target.utf8.count > 100 { records.append(("linkpath", target)) }
            if case .directory(opaque: true) = entry.kind { records.append((opaqueRecord, "y")) }
            if !records.isEmpty {
                let body = paxBody(records)
                out += header(name: ("", "PaxHeaders/" + String(entry.path.split(separator: "/").last ?? "x").prefix(80)),
                              type: UInt8(ascii: "x"), size: body.count, entry: entry, link: "")
                out += padded(body)
            }
            let (prefix, short) = split ?? ("", String(decoding: Array(name.utf8).suffix(100), as: UTF8.self))
            switch entry.kind {
            case .directory:
                out += header(name: (prefix, short), type: UInt8(ascii: "5"), size: 0, entry: entry, link: "")
            case .file(let bytes):
                out += header(name: (prefix, short), type: UInt8(ascii: "0"), size: bytes.count, entry: entry, link: "")
                out += padded(bytes)
            case .symbolicLink(let target):
                let link = target.utf8.count > 100 ? "" : target
                out += header(name: (prefix, short), type: UInt8(ascii: "2"), size: 0, entry: entry, link: link)
            case .whiteout:
                out += header(name: (prefix, short), type: UInt8(ascii: "3"), size: 0, entry: entry, link: "")
            }
        }
        out += [UInt8](repeating: 0, count: 2 * block)
        return out
    }

    /// ustar's prefix/name split at a `/`, or nil when the name cannot fit.
    static func splitName(_ name: String) -> (String, String)? {
        let bytes = Array(name.utf8)
        if bytes.count <= 100 { return ("", name) }
        // The prefix is everything before a '/' (at most 155 bytes), the name the rest (at most 100).
        for index in bytes.indices.reversed() where bytes[index] == UInt8(ascii: "/") {
            let prefix = bytes[..<index], rest = bytes[(index + 1)...]
            if prefix.count <= 155 && rest.count <= 100 && !rest.isEmpty {
                return (String(decoding: prefix, as: UTF8.self), String(decoding: rest, as: UTF8.self))
            }
            if rest.count > 100 { break }
        }
        return nil
    }

    /// pax records: `LENGTH key=value\n`, LENGTH counting itself.
    static func paxBody(_ records: [(String, String)]) -> [UInt8] {
        var body: [UInt8] = []
        for (key, value) in records {
            let rest = " \(key)=\(value)\n".utf8.count
            var length = rest + 1
            while String(length).utf8.count + rest != length { length = String(length).utf8.count + rest }
            body += Array("\(length) \(key)=\(value)\n".utf8)
        }
        return body
    }

    static func padded(_ bytes: [UInt8]) -> [UInt8] {
        bytes + [UInt8](repeating: 0, count: (block - bytes.count % block) % block)
    }

    static func header(name: (prefix: String, name: String), type: UInt8, size: Int, entry: PersistEntry, link: String) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: block)
        func put(_ text: String, at offset: Int, width: Int) {
            for (i, byte) in text.utf8.prefix(width).enumerated() { h[offset + i] = byte }
        }
        func octal(_ value: Int64, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits, at: offset, width: width - 1)
        }
        put(name.name, at: 0, width: 100)
        octal(Int64(entry.mode & 0o7777), at: 100, width: 8)
        octal(Int64(entry.uid), at: 108, width: 8)
        octal(Int64(entry.gid), at: 116, width: 8)
        octal(Int64(size), at: 124, width: 12)
        octal(max(0, entry.modificationTime), at: 136, width: 12)
        h[156] = type
        put(link, at: 157, width: 100)
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        put(entry.uid == 0 ? "root" : "", at: 265, width: 32)
        put(entry.gid == 0 ? "root" : "", at: 297, width: 32)
        octal(0, at: 329, width: 8)
        octal(0, at: 337, width: 8)
        put(name.prefix, at: 345, width: 155)
        for i in 148..<156 { h[i] = UInt8(ascii: " ") }
        let sum = h.reduce(0) { $0 + Int($1) }
        let digits = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - digits.count) + digits, at: 148, width: 6)
        h[154] = 0
        h[155] = UInt8(ascii: " ")
        return h
    }

    // MARK: reading

    /// The entries of an archive this codec wrote (or any ustar archive of
    /// directories, files, links and 0/0 character devices). Every header's
    /// checksum is checked; a path that is absolute or has `..` is refused.
    public static func decode(_ bytes: [UInt8]) throws(PersistError) -> [PersistEntry] {
        var entries: [PersistEntry] = []
        var offset = 0
        var pax: [String: String] = [:]
        while true {
            guard offset + block <= bytes.count else { throw PersistError.notAnArchive("the tar archive ends without its end blocks") }
            let h = bytes[offset..<(offset + block)]
            if h.allSatisfy({ $0 == 0 }) {
                guard offset + 2 * block <= bytes.count, bytes[(offset + block)..<(offset + 2 * block)].allSatisfy({ $0 == 0 }) else {
                    throw PersistError.notAnArchive("the tar archive has one end block, not two")
                }
                return entries
            }
            let header = Array(h)
            guard let stored = octal(header[148..<156]), stored == checksum(header) else {
                throw PersistError.notAnArchive("a bad tar header checksum at byte \(offset)")
            }
            guard header[257..<262].elementsEqual("ustar".utf8) else { throw PersistError.notAnArchive("not a ustar header at byte \(offset)") }
            guard let size = octal(header[124..<136]), let mode = octal(header[100..<108]), let uid = octal(header[108..<116]),
                  let gid = octal(header[116..<124]), let time = octal(header[136..<148]) else {
                throw PersistError.notAnArchive("a bad number in the tar header at byte \(offset)")
            }
            let dataStart = offset + block
            let dataEnd = dataStart + Int(size)
            guard size >= 0, dataEnd <= bytes.count else { throw PersistError.notAnArchive("an entry runs past the end of the archive") }
            offset = dataStart + (Int(size) + block - 1) / block * block
            let type = header[156]
            if type == UInt8(ascii: "x") {
                pax = try parsePax(Array(bytes[dataStart..<dataEnd]))
                continue
            }
            var name = text(header[0..<100])
            let prefix = text(header[345..<500])
            if !prefix.isEmpty { name = prefix + "/" + name }
            if let long = pax["path"] { name = long }
            let link = pax["linkpath"] ?? text(header[157..<257])
            let opaque = pax[opaqueRecord] == "y"
            pax = [:]
            while name.hasSuffix("/") { name.removeLast() }
            if name.hasPrefix("./") { name.removeFirst(2) }
            guard PersistEntry.isSafePath(name) else { throw PersistError.notAnArchive("an unsafe path in the archive: '\(name)'") }
            let kind: PersistEntry.Kind
            switch type {
            case UInt8(ascii: "0"), 0: kind = .file(Array(bytes[dataStart..<dataEnd]))
            case UInt8(ascii: "5"): kind = .directory(opaque: opaque)
            case UInt8(ascii: "2"): kind = .symbolicLink(link)
            case UInt8(ascii: "3"):
                guard octal(header[329..<337]) == 0, octal(header[337..<345]) == 0 else {
                    throw PersistError.notAnArchive("\(name): a device node other than a whiteout (0/0)")
                }
                kind = .whiteout
            default:
                throw PersistError.notAnArchive("\(name): a tar entry of type '\(String(UnicodeScalar(type)))', which persistence does not keep")
            }
            entries.append(PersistEntry(path: name, kind: kind, mode: UInt32(mode & 0o7777), uid: UInt32(truncatingIfNeeded: uid),
                                        gid: UInt32(truncatingIfNeeded: gid), modificationTime: time))
        }
    }

    static func checksum(_ header: [UInt8]) -> Int64 {
        Int64(header.enumerated().reduce(0) { $0 + ((148..<156).contains($1.offset) ? 32 : Int($1.element)) })
    }

    static func text(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// An octal field: digits, then NULs or spaces.
    static func octal(_ bytes: ArraySlice<UInt8>) -> Int64? {
        let digits = bytes.drop { $0 == UInt8(ascii: " ") }.prefix { $0 != 0 && $0 != UInt8(ascii: " ") }
        guard !digits.isEmpty, digits.count <= 21, digits.allSatisfy({ (0x30...0x37).contains($0) }) else { return nil }
        return digits.reduce(Int64(0)) { $0 * 8 + Int64($1 - 0x30) }
    }

    static func parsePax(_ body: [UInt8]) throws(PersistError) -> [String: String] {
        var records: [String: String] = [:]
        var index = 0
        while index < body.count {
            guard let space = body[index...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: body[index..<space], as: UTF8.self)), length > 0,
                  index + length <= body.count, body[index + length - 1] == UInt8(ascii: "\n"),
                  let equals = body[(space + 1)..<(index + length)].firstIndex(of: UInt8(ascii: "=")) else {
                throw PersistError.notAnArchive("a bad pax extended header")
            }
            records[String(decoding: body[(space + 1)..<equals], as: UTF8.self)] =
                String(decoding: body[(equals + 1)..<(index + length - 1)], as: UTF8.self)
            index += length
        }
        return records
    }
}
