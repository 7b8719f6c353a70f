import SpiritCore
import Testing

@Suite struct ConsoleModeTests {
    @Test func activeTerminalFromSysfs() throws {
        let sys = try fixtureDirectory("vt-sys")
        try Kernel.makeDirectory(sys + "/class/tty/tty0", parents: true)
        #expect(VirtualTerminal.active(sys: sys, dev: "/dev") == "/dev/tty0")
        try Kernel.writeFile(sys + "/class/tty/tty0/active", "tty3\n")
        #expect(VirtualTerminal.active(sys: sys, dev: "/dev") == "/dev/tty3")
        try Kernel.writeFile(sys + "/class/tty/tty0/active", "ttyS0\n")
        #expect(VirtualTerminal.active(sys: sys, dev: "/dev") == "/dev/tty0")
        try Kernel.removeFile(sys + "/class/tty/tty0/active")
        for directory in ["/class/tty/tty0", "/class/tty", "/class", ""] { try Kernel.removeDirectory(sys + directory) }
    }

    @Test func notAVirtualTerminal() {
        do {
            try VirtualTerminal.setMode(.graphics, on: "/dev/null")
            Issue.record("KDSETMODE worked on /dev/null")
        } catch {
            #expect(error.description == "unable to set /dev/null to graphics mode (KDSETMODE): Inappropriate ioctl for device — /dev/null is not a virtual terminal")
        }
        #expect(VirtualTerminal.restoreText(on: "/dev/null") == false)
        #expect(VirtualTerminal.restoreText(on: "/nonexistent/tty9") == false)
    }
}
