/// A version of a Spirit image, as its manifest and `spirit version` say
/// it: numbers separated by dots (`0.1.0`, `1.2`, `2`), optionally followed
/// by a pre-release suffix after a hyphen (`0.2.0-rc.1`). Ordered as
/// Semantic Versioning 2.0.0 orders versions, so that the initramfs's
/// minimum (anti-rollback) and `spirit upgrade` ("refuse an older or equal
/// version") agree with what people expect:
/// - the numbers compare one by one, a missing one counting as 0
///   (`0.1` == `0.1.0` < `0.1.1` < `0.10`);
/// - with the same numbers, a version with a suffix is below the one
///   without (`0.2.0-rc.1` < `0.2.0`), which is the safe side for a
///   minimum: a pre-release of the minimum is refused;
/// - two suffixes compare by their dot-separated parts: numeric parts as
///   numbers and below words, words in ASCII order, a shorter list below a
///   longer one that starts with it (`-alpha` < `-alpha.1` < `-beta` <
///   `-rc.1` < `-rc.2`).
/// Nothing else is a version: no leading `v`, no empty part, no leading
/// zero in a number (`01`), no `+build` metadata, no white space. A bad
/// version is an error that names the input and what was wrong.
public struct Version: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The dot-separated numbers, as written (`0.1` keeps two).
    public let numbers: [UInt64]
    /// The suffix's dot-separated parts, empty for a release.
    public let preRelease: [String]

    private init(numbers: [UInt64], preRelease: [String]) {
        self.numbers = numbers
        self.preRelease = preRelease
    }

    /// Reads a version such as `0.1.0` or `0.2.0-rc.1`.
    public init(parsing text: String) throws(VersionError) {
        guard !text.isEmpty else { throw VersionError(input: text, reason: "it is empty") }
        let head: Substring
        var suffix: Substring?
        if let hyphen = text.firstIndex(of: "-") {
            head = text[..<hyphen]
            suffix = text[text.index(after: hyphen)...]
        } else {
            head = text[...]
        }
        guard !head.isEmpty else { throw VersionError(input: text, reason: "it does not start with a number") }
        var numbers: [UInt64] = []
        for part in head.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty else { throw VersionError(input: text, reason: "a number is missing between dots") }
            guard part.utf8.allSatisfy(Self.isDigit) else {
                throw VersionError(input: text, reason: "\"\(part)\" is not a number")
            }
            guard part.utf8.count == 1 || part.utf8.first != UInt8(ascii: "0") else {
                throw VersionError(input: text, reason: "\"\(part)\" has a leading zero")
            }
            guard let number = UInt64(part) else { throw VersionError(input: text, reason: "\"\(part)\" is too large") }
            numbers.append(number)
        }
        var preRelease: [String] = []
        if let suffix {
            guard !suffix.isEmpty else { throw VersionError(input: text, reason: "the suffix after \"-\" is empty") }
            for part in suffix.split(separator: ".", omittingEmptySubsequences: false) {
                guard !part.isEmpty else { throw VersionError(input: text, reason: "the suffix has an empty part") }
                guard part.utf8.allSatisfy(Self.isSuffixCharacter) else {
                    throw VersionError(input: text, reason: "the suffix part \"\(part)\" has a character other than letters, digits and \"-\"")
                }
                if part.utf8.allSatisfy(Self.isDigit) {
                    guard part.utf8.count == 1 || part.utf8.first != UInt8(ascii: "0") else {
                        throw VersionError(input: text, reason: "the suffix part \"\(part)\" has a leading zero")
                    }
                    guard UInt64(part) != nil else { throw VersionError(input: text, reason: "the suffix part \"\(part)\" is too large") }
                }
                preRelease.append(String(part))
            }
        }
        self.init(numbers: numbers, preRelease: preRelease)
    }

    static func numericPart(_ part: String) -> UInt64? { part.utf8.allSatisfy(isDigit) ? UInt64(part) : nil }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    static func isSuffixCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "-"): true
        default: false
        }
    }

    public var description: String {
        numbers.map(String.init).joined(separator: ".") + (preRelease.isEmpty ? "" : "-" + preRelease.joined(separator: "."))
    }

    /// The numbers without trailing zeros: `0.1` and `0.1.0` are one version.
    var significantNumbers: ArraySlice<UInt64> {
        var end = numbers.endIndex
        while end > numbers.startIndex, numbers[end - 1] == 0 { end -= 1 }
        return numbers[..<end]
    }

    public static func == (a: Version, b: Version) -> Bool {
        a.significantNumbers == b.significantNumbers && a.preRelease == b.preRelease
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(Array(significantNumbers))
        hasher.combine(preRelease)
    }

    public static func < (a: Version, b: Version) -> Bool {
        for index in 0..<max(a.numbers.count, b.numbers.count) {
            let x = index < a.numbers.count ? a.numbers[index] : 0
            let y = index < b.numbers.count ? b.numbers[index] : 0
            if x != y { return x < y }
        }
        // The same numbers: a release is above its pre-releases.
        switch (a.preRelease.isEmpty, b.preRelease.isEmpty) {
        case (true, _): return false
        case (false, true): return true
        case (false, false): break
        }
        // A part of digits only is a number (the parser made sure it fits).
        for (x, y) in zip(a.preRelease, b.preRelease) where x != y {
            switch (numericPart(x), numericPart(y)) {
            case let (m?, n?): return m < n
            case (_?, nil): return true
            case (nil, _?): return false
            case (nil, nil): return Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
            }
        }
        return a.preRelease.count < b.preRelease.count
    }
}

/// A text that is not a version; its description names the text.
public struct VersionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var input: String
    public var reason: String

    public init(input: String, reason: String) {
        self.input = input
        self.reason = reason
    }

    public var description: String {
        "\"\(input)\" is not a version: \(reason) (expected numbers separated by dots, like 0.1.0, "
            + "optionally with a suffix such as -rc.1)"
    }
}
