import SpiritCore

/// The module index precomputed when an initramfs or an image is built
/// (`spirit modules index DIR`), read at boot in one read with no text
/// parsing: modules.dep, .builtin, .alias, .symbols and .softdep as
/// ModuleIndex holds them, names and patterns already normalized. Under
/// TCG, parsing the text took most of the 330–360 ms before stage 1's first
/// module load (research/boot-performance.md, section 4). modprobe.d stays
/// text: it is small, and /etc/modprobe.d may change on a running system.
///
/// The file, little-endian throughout:
///
///     header (32 bytes)  "SPIRITMI", version (u32), string count (u32),
///                        payload length (u32), 0 (u32), checksum (u64)
///     payload            the byte sizes of the five text files it was made
///                        from (5 × u64: a depmod run since shows as stale);
///                        the strings (their u32 lengths, then their bytes);
///                        then sections of u32 string numbers: modules (name,
///                        path, count, dependencies), built-in names, exact
///                        aliases (pattern, module), glob aliases (pattern,
///                        module, literal prefix length), symbols (symbol,
///                        module), softdeps (module, count, pre…, count, post…)
///
/// The checksum is FNV-1a over the payload's 64-bit words (the tail padded
/// with zeros): it tells a cut or damaged file, not a forged one (the
/// initramfs and the image are signed as a whole).
public enum BinaryModuleIndex {
    /// Its name beside modules.dep.
    public static let fileName = "modules.spirit"
    /// The text files it stands for, in the order of its recorded sizes.
    public static let sourceFiles = ["modules.dep", "modules.builtin", "modules.alias", "modules.symbols", "modules.softdep"]
    static let magic = Array("SPIRITMI".utf8)
    static let version: UInt32 = 1
    static let headerSize = 32

    /// The file's bytes for `index`, made from text files of `sourceSizes`
    /// bytes (in `sourceFiles` order, 0 for one that is absent). The same
    /// index gives the same bytes: every table is written sorted.
    public static func encode(_ index: ModuleIndex, sourceSizes: [UInt64]) -> [UInt8] {
        precondition(sourceSizes.count == sourceFiles.count, "one size per source file")
        var writer = Writer()
        writer.count(index.paths.count)
        for name in index.paths.keys.sorted() {
            writer.string(name)
            writer.string(index.paths[name]!)
            writer.strings(index.dependencies[name] ?? [])
        }
        writer.strings(index.builtin.sorted())
        let exact = index.exactAliases.keys.sorted()
        writer.count(exact.reduce(0) { $0 + index.exactAliases[$1]!.count })
        for pattern in exact {
            for module in index.exactAliases[pattern]! {
                writer.string(pattern)
                writer.string(module)
            }
        }
        writer.count(index.globAliases.count)
        for (pattern, module) in index.globAliases {
            writer.string(pattern)
            writer.string(module)
            writer.count(ModuleIndex.literalPrefixLength(pattern))
        }
        let symbols = index.symbols.keys.sorted()
        writer.count(symbols.reduce(0) { $0 + index.symbols[$1]!.count })
        for symbol in symbols {
            for module in index.symbols[symbol]! {
                writer.string(symbol)
                writer.string(module)
            }
        }
        writer.count(index.softdeps.count)
        for name in index.softdeps.keys.sorted() {
            writer.string(name)
            writer.strings(index.softdeps[name]!.pre)
            writer.strings(index.softdeps[name]!.post)
        }

        var payload: [UInt8] = []
        for size in sourceSizes { payload.append(littleEndian: size) }
        for string in writer.pool { payload.append(littleEndian: UInt32(string.utf8.count)) }
        for string in writer.pool { payload += string.utf8 }
        payload += writer.body

        var file = magic
        file.append(littleEndian: version)
        file.append(littleEndian: UInt32(writer.pool.count))
        file.append(littleEndian: UInt32(payload.count))
        file.append(littleEndian: UInt32(0))
        file.append(littleEndian: checksum(payload[...]))
        return file + payload
    }

    /// The index in `bytes` and the sizes of the text files it was made
    /// from; `file` names it in the error that refuses a cut, damaged or
    /// foreign file. Pure: no system call.
    public static func decode(_ bytes: [UInt8], file: String) throws(SpiritError) -> (index: ModuleIndex, sourceSizes: [UInt64]) {
        func refuse(_ reason: String) -> SpiritError {
            SpiritError("unable to read the binary module index \(file): \(reason)")
        }
        guard bytes.count >= headerSize else { throw refuse("truncated (\(bytes.count) bytes, shorter than its \(headerSize)-byte header)") }
        guard Array(bytes[0..<8]) == magic else { throw refuse("not a Spirit module index (no SPIRITMI magic)") }
        var header = Reader(bytes[8..<headerSize])
        let version = header.u32()!, stringCount = Int(header.u32()!), payloadLength = Int(header.u32()!)
        _ = header.u32()
        let expectedSum = header.u64()!
        guard version == Self.version else {
            throw refuse("format version \(version), this spirit reads version \(Self.version)")
        }
        guard bytes.count - headerSize == payloadLength else {
            throw refuse(bytes.count - headerSize < payloadLength
                         ? "truncated (\(bytes.count - headerSize) bytes of payload, the header says \(payloadLength))"
                         : "\(bytes.count - headerSize - payloadLength) bytes after its end")
        }
        let payload = bytes[headerSize...]
        guard checksum(payload) == expectedSum else { throw refuse("checksum mismatch: the file is damaged") }

        var reader = Reader(payload)
        var sourceSizes: [UInt64] = []
        for _ in sourceFiles {
            guard let size = reader.u64() else { throw refuse("truncated in its source sizes") }
            sourceSizes.append(size)
        }
        guard stringCount <= reader.remaining / 4 else { throw refuse("\(stringCount) strings cannot fit in \(payloadLength) bytes") }
        var lengths: [Int] = []
        lengths.reserveCapacity(stringCount)
        for _ in 0..<stringCount { lengths.append(Int(reader.u32()!)) }
        var strings: [String] = []
        strings.reserveCapacity(stringCount)
        for length in lengths {
            guard let utf8 = reader.bytes(length) else { throw refuse("truncated in its strings") }
            strings.append(String(decoding: utf8, as: UTF8.self))
        }

        var section = "modules"
        func string() throws(SpiritError) -> String {
            guard let number = reader.u32() else { throw refuse("truncated in its \(section)") }
            guard Int(number) < strings.count else { throw refuse("string \(number) of \(strings.count) in its \(section)") }
            return strings[Int(number)]
        }
        func count(each: Int) throws(SpiritError) -> Int {
            guard let count = reader.u32() else { throw refuse("truncated in its \(section)") }
            guard Int(count) <= reader.remaining / (4 * each) else { throw refuse("\(count) \(section) cannot fit in what is left") }
            return Int(count)
        }
        func list() throws(SpiritError) -> [String] {
            let count = try count(each: 1)
            var names: [String] = []
            names.reserveCapacity(count)
            for _ in 0..<count {
                let name = try string()
                names.append(name)
            }
            return names
        }

        var index = ModuleIndex(modulesDep: "")
        let modules = try count(each: 3)
        index.paths.reserveCapacity(modules)
        index.dependencies.reserveCapacity(modules)
        for _ in 0..<modules {
            let name = try string(), path = try string(), dependencies = try list()
            index.paths[name] = path
            index.dependencies[name] = dependencies
        }
        section = "built-in modules"
        let builtin = try list()
        index.builtin = Set(builtin)
        section = "exact aliases"
        let exact = try count(each: 2)
        for _ in 0..<exact {
            let pattern = try string(), module = try string()
            index.exactAliases[pattern, default: []].append(module)
        }
        section = "glob aliases"
        let globs = try count(each: 3)
        index.globAliases.reserveCapacity(globs)
        for number in 0..<globs {
            let pattern = try string(), module = try string()
            guard let prefix = reader.u32(), Int(prefix) <= pattern.utf8.count else { throw refuse("a bad prefix length in its \(section)") }
            index.globsByPrefix[Substring(pattern.utf8.prefix(Int(prefix))), default: []].append(number)
            index.globAliases.append((pattern, module))
        }
        section = "symbols"
        let symbols = try count(each: 2)
        for _ in 0..<symbols {
            let symbol = try string(), module = try string()
            index.symbols[symbol, default: []].append(module)
        }
        section = "softdeps"
        let softdeps = try count(each: 3)
        for _ in 0..<softdeps {
            let name = try string(), pre = try list(), post = try list()
            index.softdeps[name] = SoftDependencies(pre: pre, post: post)
        }
        guard reader.remaining == 0 else { throw refuse("\(reader.remaining) bytes after its last section") }
        return (index, sourceSizes)
    }

    /// FNV-1a over 64-bit little-endian words, the tail padded with zeros.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset + 8 <= raw.count {
                hash = (hash ^ UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))) &* 0x100_0000_01b3
                offset += 8
            }
            if offset < raw.count {
                var tail: UInt64 = 0
                for (shift, byte) in raw[offset...].enumerated() { tail |= UInt64(byte) << (8 * UInt64(shift)) }
                hash = (hash ^ tail) &* 0x100_0000_01b3
            }
        }
        return hash
    }

    /// Builds the sections: every string once in a pool, referred to by its number.
    struct Writer {
        var body: [UInt8] = []
        var pool: [String] = []
        var numbers: [String: UInt32] = [:]

        mutating func count(_ value: Int) { body.append(littleEndian: UInt32(value)) }

        mutating func string(_ value: String) {
            if let number = numbers[value] {
                body.append(littleEndian: number)
            } else {
                let number = UInt32(pool.count)
                numbers[value] = number
                pool.append(value)
                body.append(littleEndian: number)
            }
        }

        mutating func strings(_ values: [String]) {
            count(values.count)
            for value in values { string(value) }
        }
    }

    /// Reads little-endian words from a slice; nil past its end.
    struct Reader {
        let data: ArraySlice<UInt8>
        var offset: Int

        init(_ data: ArraySlice<UInt8>) {
            self.data = data
            offset = data.startIndex
        }

        var remaining: Int { data.endIndex - offset }

        mutating func u32() -> UInt32? {
            guard remaining >= 4 else { return nil }
            defer { offset += 4 }
            return UInt32(data[offset]) | UInt32(data[offset + 1]) << 8 | UInt32(data[offset + 2]) << 16 | UInt32(data[offset + 3]) << 24
        }

        mutating func u64() -> UInt64? {
            guard let low = u32(), let high = u32() else { return nil }
            return UInt64(low) | UInt64(high) << 32
        }

        mutating func bytes(_ count: Int) -> ArraySlice<UInt8>? {
            guard remaining >= count else { return nil }
            defer { offset += count }
            return data[offset..<(offset + count)]
        }
    }
}

extension [UInt8] {
    mutating func append(littleEndian value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    mutating func append(littleEndian value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }
}
