/// The reader of Spirit's configuration files (service files, nexus.toml):
/// a strict subset of TOML 1.0 — `[table]`
/// headers, `key = value` lines, and values that are basic or literal
/// strings, integers, booleans or arrays of strings (an array may span
/// lines), with `#` comments.
///
/// Why not TOMLKit (the well-kept TOML library): measured on 2026-11-23, it
/// does not pull full Foundation into the static binary (a probe that parses
/// one table with TOMLKit 0.6.0 is 14.9 MB stripped, one with
/// FoundationEssentials alone 14.0 MB), but it brings toml++'s C++ and
/// libstdc++ (about 0.9 MB) into PID 1's binary, and it gives a line number
/// only for syntax errors, not for a value of the wrong kind or an unknown
/// field, so that an error could not say `<file>:<line>: <field>: <what is
/// wrong>`. A service file needs a page of TOML; this reader is that page,
/// and it keeps every value's line. It lives in SpiritCore so that every
/// daemon's file (the supervisor's services, Nexus's layout) reads alike and
/// fails alike.
public struct ConfigFile: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case integer(Int64)
        case bool(Bool)
        case strings([String])

        public var kind: String {
            switch self {
            case .string: "a string"
            case .integer: "an integer"
            case .bool: "a boolean"
            case .strings: "an array of strings"
            }
        }
    }

    /// One `key = value`, with its table (`""` for the top), its full name
    /// (`stop.timeout-ms`) and the line it starts on.
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: Value
        public var line: Int
    }

    /// A `[name]` header and the line it is on, in the file's order.
    public struct Table: Sendable, Equatable {
        public var name: String
        public var line: Int
    }

    public var path: String
    public var entries: [Entry]
    public var tables: [Table] = []

    public init(path: String, entries: [Entry], tables: [Table] = []) {
        self.path = path
        self.entries = entries
        self.tables = tables
    }

    public subscript(key: String) -> Entry? { entries.first { $0.key == key } }

    /// Parses `text` (the content of `path`, which errors name).
    public static func parse(_ text: String, path: String) throws(ConfigError) -> ConfigFile {
        var entries: [Entry] = []
        var headers: [Table] = []
        var table = ""
        var tables: Set<String> = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var index = 0
        while index < lines.count {
            let number = index + 1
            var line = Substring(lines[index])
            index += 1
            if line.hasSuffix("\r") { line = line.dropLast() }
            let content = withoutComment(line).trimmed
            if content.isEmpty { continue }
            if content.hasPrefix("[") {
                guard content.hasSuffix("]"), !content.hasPrefix("[["), content.count > 2 else {
                    throw ConfigError(path: path, line: number, field: content, "not a table header: expected [name]")
                }
                let name = String(content.dropFirst().dropLast()).trimmed
                // Dotted names (`[disk.system]`) are TOML's sub-tables: the
                // VM definitions have one a disk.
                guard name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ isBareKey(String($0)) }) else {
                    throw ConfigError(path: path, line: number, field: name, "a table name is letters, digits, '-' and '_' (dots between parts)")
                }
                guard tables.insert(name).inserted else {
                    throw ConfigError(path: path, line: number, field: name, "the table is defined twice")
                }
                table = name
                headers.append(Table(name: name, line: number))
                continue
            }
            guard let equals = content.firstIndex(of: "=") else {
                throw ConfigError(path: path, line: number, field: content, "expected key = value")
            }
            let key = String(content[..<equals]).trimmed
            guard isBareKey(key) else {
                throw ConfigError(path: path, line: number, field: key, "a key is letters, digits, '-' and '_' (no quotes, no dots)")
            }
            let field = table.isEmpty ? key : table + "." + key
            var valueText = String(content[content.index(after: equals)...]).trimmed
            // An array may go on over the next lines, up to its ']'.
            if valueText.hasPrefix("[") {
                while !arrayIsClosed(valueText) {
                    guard index < lines.count else {
                        throw ConfigError(path: path, line: number, field: field, "the array has no closing ']'")
                    }
                    valueText += " " + withoutComment(Substring(lines[index])).trimmed
                    index += 1
                }
            }
            let value: Value
            do {
                value = try parseValue(valueText)
            } catch {
                throw ConfigError(path: path, line: number, field: field, error.description)
            }
            guard !entries.contains(where: { $0.key == field }) else {
                throw ConfigError(path: path, line: number, field: field, "set twice")
            }
            entries.append(Entry(key: field, value: value, line: number))
        }
        return ConfigFile(path: path, entries: entries, tables: headers)
    }

    public static func isBareKey(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2D || byte == 0x5F
        }
    }

    /// The line up to a `#` that is not inside a string.
    static func withoutComment(_ line: Substring) -> Substring {
        var quote: Character? = nil
        var escaped = false
        for position in line.indices {
            let character = line[position]
            if let open = quote {
                if escaped { escaped = false } else if character == "\\" && open == "\"" { escaped = true } else if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == "#" {
                return line[..<position]
            }
        }
        return line
    }

    static func arrayIsClosed(_ text: String) -> Bool {
        var quote: Character? = nil
        var escaped = false
        var depth = 0
        for character in text {
            if let open = quote {
                if escaped { escaped = false } else if character == "\\" && open == "\"" { escaped = true } else if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == "[" {
                depth += 1
            } else if character == "]" {
                depth -= 1
                if depth == 0 { return true }
            }
        }
        return false
    }

    struct ValueError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func parseValue(_ text: String) throws(ValueError) -> Value {
        var scanner = Scanner(Array(text.unicodeScalars))
        let value: Value
        switch scanner.peek {
        case nil:
            throw ValueError("no value after '='")
        case "\"", "'":
            value = .string(try scanner.string())
        case "[":
            scanner.advance()
            var items: [String] = []
            while true {
                scanner.skipSpace()
                if scanner.peek == "]" { scanner.advance(); break }
                guard scanner.peek == "\"" || scanner.peek == "'" else {
                    throw ValueError("an array holds only strings here (\"...\" or '...')")
                }
                items.append(try scanner.string())
                scanner.skipSpace()
                if scanner.peek == "," { scanner.advance(); continue }
                guard scanner.peek == "]" else { throw ValueError("expected ',' or ']' in the array") }
                scanner.advance()
                break
            }
            value = .strings(items)
        default:
            let word = String(String.UnicodeScalarView(scanner.rest))
            scanner.position = scanner.scalars.count
            if word == "true" { value = .bool(true) }
            else if word == "false" { value = .bool(false) }
            else if let number = integer(word) { value = .integer(number) }
            else { throw ValueError("'\(word)' is not a string, an integer, a boolean or an array of strings") }
        }
        scanner.skipSpace()
        guard scanner.peek == nil else { throw ValueError("unexpected text after the value") }
        return value
    }

    /// A TOML decimal integer: an optional sign, digits, single '_' between digits.
    static func integer(_ word: String) -> Int64? {
        var digits = word
        if digits.hasPrefix("+") { digits.removeFirst() }
        guard !digits.hasPrefix("_"), !digits.hasSuffix("_"), !digits.contains("__") else { return nil }
        digits.removeAll { $0 == "_" }
        if digits.count > 1, digits.hasPrefix("0") || digits.hasPrefix("-0") { return nil }
        return Int64(digits)
    }

    struct Scanner {
        let scalars: [Unicode.Scalar]
        var position = 0
        init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }
        var peek: Unicode.Scalar? { position < scalars.count ? scalars[position] : nil }
        var rest: ArraySlice<Unicode.Scalar> { scalars[position...] }
        mutating func advance() { position += 1 }
        mutating func skipSpace() { while peek == " " || peek == "\t" { advance() } }

        /// A basic ("...", with \" \\ \n \t \r \uXXXX escapes) or literal ('...') string.
        mutating func string() throws(ValueError) -> String {
            let quote = peek!
            advance()
            var out = String.UnicodeScalarView()
            while true {
                guard let scalar = peek else { throw ValueError("the string has no closing \(quote)") }
                advance()
                if scalar == quote { return String(out) }
                if quote == "\"", scalar == "\\" {
                    guard let escape = peek else { throw ValueError("the string has no closing \"") }
                    advance()
                    switch escape {
                    case "\"": out.append("\"")
                    case "\\": out.append("\\")
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    case "u":
                        guard position + 4 <= scalars.count,
                              let code = UInt32(String(String.UnicodeScalarView(scalars[position..<(position + 4)])), radix: 16),
                              let unicode = Unicode.Scalar(code) else { throw ValueError("a bad \\u escape") }
                        position += 4
                        out.append(unicode)
                    default:
                        throw ValueError("an unknown escape \\\(escape)")
                    }
                } else {
                    out.append(scalar)
                }
            }
        }
    }
}

/// A configuration file that cannot be used: `<file>:<line>: <field>: <what is wrong>`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var line: Int
    public var field: String
    public var reason: String

    public init(path: String, line: Int, field: String, _ reason: String) {
        self.path = path
        self.line = line
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(path):\(line): \(field): \(reason)" }
}

/// Typed reads, worded as the supervisor's service files word them, for
/// the files whose fields are checked one by one.
extension ConfigFile {
    public func error(_ entry: Entry, _ reason: String) -> ConfigError {
        ConfigError(path: path, line: entry.line, field: entry.key, reason)
    }

    public func string(_ key: String) throws(ConfigError) -> (value: String, entry: Entry)? {
        guard let entry = self[key] else { return nil }
        guard case .string(let text) = entry.value else { throw error(entry, "expected a string, found \(entry.value.kind)") }
        return (text, entry)
    }

    public func integer(_ key: String, in range: ClosedRange<Int64>) throws(ConfigError) -> Int64? {
        guard let entry = self[key] else { return nil }
        guard case .integer(let number) = entry.value else { throw error(entry, "expected an integer, found \(entry.value.kind)") }
        guard range.contains(number) else { throw error(entry, "\(number) is out of range (\(range.lowerBound)–\(range.upperBound))") }
        return number
    }

    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let entry = self[key] else { return nil }
        guard case .bool(let flag) = entry.value else { throw error(entry, "expected true or false, found \(entry.value.kind)") }
        return flag
    }

    public func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let entry = self[key] else { return nil }
        guard case .strings(let items) = entry.value else { throw error(entry, "expected an array of strings, found \(entry.value.kind)") }
        return items
    }
}
