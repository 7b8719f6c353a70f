/// The two ends the QMP and agent clients talk through: a Unix socket in
/// the daemon (`SocketStream`), a recorded transcript in the tests
/// (`ScriptedStream`, which "plays QEMU"). The clients hold no socket.
public protocol ByteStream: AnyObject {
    func send(_ bytes: [UInt8]) throws(VMError)
    /// Sends `bytes` with a descriptor (SCM_RIGHTS): QMP's `getfd`.
    func send(_ bytes: [UInt8], passing descriptor: Int32) throws(VMError)
    /// What has arrived within `milliseconds`: nil on timeout, [] at the
    /// end of the stream (the peer closed it).
    func receive(milliseconds: Int) throws(VMError) -> [UInt8]?
}

/// The time the clients wait by, injectable: the daemon's boot clock, or a
/// fake clock that moves only when a test says (or a client sleeps).
public protocol VMClock: AnyObject {
    var nowMilliseconds: Int64 { get }
    func sleep(milliseconds: Int)
}

/// An error of the VM manager, worded for the console: the whole operation
/// and why, on one line.
public struct VMError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    /// The CLI's exit code: 100 for a request that cannot be (usage,
    /// precondition), 111 for a failure of the system or of QEMU.
    public var code: Int32
    public init(_ description: String, code: Int32 = 111) {
        self.description = description
        self.code = code
    }
}

/// Lines out of a byte stream, however its reads cut them.
public struct LineBuffer: Sendable {
    var pending: [UInt8] = []
    public init() {}

    public mutating func append(_ bytes: [UInt8]) { pending += bytes }

    /// The next complete line without its "\n", or nil.
    public mutating func nextLine() -> [UInt8]? {
        guard let newline = pending.firstIndex(of: 0x0A) else { return nil }
        let line = Array(pending[..<newline])
        pending.removeFirst(newline + 1)
        return line
    }
}
