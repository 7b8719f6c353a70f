import Glibc
import SpiritCore
import SystemPackage

/// The streaming boot's I/O shell (crom.nodus.stream=1): serves the image
/// to the kernel as /dev/nbdN while it is copied into RAM behind the
/// kernel's reads, then moves the root's loop device onto the RAM copy.
///
/// - The RAM file, made at its full size (sparse) where the copy-first
///   path puts the image, is filled by the Hydration, block by block, each
///   block checked against the signed block list.
/// - One end of a socket pair goes to the kernel's nbd driver (NBD_SET_SOCK,
///   read-only); the other is served here in the NBD transmission phase
///   (NBDServerSession): a read waits until its blocks are in RAM (they are
///   fetched first), then is answered from the RAM file.
/// - A read-only loop device is attached over /dev/nbdN: the squashfs is
///   mounted from it. When every block is in RAM and the whole file's
///   SHA-256 matches the manifest, LOOP_CHANGE_FD moves the loop onto the
///   RAM file, nbd is disconnected, and the network may go.
///
/// Why LOOP_CHANGE_FD and not a device-mapper table swap or dm-clone: the
/// kernel's loop driver has had this one call for exactly this switch (a
/// live CD's root moved to a copy in RAM): it swaps the backing file of a
/// read-only loop under a mounted filesystem for a file of the same size,
/// atomically, page cache and all. It needs no dm-mod or dm-clone in the
/// initramfs, no metadata device (dm-clone keeps a bitmap on one), and the
/// copy-first path's mount (squashfs on a loop) stays as it is; the
/// hydration bookkeeping dm-clone would do in the kernel is done here,
/// where a bad block can be pinned on the peer that sent it.
///
/// The process outlives the boot worker and switch_root: after the switch
/// no path it knew is visible to it (its root is the freed initramfs), so
/// it works from descriptors and from its working directory, which is the
/// image's tmpfs and moves with /run into the new root.
public final class Hydrator: @unchecked Sendable {
    public struct Settings: Sendable {
        /// The image's tmpfs directory; its file is `imageName` there.
        public var imageDirectory: String
        public var imageName: String
        public var sha256: String
        /// /dev/nbdN, or nil for the first free one.
        public var nbdDevice: String?
        /// The state file and the timeline, relative to imageDirectory
        /// (they stay reachable after switch_root, as the directory does).
        public var stateFile = "../hydrate.json"
        public var timelineDirectory = ".."
        public init(imageDirectory: String, imageName: String, sha256: String, nbdDevice: String? = nil) {
            self.imageDirectory = imageDirectory
            self.imageName = imageName
            self.sha256 = sha256
            self.nbdDevice = nbdDevice
        }
    }

    let settings: Settings
    let hydration: Hydration
    let console: Console
    var imageFD: CInt = -1
    var nbdFD: CInt = -1
    var loopFD: CInt = -1
    public private(set) var nbdDevice = ""
    public private(set) var loopDevice = ""
    let served = Monitor()
    var sessionEnded: String? // under `served`
    /// The NBD_DO_IT thread closes nbdFD when the kernel lets it go; until
    /// then (under `served`) finish() may still ask it to disconnect.
    var nbdOpen = false

    public init(settings: Settings, hydration: Hydration, console: Console) {
        self.settings = settings
        self.hydration = hydration
        self.console = console
    }

    var size: Int64 { hydration.hashes.imageSize }

    /// Checks the RAM file (made at full size by the caller, whose store
    /// the Hydration writes through), hands the kernel its nbd device,
    /// starts the fetching and attaches the read-only loop device the root
    /// is mounted from (its path is `loopDevice`).
    public func start() throws {
        try Kernel.changeDirectory(settings.imageDirectory)
        guard size > 0, size % 512 == 0 else {
            throw SpiritError("the image is \(size) bytes, not a whole number of 512-byte sectors: it cannot be streamed")
        }
        // The file is made at its full size before the Hydration starts
        // (its blocks may come at once): its size is checked here.
        imageFD = try Kernel.open(settings.imageName, O_RDONLY | O_CLOEXEC)
        let fileSize = try Kernel.status(of: imageFD, settings.imageName).size
        guard fileSize == size else {
            throw SpiritError("\(settings.imageName) is \(fileSize) bytes, the image \(size): make it at its full size first")
        }
        let export = try NBDExport(path: settings.imageName, names: [""], description: "the image, as it comes into RAM")
        // nbd is carried, not loaded at boot (modules.mount): loaded here.
        if !Kernel.exists("/sys/module/nbd") { OnDemandModules.load(["nbd"], for: "the streaming boot") }
        let device = try settings.nbdDevice ?? Self.freeNBDDevice()
        nbdDevice = device
        nbdFD = try Kernel.open(device, O_RDWR | O_CLOEXEC, hint: { $0 == .noSuchFileOrDirectory ? "is the nbd module loaded?" : nil })
        let (kernelEnd, ourEnd) = try Kernel.socketPair()
        let control = { (name: String, request: UInt, value: UInt) throws(SystemError) in
            try NBDKernelDevice.control(self.nbdFD, device, name, request, value,
                                        hint: { $0 == .resourceBusy ? "\(device) is in use by another connection" : nil })
        }
        let blockSize: Int64 = size % 4096 == 0 ? 4096 : 512
        try control("NBD_SET_BLKSIZE", NBDKernelDevice.setBlockSize, UInt(blockSize))
        try control("NBD_SET_SIZE_BLOCKS", NBDKernelDevice.setSizeBlocks, UInt(size / blockSize))
        // No timeout: a read may wait for a block from a slow peer; when no
        // peer is left it is answered EIO (Hydration says why), never left
        // hanging. With a timeout the kernel would drop the whole device.
        try control("NBD_SET_TIMEOUT", NBDKernelDevice.setTimeout, 0)
        try control("NBD_CLEAR_SOCK", NBDKernelDevice.clearSocket, 0)
        try control("NBD_SET_FLAGS", NBDKernelDevice.setFlags, UInt(NBDServerSession.transmissionFlags.rawValue))
        try control("NBD_SET_SOCK", NBDKernelDevice.setSocket, UInt(kernelEnd))
        Kernel.close(kernelEnd) // the kernel holds its own reference
        let nbd = nbdFD
        served.withLock { nbdOpen = true }
        try Threads.start { [self] in
            do throws(SystemError) {
                try Kernel.control(nbd, NBDKernelDevice.doIt, 0, "serve \(device) from the RAM copy (NBD_DO_IT)")
            } catch {
                if error.errno != .brokenPipe, error.errno != .connectionReset { console.warning("nodus: \(error)") }
            }
            served.withLock {
                _ = try? Kernel.control(nbd, NBDKernelDevice.clearQueue, 0, "NBD_CLEAR_QUE")
                _ = try? Kernel.control(nbd, NBDKernelDevice.clearSocket, 0, "NBD_CLEAR_SOCK")
                // This thread owns the descriptor from here: closed once,
                // after its last use, never under another file's number.
                Kernel.close(nbd)
                nbdOpen = false
            }
        }
        let transport = PairTransport(socket: Socket(fd: ourEnd, name: "\(device)'s socket"))
        try Threads.start { [self] in
            var session = NBDServerSession(exports: NBDExports([export]))
            session.beforeRead = { [hydration] offset, length in hydration.ensure(offset: offset, length: length) }
            let end = session.serveTransmission(export, transport)
            served.withLock {
                sessionEnded = "\(end)"
                served.broadcast()
            }
            transport.socket.close()
        }
        try hydration.start()
        try waitForDevice(device)
        let (fd, loop) = try Kernel.attachLoop(device)
        loopFD = fd
        loopDevice = loop
    }

    /// NBD_DO_IT starts the device in its own thread, and the kernel sets
    /// its size only then (after it shows the serving pid in sysfs): a loop
    /// device attached before would be 0 bytes, every read past its end.
    func waitForDevice(_ device: String) throws {
        let name = device.split(separator: "/").last.map(String.init) ?? device
        let deadline = Kernel.bootTimeMicros() + 5_000_000
        let sectors = String(size / 512)
        while (try? Kernel.readText("/sys/block/\(name)/size"))?.trimmed != sectors {
            if Kernel.bootTimeMicros() > deadline { throw SpiritError("\(device) did not start within 5 s of NBD_DO_IT") }
            Kernel.sleep(milliseconds: 5)
        }
    }

    /// The first /dev/nbdN that no connection uses.
    public static func freeNBDDevice(sys: String = "/sys/block") throws(SpiritError) -> String {
        for number in 0..<64 {
            guard Kernel.exists("\(sys)/nbd\(number)") else { break }
            if !Kernel.exists("\(sys)/nbd\(number)/pid") { return "/dev/nbd\(number)" }
        }
        throw SpiritError("no free nbd device in \(sys) (is the nbd module loaded, with nbds_max > 0?)")
    }

    /// Waits for every block, checks the whole file, moves the loop onto
    /// it and lets the network go. Returns nil when the root reads RAM, or
    /// why not (then the export keeps serving what is in RAM, and reads of
    /// the rest fail with EIO).
    public func finish(progress: @escaping (HydrationProgress) -> Void) -> String? {
        if let problem = hydration.waitUntilComplete(progress: progress) {
            progress(hydration.progress(.failed, endedMicros: Kernel.bootTimeMicros(), problem: problem))
            return problem
        }
        progress(hydration.progress(.verifying))
        do {
            let digest = try Self.sha256(of: imageFD, size: size, name: settings.imageName)
            guard digest == settings.sha256 else {
                throw SpiritError("the image in RAM has the SHA-256 \(digest.prefix(12)), the manifest says \(settings.sha256.prefix(12))")
            }
            let readOnly = try Kernel.open(settings.imageName, O_RDONLY | O_CLOEXEC)
            defer { Kernel.close(readOnly) }
            try Kernel.control(loopFD, Self.loopChangeFD, UInt(readOnly), "move \(loopDevice) onto the RAM copy (LOOP_CHANGE_FD)",
                               hint: { $0 == .invalidArgument ? "the loop must be read-only and the file the same size" : nil })
        } catch {
            let problem = "\(error)"
            progress(hydration.progress(.failed, endedMicros: Kernel.bootTimeMicros(), problem: problem))
            return problem
        }
        do {
            // Nodus serves this copy later without hashing it again.
            try VerifiedStamp.write(for: settings.imageName, sha256: settings.sha256)
        } catch {
            console.info("unable to note the image as checked (\(error)): Nodus will hash it again")
        }
        hydration.close()
        served.withLock {
            if nbdOpen { _ = try? Kernel.control(nbdFD, NBDKernelDevice.disconnect, 0, "NBD_DISCONNECT") }
        }
        served.withLock {
            let deadline = Kernel.bootTimeMicros() + 5_000_000
            while sessionEnded == nil, Kernel.bootTimeMicros() < deadline { served.wait(untilBootMicros: deadline) }
        }
        Kernel.close(loopFD) // the mount holds the loop; autoclear frees it at the unmount
        progress(hydration.progress(.done, endedMicros: Kernel.bootTimeMicros()))
        return nil
    }

    /// LOOP_CHANGE_FD from <linux/loop.h>.
    static let loopChangeFD: UInt = 0x4C06

    static func sha256(of fd: CInt, size: Int64, name: String) throws(SystemError) -> String {
        var stream = SHA256Stream()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: Int64 = 0
        while offset < size {
            let n = Int(min(Int64(buffer.count), size - offset))
            try buffer.withMutableBytes { raw throws(SystemError) in
                try Kernel.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<n]), at: offset, name)
            }
            buffer.withUnsafeBytes { stream.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += Int64(n)
        }
        return stream.hex()
    }
}

/// The server's end of the socket pair whose other end the kernel's nbd
/// driver holds: no handshake, no idle limit (an idle root is fine).
final class PairTransport: NBDTransport, @unchecked Sendable {
    let socket: Socket
    init(socket: Socket) { self.socket = socket }

    func read(exactly count: Int) throws -> [UInt8] { try socket.read(exactly: count) }
    func write(_ bytes: [UInt8], more: Bool) throws { try socket.write(bytes, more: more) }
    func writeExport(header: [UInt8], export: NBDExport, offset: Int64, length: Int) throws {
        try socket.write(header, more: true)
        try socket.sendFile(export.fd, offset: offset, count: length)
    }
    func readRequest() throws -> [UInt8] { try socket.read(exactly: NBDRequest.size) }
}
