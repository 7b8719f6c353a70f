import Crypto
import Glibc
import SpiritCore
import SystemPackage

/// Where image bytes come from: a file on boot media, later an HTTP body or
/// an NBD export.
public protocol ImageStream {
    /// Reads up to buffer.count bytes; 0 at the end.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Lets go of the source (a file on media that is unmounted next).
    func close()
}

/// An image file, read with plain read(2).
public struct FileImageStream: ImageStream {
    let fd: FileDescriptor
    let path: String

    public init(path: String) throws(SystemError) {
        do {
            fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec])
        } catch {
            throw SystemError("open \(path)", error as? Errno ?? .ioError)
        }
        self.path = path
    }

    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        do {
            return try fd.read(into: buffer)
        } catch {
            throw SystemError("read \(path)", error as? Errno ?? .ioError)
        }
    }

    public func close() { try? fd.close() }
}

/// Copies an image into RAM while hashing it: the source is read once.
public enum ImageCopy {
    public struct Result: Sendable, Equatable {
        public var size: Int64
        public var sha256: String
    }

    /// Copies `source` to `destination`, stopping with an error as soon as
    /// more than `expectedSize` bytes arrive (a source cannot fill RAM past
    /// what its manifest promised). `progress` is called with the bytes done
    /// so far at each quarter of images over 32 MiB.
    public static func copy(from source: inout some ImageStream, to destination: String, expectedSize: Int64,
                            progress: (Int64) -> Void = { _ in }) throws -> Result {
        let out: FileDescriptor
        do {
            out = try FileDescriptor.open(destination, .writeOnly, options: [.create, .truncate, .closeOnExec],
                                          permissions: [.ownerRead, .ownerWrite])
        } catch {
            throw SystemError("create \(destination)", error as? Errno ?? .ioError)
        }
        defer { try? out.close() }
        var hasher = SHA256()
        var total: Int64 = 0
        let reportEvery = expectedSize > 32 << 20 ? expectedSize / 4 : Int64.max
        var nextReport = reportEvery
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = try source.read(into: buffer)
            if n == 0 { break }
            total += Int64(n)
            guard total <= expectedSize else {
                throw SpiritError("the image is larger than the \(expectedSize) bytes its manifest says; stopped copying")
            }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(bufferPointer: chunk)
            do {
                _ = try out.writeAll(chunk)
            } catch {
                throw SystemError("write \(destination)", error as? Errno ?? .ioError,
                                  hint: (error as? Errno) == .noSpace ? "is there enough RAM for the image?" : nil)
            }
            if total >= nextReport {
                progress(total)
                nextReport += reportEvery
            }
        }
        return Result(size: total, sha256: Hex.encode(hasher.finalize()))
    }
}
