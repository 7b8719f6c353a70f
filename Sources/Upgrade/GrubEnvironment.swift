import SpiritCore

/// GRUB's environment block (`/boot/grub/grubenv`): exactly 1024 bytes, a
/// header line, `name=value` lines, and `#` up to the end. GRUB reads it
/// with `load_env` and rewrites it in place with `save_env`, which is why
/// its size never changes: GRUB writes into the file's blocks, it cannot
/// make a new file. The format is grub-core/lib/envblk.c's; Spirit writes
/// only names and values of plain characters, so it needs none of
/// envblk's escapes, and keeps every line it does not know as it was.
public struct GrubEnvironment: Sendable, Equatable {
    public static let size = 1024
    public static let header = "# GRUB Environment Block\n"

    /// In the file's order; a name set for the first time goes at the end.
    public private(set) var variables: [(name: String, value: String)]

    public init(_ variables: [(name: String, value: String)] = []) {
        self.variables = variables
    }

    public static func == (lhs: GrubEnvironment, rhs: GrubEnvironment) -> Bool {
        lhs.variables.elementsEqual(rhs.variables) { $0.name == $1.name && $0.value == $1.value }
    }

    public subscript(name: String) -> String? {
        get { variables.first { $0.name == name }?.value }
        set {
            let index = variables.firstIndex { $0.name == name }
            switch (index, newValue) {
            case (let index?, let value?): variables[index].value = value
            case (let index?, nil): variables.remove(at: index)
            case (nil, let value?): variables.append((name, value))
            case (nil, nil): break
            }
        }
    }

    /// Reads a block; `origin` names it in errors.
    public init(parsing bytes: [UInt8], origin: String) throws(SpiritError) {
        guard bytes.count == Self.size else {
            throw SpiritError("\(origin) is \(bytes.count) bytes; a GRUB environment block is \(Self.size)")
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasPrefix(Self.header) else { throw SpiritError("\(origin) does not start with \"\(Self.header.dropLast())\"") }
        var variables: [(String, String)] = []
        for line in text.dropFirst(Self.header.count).split(separator: "\n", omittingEmptySubsequences: false) {
            // The padding: `#` to the end of the block.
            if line.hasPrefix("#") || line.isEmpty { break }
            guard let equals = line.firstIndex(of: "=") else { throw SpiritError("\(origin): the line \"\(line)\" is not name=value") }
            variables.append((String(line[..<equals]), String(line[line.index(after: equals)...])))
        }
        self.variables = variables
    }

    /// The block, padded with `#` to its 1024 bytes.
    public func rendered(origin: String) throws(SpiritError) -> [UInt8] {
        var bytes = Array(Self.header.utf8)
        for (name, value) in variables {
            guard !name.contains("="), !name.contains("\n"), !value.contains("\n"), !value.contains("\\") else {
                throw SpiritError("\(origin): \(name)=\(value) would need GRUB's escapes, which Spirit does not write")
            }
            bytes += Array("\(name)=\(value)\n".utf8)
        }
        guard bytes.count <= Self.size else {
            throw SpiritError("\(origin): the variables take \(bytes.count) bytes, more than a GRUB environment block's \(Self.size)")
        }
        return bytes + Array(repeating: UInt8(ascii: "#"), count: Self.size - bytes.count)
    }
}
