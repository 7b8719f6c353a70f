import CSpirit
import Glibc
import SpiritCore
import SystemPackage

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
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SystemError("open \(path) for export", Errno(rawValue: spirit_errno())) }
        var status = stat()
        if fstat(fd, &status) < 0 {
            let errno = Errno(rawValue: spirit_errno())
            close(fd)
            throw SystemError("read the size of \(path)", errno)
        }
        self.fd = fd
        self.path = path
        self.names = names
        self.description = description
        self.size = Int64(status.st_size)
    }

    deinit { close(fd) }

    public var name: String { names.first ?? "" }

    /// `length` bytes from `offset` (the caller has bounds-checked them).
    func read(offset: Int64, length: Int) throws(SystemError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: length)
        var done = 0
        while done < length {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, length - done, off_t(offset) + off_t(done)) }
            if n < 0 {
                let errno = Errno(rawValue: spirit_errno())
                if errno == .interrupted { continue }
                throw SystemError("read \(path) at \(offset)", errno)
            }
            if n == 0 { throw SystemError("read \(path) at \(offset)", .ioError, hint: "the file is shorter than when it was opened") }
            done += n
        }
        return bytes
    }
}

/// The exports of one server, found by name.
public struct NBDExports: Sendable {
    public let all: [NBDExport]

    public init(_ exports: [NBDExport]) { all = exports }

    public func find(_ name: String) -> NBDExport? { all.first { $0.names.contains(name) } }
}
