import CSpirit
import SystemPackage

/// The display mode of a Linux virtual terminal (KDSETMODE). In graphics
/// mode fbcon neither draws on the screen nor blanks it, so a process that
/// owns the framebuffer (the HUD) must set it while it draws, and set text
/// back when it stops. A process that dies leaves the VT in graphics mode:
/// whoever notices (the supervisor, a crash handler) calls `restoreText`.
public enum VirtualTerminal {
    public enum Mode: Sendable { case text, graphics }

    /// The active VT's device, from /sys/class/tty/tty0/active ("tty1" →
    /// /dev/tty1), so that text mode later goes back to the same VT even if
    /// another became active; /dev/tty0 (whichever is active) if unknown.
    public static func active(sys: String = "/sys", dev: String = "/dev") -> String {
        let name = ((try? Kernel.readText(sys + "/class/tty/tty0/active")) ?? "")
            .split(whereSeparator: { $0 == " " || $0 == "\n" }).first.map(String.init) ?? ""
        guard name.hasPrefix("tty"), name.count > 3, name.dropFirst(3).allSatisfy(\.isNumber) else { return dev + "/tty0" }
        return dev + "/" + name
    }

    /// KDSETMODE on `tty`.
    public static func setMode(_ mode: Mode, on tty: String) throws(SystemError) {
        try Kernel.shim("set \(tty) to \(mode == .graphics ? "graphics" : "text") mode (KDSETMODE)", hint: { errno in
            errno == .inappropriateIOCTLForDevice ? "\(tty) is not a virtual terminal" : nil
        }) {
            spirit_console_set_mode(tty, mode == .graphics ? 1 : 0)
        }
    }

    /// KD_TEXT on `tty` with no error to handle: for crash and exit paths,
    /// where there is nothing better to do. Only open, ioctl and close run.
    /// True if it worked.
    @discardableResult
    public static func restoreText(on tty: String = "/dev/tty0") -> Bool {
        tty.withCString { spirit_console_set_mode($0, 0) } == 0
    }
}
