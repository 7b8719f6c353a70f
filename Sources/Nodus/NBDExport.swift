import Glibc
import SpiritCore

/// A read-only file served over NBD under one or more names (the image
/// under its SHA-256 and "", its manifest under "manifest").
public final class NBDExport: Sendable {
    /// The first name is the one NBD_OPT_LIST shows.
    public let names: [String]
    public let description: String
    public let size: Int64
    public let path: String
    let fd: CInt

    public init(path: String, names: [String], description: String) throws(SystemError) {
        let fd = try Kernel.open(path, O_RDONLY)
        let status: FileStatus
        do {
            status = try Kernel.status(of: fd, path)
        } catch {
            Kernel.close(fd)
            throw error
        }
        self.fd = fd
        self.path = path
        self.names = names
        self.description = description
        self.size = status.size
    }

    /// Bytes made at run time (a block list), in an anonymous file in RAM.
    public init(bytes: [UInt8], names: [String], description: String) throws(SystemError) {
        fd = try Kernel.memoryFile(names.first ?? "nodus-export", bytes)
        path = "(memory: \(names.first ?? ""))"
        self.names = names
        self.description = description
        size = Int64(bytes.count)
    }

    deinit { Kernel.close(fd) }

    public var name: String { names.first ?? "" }

    /// `length` bytes from `offset` (the caller has bounds-checked them).
    func read(offset: Int64, length: Int) throws(SystemError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        try bytes.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in try Kernel.read(fd, into: raw, at: offset, path) }
        }.get()
        return bytes
    }
}

/// The exports of one server, found by name.
public struct NBDExports: Sendable {
    public let all: [NBDExport]

    public init(_ exports: [NBDExport]) { all = exports }

    public func find(_ name: String) -> NBDExport? { all.first { $0.names.contains(name) } }
}
