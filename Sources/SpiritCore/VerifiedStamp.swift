/// A note, beside a file, that its SHA-256 was checked: the digest and the
/// file's identity and change time (st_ctime, which every write and chmod
/// sets to the present at the kernel's clock tick, and which no call can
/// set back). Stage 1 writes one for the image it copied into RAM and
/// checked against the signed manifest; `spirit nodus serve` reads it
/// instead of hashing the same 40+ MB again at every start. Any change to
/// the file since makes the note stale, and the file is hashed as before.
public struct VerifiedStamp: Sendable, Equatable {
    public var sha256: String
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var changeTimeNanos: Int64

    public static func path(for file: String) -> String { file + ".verified" }

    init(sha256: String, _ status: FileStatus) {
        self.sha256 = sha256
        device = status.device
        inode = status.inode
        size = status.size
        changeTimeNanos = status.changeTimeNanos
    }

    var line: String { "\(sha256) \(device) \(inode) \(size) \(changeTimeNanos)\n" }

    static func parse(_ text: String) -> VerifiedStamp? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 5, let device = UInt64(fields[1]), let inode = UInt64(fields[2]), let size = Int64(fields[3]),
              let change = Int64(fields[4]) else { return nil }
        return VerifiedStamp(sha256: String(fields[0]), device: device, inode: inode, size: size, changeTimeNanos: change)
    }

    init(sha256: String, device: UInt64, inode: UInt64, size: Int64, changeTimeNanos: Int64) {
        self.sha256 = sha256
        self.device = device
        self.inode = inode
        self.size = size
        self.changeTimeNanos = changeTimeNanos
    }

    /// Notes that `file`, as it is now, has the SHA-256 `sha256`.
    public static func write(for file: String, sha256: String) throws(SystemError) {
        try Kernel.writeFile(path(for: file), VerifiedStamp(sha256: sha256, try Kernel.status(file)).line)
    }

    /// Whether `file` is still the one noted with `sha256`: the same file,
    /// size and change time.
    public static func holds(for file: String, sha256: String) -> Bool {
        guard let text = try? Kernel.readText(path(for: file)), let stamp = parse(text),
              let status = try? Kernel.status(file) else { return false }
        return stamp == VerifiedStamp(sha256: sha256, status)
    }
}
