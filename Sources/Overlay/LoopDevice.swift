import SpiritCore

/// A file attached to a loop device, read-only. The device is freed by the
/// kernel once its last user (the mount) goes; `close()` this after the
/// mount.
public struct LoopDevice {
    public let path: String
    let fd: CInt

    public static func attach(_ file: String) throws(SystemError) -> LoopDevice {
        let (fd, device) = try Kernel.attachLoop(file)
        return LoopDevice(path: device, fd: fd)
    }

    public func close() { Kernel.close(fd) }
}
