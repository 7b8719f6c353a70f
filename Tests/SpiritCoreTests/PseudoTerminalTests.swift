import Glibc
import SpiritCore
import SystemPackage
import Testing

@Suite struct PseudoTerminalTests {
    /// Reads until `text` has appeared in the output or `seconds` pass;
    /// everything read so far.
    private func readUntil(_ terminal: PseudoTerminal, _ text: String, seconds: Int = 20) throws -> String {
        var output: [UInt8] = []
        let deadline = Kernel.bootTimeMicros() + Int64(seconds) * 1_000_000
        while Kernel.bootTimeMicros() < deadline {
            if String(decoding: output, as: UTF8.self).contains(text) { break }
            var wanted = [pollfd(fd: terminal.fd, events: Int16(POLLIN), revents: 0)]
            try Kernel.poll(&wanted, milliseconds: 200)
            guard let bytes = try terminal.read() else { continue }
            if bytes.isEmpty { break } // the terminal has ended
            output += bytes
        }
        return String(decoding: output, as: UTF8.self)
    }

    @Test func shellAnswersAndSeesTheNewSize() throws {
        let terminal = try PseudoTerminal.start("/bin/sh", rows: 24, columns: 80)
        defer { terminal.close() }
        #expect(terminal.slavePath.hasPrefix("/dev/pts/"))

        #expect(try terminal.write(Array("echo PTY-$((6*7))\n".utf8)) == 18)
        #expect(try readUntil(terminal, "PTY-42").contains("PTY-42"))

        _ = try terminal.write(Array("stty size\n".utf8))
        #expect(try readUntil(terminal, "24 80").contains("24 80"))
        try terminal.resize(rows: 33, columns: 101)
        _ = try terminal.write(Array("stty size\n".utf8))
        #expect(try readUntil(terminal, "33 101").contains("33 101"))

        // `exit`: the shell ends, its side closes, and read says [] (EIO).
        _ = try terminal.write(Array("exit 7\n".utf8))
        var ended = false
        let deadline = Kernel.bootTimeMicros() + 20_000_000
        while !ended, Kernel.bootTimeMicros() < deadline {
            var wanted = [pollfd(fd: terminal.fd, events: Int16(POLLIN), revents: 0)]
            try Kernel.poll(&wanted, milliseconds: 200)
            if try terminal.read() == [] { ended = true }
        }
        #expect(ended)
        var status: SpiritCore.ExitStatus?
        while status == nil, Kernel.bootTimeMicros() < deadline {
            status = try Spawn.wait(terminal.pid, noHang: true)?.status
            if status == nil { Kernel.sleep(milliseconds: 20) }
        }
        #expect(status == .exited(7))
    }
}
