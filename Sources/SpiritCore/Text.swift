extension StringProtocol {
    /// Without the spaces, tabs and line ends around it: what the files
    /// of /proc, /sys and /etc put around their values.
    public var trimmed: String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" || first == "\n" || first == "\r" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\n" || last == "\r" { text = text.dropLast() }
        return String(text)
    }
}

/// The entries of a list file (one a line, `#` to the end of a line is a
/// comment), as modules.boot and modules-load.d files are written.
public func listEntries(_ text: String) -> [String] {
    text.split(separator: "\n").compactMap { line in
        let entry = (line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "").trimmed
        return entry.isEmpty ? nil : entry
    }
}
