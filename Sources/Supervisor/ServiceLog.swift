import Glibc
import SpiritCore
import SystemPackage

/// A service's output, line by line with a CLOCK_BOOTTIME stamp: the last
/// lines in memory for `spiritctl logs`, and every line in
/// <directory>/<name>.log. When that file reaches half the limit it becomes
/// <name>.log.1 (replacing the older one), so that both together stay
/// within `maxBytes`.
public final class ServiceLog {
    public let name: String
    let path: String
    let maxBytes: Int64
    let ringLimit: Int
    var ring: [String] = []
    var ringStart = 0
    var file: FileDescriptor? = nil
    var fileSize: Int64 = 0
    var partial: [UInt8] = []
    /// A longer line is cut here (the rest comes as the next line).
    public static let maximumLine = 4096
    /// Called with each batch of new lines (for `spiritctl logs -f`).
    public var onLines: (([String]) -> Void)? = nil

    public init(name: String, directory: String?, maxBytes: Int64, ringLines: Int) {
        self.name = name
        path = directory.map { $0 + "/" + name + ".log" } ?? ""
        self.maxBytes = maxBytes
        ringLimit = max(1, ringLines)
    }

    /// `12345.678 text`: ms of CLOCK_BOOTTIME, then the line.
    public static func stamp(_ micros: Int64, _ text: String) -> String {
        formatMilliseconds(micros) + " " + text
    }

    /// Bytes from the service's pipe: whole lines are stamped and kept; a
    /// partial line waits for its end (or for `finish`).
    public func append(_ bytes: some Collection<UInt8>, at micros: Int64) {
        var lines: [String] = []
        for byte in bytes {
            if byte == 0x0A {
                lines.append(Self.stamp(micros, String(decoding: partial, as: UTF8.self)))
                partial.removeAll(keepingCapacity: true)
            } else {
                partial.append(byte)
                if partial.count >= Self.maximumLine {
                    lines.append(Self.stamp(micros, String(decoding: partial, as: UTF8.self)))
                    partial.removeAll(keepingCapacity: true)
                }
            }
        }
        keep(lines)
    }

    /// The pipe ended: a last line without its newline is kept too.
    public func finish(at micros: Int64) {
        guard !partial.isEmpty else { return }
        let line = Self.stamp(micros, String(decoding: partial, as: UTF8.self))
        partial = []
        keep([line])
    }

    /// A line of the supervisor's own (`started`, `exited with status 3`).
    public func note(_ text: String, at micros: Int64) {
        keep([Self.stamp(micros, "spirit: " + text)])
    }

    func keep(_ lines: [String]) {
        guard !lines.isEmpty else { return }
        for line in lines {
            if ring.count < ringLimit {
                ring.append(line)
            } else {
                ring[ringStart] = line
                ringStart = (ringStart + 1) % ringLimit
            }
        }
        write(lines)
        onLines?(lines)
    }

    /// The last `count` lines in memory, oldest first.
    public func last(_ count: Int) -> [String] {
        let ordered = Array(ring[ringStart...] + ring[..<ringStart])
        return Array(ordered.suffix(max(0, count)))
    }

    func write(_ lines: [String]) {
        guard !path.isEmpty else { return }
        var bytes = Array((lines.joined(separator: "\n") + "\n").utf8)[...]
        let half = maxBytes / 2
        while !bytes.isEmpty {
            if fileSize >= half { rotate() }
            guard let file = file ?? open() else { return }
            // Fill the file up to half the limit, then rotate.
            let room = Int(max(1, half - fileSize))
            var chunk = bytes.prefix(room)
            if chunk.count < bytes.count, let newline = chunk.lastIndex(of: 0x0A) {
                chunk = bytes[bytes.startIndex...newline]
            } else if chunk.count < bytes.count, fileSize > 0 {
                rotate()
                continue
            }
            do {
                _ = try file.writeAll(chunk)
            } catch {
                return
            }
            fileSize += Int64(chunk.count)
            bytes = bytes[chunk.endIndex...]
        }
    }

    func open() -> FileDescriptor? {
        guard let fd = try? FileDescriptor.open(path, .writeOnly, options: [.create, .append, .closeOnExec],
                                                permissions: FilePermissions(rawValue: 0o640)) else { return nil }
        file = fd
        fileSize = (try? Kernel.status(of: fd.rawValue, path).size) ?? 0
        return fd
    }

    func rotate() {
        try? file?.close()
        file = nil
        try? Kernel.renameFile(path, to: path + ".1")
        fileSize = 0
    }

    public func close() {
        try? file?.close()
        file = nil
    }
}
