import Crypto
import Dispatch
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
    /// A file's size and SHA-256, read as a boot source reads it: what the
    /// manifest writers and checkers on the host, and Nodus before it
    /// serves, compare with a manifest.
    public static func measure(_ path: String, expectedSize: Int64 = .max) throws -> Result {
        var stream = try FileImageStream(path: path)
        defer { stream.close() }
        return try copy(from: &stream, to: "/dev/null", expectedSize: expectedSize)
    }

    /// A file's block list (BlockHashes), read in 1 MiB pieces.
    public static func blockHashes(_ path: String, blockSize: Int) throws -> BlockHashes {
        var stream = try FileImageStream(path: path)
        defer { stream.close() }
        var builder = BlockHashBuilder(blockSize: blockSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            let n = try stream.read(into: buffer)
            if n == 0 { break }
            builder.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return builder.finish()
    }

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
        let hasher = BackgroundHasher()
        var total: Int64 = 0
        let reportEvery = expectedSize > 32 << 20 ? expectedSize / 4 : Int64.max
        var nextReport = reportEvery
        while true {
            let (slot, buffer) = hasher.freeBuffer()
            let n = try source.read(into: buffer)
            if n == 0 { break }
            total += Int64(n)
            guard total <= expectedSize else {
                throw SpiritError("the image is larger than the \(expectedSize) bytes its manifest says; stopped copying")
            }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            do {
                _ = try out.writeAll(chunk)
            } catch {
                throw SystemError("write \(destination)", error as? Errno ?? .ioError,
                                  hint: (error as? Errno) == .noSpace ? "is there enough RAM for the image?" : nil)
            }
            hasher.hash(slot: slot, count: n)
            if total >= nextReport {
                progress(total)
                nextReport += reportEvery
            }
        }
        return Result(size: total, sha256: hasher.finish())
    }
}

/// SHA-256 on a thread of its own, over a ring of buffers: while one chunk
/// is hashed, the next is read and written. The hash runs about as fast as
/// the copy itself (1.4 GB/s against 1.5 GB/s from a socket into tmpfs
/// here), so in one thread the copy took both times. Chunks are hashed in
/// the order they are handed over (a serial queue); a buffer is read into
/// again only once its hash is done.
final class BackgroundHasher: @unchecked Sendable {
    static let bufferBytes = 1 << 20
    private let buffers: [UnsafeMutableRawBufferPointer]
    private let queue = DispatchQueue(label: "spirit.image-hash")
    private let free: DispatchSemaphore
    // Touched only on `queue` until finish() has drained it.
    private var hasher = SHA256()
    private var next = 0

    init(buffers count: Int = 3) {
        buffers = (0..<count).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferBytes, alignment: 4096) }
        // Made at 0 and raised: libdispatch stops a process that frees a
        // semaphore whose value is below the one it was made with, which a
        // copy that ends or fails with buffers taken would leave.
        free = DispatchSemaphore(value: 0)
        for _ in 0..<count { free.signal() }
    }

    // Each pending hash holds this object: once it goes, no hash reads a
    // buffer any more.
    deinit {
        for buffer in buffers { buffer.deallocate() }
    }

    /// The next buffer of the ring, once no hash reads it.
    func freeBuffer() -> (slot: Int, buffer: UnsafeMutableRawBufferPointer) {
        free.wait()
        let slot = next
        next = (next + 1) % buffers.count
        return (slot, buffers[slot])
    }

    /// Hashes the first `count` bytes of the buffer in `slot`, after every
    /// chunk handed over before it.
    func hash(slot: Int, count: Int) {
        queue.async {
            self.hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: self.buffers[slot][0..<count]))
            self.free.signal()
        }
    }

    /// The digest of every chunk handed over, in hex.
    func finish() -> String {
        queue.sync { Hex.encode(hasher.finalize()) }
    }
}
