import CSpirit
import Glibc
import SpiritCore
import SystemPackage

/// A file attached to a loop device, read-only. The device is freed by the
/// kernel once its last user (the mount) goes; `close()` this after the
/// mount.
public struct LoopDevice {
    public let path: String
    let fd: CInt

    public static func attach(_ file: String) throws(SystemError) -> LoopDevice {
        var name = [CChar](repeating: 0, count: 64)
        let rc = spirit_loop_attach(file, &name, name.count)
        guard rc >= 0 else {
            throw SystemError("attach \(file) to a loop device", Errno(rawValue: -rc),
                              hint: -rc == ENOENT ? "is the loop module loaded?" : nil)
        }
        let path = name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return LoopDevice(path: path, fd: rc)
    }

    public func close() { _ = Glibc.close(fd) }
}
