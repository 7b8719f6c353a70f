import Glibc
import SpiritCore
import SystemPackage

/// Hands a negotiated NBD connection to the kernel's nbd driver, so that
/// /dev/nbdN is a block device backed by the peer (as nbd-client does, with
/// the ioctl interface every kernel with nbd has).
public enum NBDKernelDevice {
    // _IO(0xab, n) from <linux/nbd.h>; Swift does not import the macros.
    static let setSocket: UInt = 0xab00
    static let setBlockSize: UInt = 0xab01
    static let doIt: UInt = 0xab03
    static let clearSocket: UInt = 0xab04
    static let clearQueue: UInt = 0xab05
    static let setSizeBlocks: UInt = 0xab07
    static let disconnect: UInt = 0xab08
    static let setTimeout: UInt = 0xab09
    static let setFlags: UInt = 0xab0a

    /// Configures `device` for `client` and serves it: NBD_DO_IT returns
    /// only when the connection ends (a `detach`, the peer gone, a
    /// timeout). `ready` runs once the device is usable.
    public static func attach(_ client: NBDClient, device: String, timeoutSeconds: Int = 30, ready: () -> Void) throws {
        // nbd is carried, not loaded at boot: its devices appear when it is.
        if !Kernel.exists(device) { OnDemandModules.load(["nbd"], for: device) }
        let fd = try Kernel.open(device, O_RDWR, hint: { $0 == .noSuchFileOrDirectory ? "is the nbd module loaded?" : nil })
        defer { Kernel.close(fd) }
        let blockSize: Int64 = client.size % 4096 == 0 ? 4096 : 512
        guard client.size % blockSize == 0 else {
            throw SpiritError("the export '\(client.exportName)' is \(client.size) bytes, not a whole number of 512-byte sectors")
        }
        try control(fd, device, "NBD_SET_BLKSIZE", setBlockSize, UInt(blockSize))
        try control(fd, device, "NBD_SET_SIZE_BLOCKS", setSizeBlocks, UInt(client.size / blockSize))
        try control(fd, device, "NBD_SET_TIMEOUT", setTimeout, UInt(timeoutSeconds))
        try control(fd, device, "NBD_CLEAR_SOCK", clearSocket, 0)
        try control(fd, device, "NBD_SET_FLAGS", setFlags, UInt(client.flags.rawValue))
        try control(fd, device, "NBD_SET_SOCK", setSocket, UInt(client.socket.fd),
                    hint: { $0 == .resourceBusy ? "\(device) is in use by another connection" : nil })
        // The socket is the kernel's now; the timeouts set for the handshake
        // must not end an idle device.
        try? client.socket.setTimeouts(milliseconds: 0)
        ready()
        var ended: SystemError?
        do {
            try Kernel.control(fd, doIt, 0, "serve \(device) from \(client.server) (NBD_DO_IT)")
        } catch {
            ended = error
        }
        _ = try? Kernel.control(fd, clearQueue, 0, "NBD_CLEAR_QUE")
        _ = try? Kernel.control(fd, clearSocket, 0, "NBD_CLEAR_SOCK")
        if let ended, ended.errno != .brokenPipe, ended.errno != .connectionReset { throw ended }
    }

    /// Ends the connection of `device`: its NBD_DO_IT returns.
    public static func detach(_ device: String) throws {
        let fd = try Kernel.open(device, O_RDWR)
        defer { Kernel.close(fd) }
        try control(fd, device, "NBD_DISCONNECT", disconnect, 0)
        _ = try? Kernel.control(fd, clearSocket, 0, "NBD_CLEAR_SOCK")
    }

    static func control(_ fd: CInt, _ device: String, _ name: String, _ request: UInt, _ value: UInt,
                        hint: ((Errno) -> String?)? = nil) throws(SystemError) {
        try Kernel.control(fd, request, value, "configure \(device) (\(name))", hint: hint)
    }
}
