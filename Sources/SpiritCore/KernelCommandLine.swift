/// One parameter of the kernel command line: `name`, or `name=value`.
public struct KernelParameter: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var value: String?

    public init(name: String, value: String?) {
        self.name = name
        self.value = value
    }

    public var description: String {
        guard let value else { return name }
        return value.contains(" ") ? "\(name)=\"\(value)\"" : "\(name)=\(value)"
    }
}

/// The kernel command line split the way the kernel splits it (`next_arg`
/// in the kernel's lib/cmdline.c): parameters are separated by white space;
/// a double quote toggles quoting, so `crom.http="a b"` and `"crom.http=a b"`
/// are one parameter; the quotes around a value are not part of it.
/// Parameters after a lone `--` belong to init's argv, not to the kernel.
public struct KernelCommandLine: Sendable, Equatable {
    public var parameters: [KernelParameter]
    /// What came after `--`, as the kernel hands it to init.
    public var initArguments: [String]

    public init(_ text: String) {
        var parameters: [KernelParameter] = []
        var initArguments: [String] = []
        var afterDashes = false
        for token in Self.tokens(text) {
            if afterDashes {
                initArguments.append(token.value.map { "\(token.name)=\($0)" } ?? token.name)
            } else if token.name == "--", token.value == nil {
                afterDashes = true
            } else {
                parameters.append(token)
            }
        }
        self.parameters = parameters
        self.initArguments = initArguments
    }

    static func tokens(_ text: String) -> [KernelParameter] {
        let chars = Array(text.unicodeScalars)
        var result: [KernelParameter] = []
        var i = 0
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0B}" || c == "\u{0C}" }
        while i < chars.count {
            while i < chars.count, isSpace(chars[i]) { i += 1 }
            guard i < chars.count else { break }
            var quoted = false
            var inQuote = false
            if chars[i] == "\"" {
                i += 1
                inQuote = true
                quoted = true
            }
            let start = i
            var equals: Int? = nil
            while i < chars.count {
                if isSpace(chars[i]), !inQuote { break }
                if equals == nil, chars[i] == "=" { equals = i }
                if chars[i] == "\"" { inQuote.toggle() }
                i += 1
            }
            var end = i
            var name: String
            var value: String?
            if let equals {
                name = String(String.UnicodeScalarView(chars[start..<equals]))
                var valueStart = equals + 1
                if valueStart < end, chars[valueStart] == "\"" {
                    valueStart += 1
                    if end > valueStart, chars[end - 1] == "\"" { end -= 1 }
                } else if quoted, end > valueStart, chars[end - 1] == "\"" {
                    end -= 1
                }
                value = String(String.UnicodeScalarView(chars[valueStart..<max(valueStart, end)]))
            } else {
                if quoted, end > start, chars[end - 1] == "\"" { end -= 1 }
                name = String(String.UnicodeScalarView(chars[start..<end]))
                value = nil
            }
            if name.isEmpty && value == nil { continue }
            result.append(KernelParameter(name: name, value: value))
        }
        return result
    }
}
