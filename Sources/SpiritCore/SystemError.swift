import SystemPackage

/// A failed system call, said as the whole operation: `unable to mount
/// /dev/loop0 on /sysroot/lower (squashfs, ro): No such device — is the
/// squashfs module loaded?`.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Errno
    public var hint: String?

    public init(_ operation: String, _ errno: Errno, hint: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.hint = hint
    }

    public var description: String {
        "unable to \(operation): \(errno)" + (hint.map { " — \($0)" } ?? "")
    }
}

/// An error that is not a system call's: bad input, a missing file in a
/// table, a step that cannot go on. Its text is the whole message.
public struct SpiritError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
