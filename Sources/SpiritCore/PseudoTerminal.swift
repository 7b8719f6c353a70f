import CSpirit
import Glibc
import SystemPackage

/// A shell on a pseudo-terminal: the HUD's terminal tiles. We keep the
/// master side, non-blocking (`fd` is for the caller's poll loop); the shell
/// gets the slave as its controlling terminal, in a session of its own.
public struct PseudoTerminal: Sendable {
    /// The master side.
    public let fd: CInt
    /// The slave side's device, /dev/pts/N.
    public let slavePath: String
    /// The shell; the caller reaps it (its Reaper) when it ends.
    public let pid: pid_t

    /// The environment of a terminal tile: Spirit's, with a TERM that the
    /// HUD's emulator (libvterm) understands.
    public static let environment = Spawn.baseEnvironment.filter { !$0.hasPrefix("TERM=") } + ["TERM=xterm-256color"]

    /// Starts `program` on a new pseudo-terminal of `rows`×`columns` cells.
    /// By default `program` is a login shell: argv[0] is its name with a
    /// leading "-", the convention sh, bash and busybox follow.
    public static func start(_ program: String = "/bin/sh", arguments: [String]? = nil,
                             environment: [String] = PseudoTerminal.environment,
                             rows: Int = 24, columns: Int = 80) throws(SystemError) -> PseudoTerminal {
        var slave = [CChar](repeating: 0, count: 128)
        let fd = try Kernel.shim("open a pseudo-terminal (/dev/ptmx)", hint: { errno in
            errno == .noSuchFileOrDirectory ? "is devpts mounted on /dev/pts?" : nil
        }) {
            spirit_pty_open(&slave, slave.count)
        }
        let slavePath = String(decoding: slave.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            try setSize(fd, slavePath, rows: rows, columns: columns)
            let name = program.split(separator: "/").last.map(String.init) ?? program
            let pid = try Spawn.spawn(program, arguments ?? ["-" + name], environment: environment,
                                      options: .init(newSession: true, tty: slavePath))
            return PseudoTerminal(fd: fd, slavePath: slavePath, pid: pid)
        } catch {
            Kernel.close(fd)
            throw error
        }
    }

    /// TIOCSWINSZ: the terminal's new size in cells; the shell's foreground
    /// job gets SIGWINCH.
    public func resize(rows: Int, columns: Int) throws(SystemError) {
        try Self.setSize(fd, slavePath, rows: rows, columns: columns)
    }

    private static func setSize(_ fd: CInt, _ slavePath: String, rows: Int, columns: Int) throws(SystemError) {
        precondition(rows > 0 && columns > 0, "a terminal of \(rows)x\(columns) cells")
        try Kernel.shim("resize \(slavePath) to \(rows)x\(columns) (TIOCSWINSZ)") {
            spirit_pty_set_size(fd, UInt16(clamping: rows), UInt16(clamping: columns))
        }
    }

    /// Writes what the terminal takes now (keys typed into the tile): the
    /// number of bytes taken, 0 when its input queue is full. The rest is to
    /// be written when poll(2) says POLLOUT.
    public func write(_ bytes: [UInt8]) throws(SystemError) -> Int {
        try bytes.withBytes { raw throws(SystemError) in try Kernel.writeSome(fd, raw, slavePath) } ?? 0
    }

    /// What the program wrote: nil when there is nothing yet (EAGAIN), []
    /// when the terminal has ended (every process on it has closed it; Linux
    /// says EIO then).
    public func read(maximum: Int = 65536) throws(SystemError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let count: Int?
        do {
            count = try buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(fd, into: raw, slavePath) }
        } catch where error.errno == .ioError {
            return []
        }
        guard let count else { return nil }
        return Array(buffer[0..<count])
    }

    /// Closes the master side: the kernel hangs up the terminal and the
    /// shell gets SIGHUP. The caller still reaps `pid`.
    public func close() { Kernel.close(fd) }
}
