import CSpirit

/// Signal names for messages: `SIGSEGV (Segmentation fault)`.
public enum Signal {
    /// `SIGSEGV`, or `signal 42` for one without a name.
    public static func name(_ signal: CInt) -> String {
        guard let abbrev = spirit_signal_abbrev(signal) else { return "signal \(signal)" }
        return "SIG" + String(cString: abbrev)
    }

    /// `SIGSEGV (Segmentation fault)`.
    public static func describe(_ signal: CInt) -> String {
        guard let text = spirit_signal_description(signal) else { return name(signal) }
        return "\(name(signal)) (\(String(cString: text)))"
    }
}
