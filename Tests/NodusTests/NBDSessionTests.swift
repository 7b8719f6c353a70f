import Glibc
import Testing
@testable import Nodus
import SpiritCore

/// Plays the client: the bytes the client sends are queued up front; what
/// the server writes is collected. The end of the queue is the client
/// closing the connection.
final class ScriptedTransport: NBDTransport {
    var input: [UInt8]
    var position = 0
    var output: [UInt8] = []

    init(_ input: [UInt8]) { self.input = input }

    struct Closed: Error {}

    func read(exactly count: Int) throws -> [UInt8] {
        guard input.count - position >= count else { throw Closed() }
        defer { position += count }
        return Array(input[position..<position + count])
    }

    func write(_ bytes: [UInt8], more: Bool) throws { output += bytes }

    func writeExport(header: [UInt8], export: NBDExport, offset: Int64, length: Int) throws {
        output += header
        output += try export.read(offset: offset, length: length)
    }

    func readRequest() throws -> [UInt8] { try read(exactly: NBDRequest.size) }
}

/// What a client sends, built with the protocol's own encoders.
struct ClientScript {
    var writer = ByteWriter()

    init(flags: UInt32 = UInt32(NBD.flagFixedNewstyle | NBD.flagNoZeroes)) { writer.u32(flags) }

    mutating func option(_ code: UInt32, _ data: [UInt8] = []) {
        writer.u64(NBD.optionMagic)
        writer.u32(code)
        writer.u32(UInt32(data.count))
        writer.append(data)
    }

    mutating func go(_ name: String, code: NBD.Option = .go, requests: [NBD.Info] = []) {
        var data = ByteWriter()
        data.u32(UInt32(name.utf8.count))
        data.append(name)
        data.u16(UInt16(requests.count))
        for request in requests { data.u16(request.rawValue) }
        option(code.rawValue, data.bytes)
    }

    mutating func request(_ command: NBD.Command, cookie: UInt64, offset: UInt64, length: UInt32, flags: UInt16 = 0, payload: [UInt8] = []) {
        writer.append(NBDRequest(flags: flags, type: command.rawValue, cookie: cookie, offset: offset, length: length).encoded)
        writer.append(payload)
    }

    var bytes: [UInt8] { writer.bytes }
}

/// Reads the server's answers back.
struct ServerAnswers {
    var reader: ByteReader

    init(_ bytes: [UInt8]) {
        reader = ByteReader(bytes)
    }

    mutating func greeting() throws {
        #expect(try reader.u64() == NBD.greetingMagic)
        #expect(try reader.u64() == NBD.optionMagic)
        #expect(try reader.u16() == NBD.flagFixedNewstyle | NBD.flagNoZeroes)
    }

    mutating func optionReply() throws -> (option: UInt32, type: UInt32, data: [UInt8]) {
        #expect(try reader.u64() == NBD.replyMagic)
        let option = try reader.u32()
        let type = try reader.u32()
        let data = Array(try reader.take(Int(try reader.u32())))
        return (option, type, data)
    }

    mutating func simpleReply(dataLength: Int = 0) throws -> (error: UInt32, cookie: UInt64, data: [UInt8]) {
        #expect(try reader.u32() == NBD.simpleReplyMagic)
        let error = try reader.u32()
        let cookie = try reader.u64()
        return (error, cookie, error == 0 ? Array(try reader.take(dataLength)) : [])
    }
}

func temporaryExport(size: Int = 10_000, names: [String] = ["abc", ""]) throws -> (NBDExport, [UInt8]) {
    let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    var template = Array("/tmp/nodus-test-XXXXXX".utf8CString)
    let fd = mkstemp(&template)
    let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    defer { unlink(path) }
    return (try NBDExport(path: path, names: names, description: "test image"), bytes)
}

@Suite struct NBDSessionTests {
    @Test func goThenReadsWithinAndPastTheEnd() throws {
        let (export, bytes) = try temporaryExport()
        var client = ClientScript()
        client.go("abc", requests: [.name, .description])
        client.request(.read, cookie: 7, offset: 100, length: 50)
        client.request(.read, cookie: 8, offset: 9_990, length: 11) // one byte past the end
        client.request(.read, cookie: 9, offset: UInt64.max - 3, length: 8) // wraps around
        client.request(.read, cookie: 10, offset: 0, length: 0)
        client.request(.read, cookie: 11, offset: 0, length: UInt32(NBD.maxRequestLength + 1))
        client.request(.write, cookie: 12, offset: 0, length: 4, payload: [1, 2, 3, 4])
        client.request(.trim, cookie: 13, offset: 0, length: 4)
        client.request(.flush, cookie: 14, offset: 0, length: 0)
        client.request(.blockStatus, cookie: 15, offset: 0, length: 4)
        client.request(.read, cookie: 16, offset: 9_996, length: 4) // the last bytes
        client.request(.disconnect, cookie: 17, offset: 0, length: 0)
        let transport = ScriptedTransport(client.bytes)
        #expect(NBDServerSession(exports: NBDExports([export])).run(transport) == .disconnected)

        var answers = ServerAnswers(transport.output)
        try answers.greeting()
        var infos: [UInt16: [UInt8]] = [:]
        while true {
            let reply = try answers.optionReply()
            #expect(reply.option == NBD.Option.go.rawValue)
            if reply.type == NBD.Reply.ack.rawValue { break }
            #expect(reply.type == NBD.Reply.info.rawValue)
            var info = ByteReader(reply.data)
            infos[try info.u16()] = Array(try info.take(info.remaining))
        }
        var exportInfo = ByteReader(infos[NBD.Info.export.rawValue] ?? [])
        #expect(try exportInfo.u64() == 10_000)
        let flags = NBD.TransmissionFlags(rawValue: try exportInfo.u16())
        #expect(flags.contains(.readOnly) && flags.contains(.canMultiConn) && flags.contains(.hasFlags))
        #expect(infos[NBD.Info.name.rawValue] == Array("abc".utf8))
        #expect(infos[NBD.Info.description.rawValue] == Array("test image".utf8))
        #expect(infos[NBD.Info.blockSize.rawValue] != nil)

        let read = try answers.simpleReply(dataLength: 50)
        #expect(read.error == 0 && read.cookie == 7 && read.data == Array(bytes[100..<150]))
        for cookie: UInt64 in [8, 9, 10, 11] {
            let reply = try answers.simpleReply()
            #expect(reply.cookie == cookie && reply.error == NBD.Error.invalid.rawValue)
        }
        #expect(try answers.simpleReply().error == NBD.Error.permission.rawValue) // write
        #expect(try answers.simpleReply().error == NBD.Error.permission.rawValue) // trim
        #expect(try answers.simpleReply().error == 0) // flush
        #expect(try answers.simpleReply().error == NBD.Error.invalid.rawValue) // a command not offered
        let last = try answers.simpleReply(dataLength: 4)
        #expect(last.cookie == 16 && last.data == Array(bytes[9_996...]))
        #expect(answers.reader.remaining == 0)
    }

    @Test func listInfoUnknownOptionsAndExportName() throws {
        let (export, _) = try temporaryExport(size: 4096)
        var client = ClientScript(flags: UInt32(NBD.flagFixedNewstyle)) // zeroes wanted
        client.option(NBD.Option.list.rawValue)
        client.option(NBD.Option.list.rawValue, [1]) // LIST takes no data
        client.option(NBD.Option.structuredReply.rawValue)
        client.option(999, [1, 2, 3])
        client.go("nope", code: .info)
        client.option(NBD.Option.exportName.rawValue, Array("".utf8))
        client.request(.read, cookie: 1, offset: 0, length: 16)
        let transport = ScriptedTransport(client.bytes)
        // The client closes after its read: the session ends on the transport.
        if case .failed = NBDServerSession(exports: NBDExports([export])).run(transport) {} else { Issue.record("expected the transport to end it") }

        var answers = ServerAnswers(transport.output)
        try answers.greeting()
        let server = try answers.optionReply()
        #expect(server.type == NBD.Reply.server.rawValue)
        var entry = ByteReader(server.data)
        #expect(try entry.u32() == 3 && Array(try entry.take(3)) == Array("abc".utf8))
        #expect(try answers.optionReply().type == NBD.Reply.ack.rawValue)
        #expect(try answers.optionReply().type == NBD.Reply.errorInvalid.rawValue)
        #expect(try answers.optionReply().type == NBD.Reply.errorUnsupported.rawValue)
        #expect(try answers.optionReply().type == NBD.Reply.errorUnsupported.rawValue)
        #expect(try answers.optionReply().type == NBD.Reply.errorUnknown.rawValue)
        // NBD_OPT_EXPORT_NAME: size, flags and 124 zeroes (no NO_ZEROES).
        #expect(try answers.reader.u64() == 4096)
        #expect(try answers.reader.u16() == NBDServerSession.transmissionFlags.rawValue)
        #expect(Array(try answers.reader.take(124)) == [UInt8](repeating: 0, count: 124))
        #expect(try answers.simpleReply(dataLength: 16).cookie == 1)
    }

    @Test func hostileHandshakesEndOnlyTheirConnection() throws {
        let (export, _) = try temporaryExport(size: 512)
        let session = NBDServerSession(exports: NBDExports([export]))

        // An option length far past the cap: refused without reading it.
        var huge = ClientScript()
        huge.writer.u64(NBD.optionMagic)
        huge.writer.u32(NBD.Option.go.rawValue)
        huge.writer.u32(0xFFFF_FFF0)
        #expect(session.run(ScriptedTransport(huge.bytes)) == .refused("option 7 with 4294967280 bytes of data (at most \(NBD.maxOptionLength))"))

        // An export name longer than the document allows.
        var long = ClientScript()
        long.go(String(repeating: "x", count: 4097))
        let transport = ScriptedTransport(long.bytes)
        if case .refused = session.run(transport) { Issue.record("a long name is an option error, not the end") }
        var answers = ServerAnswers(transport.output)
        try answers.greeting()
        #expect(try answers.optionReply().type == NBD.Reply.errorTooBig.rawValue)

        // Lengths inside NBD_OPT_GO that do not add up.
        var lying = ClientScript()
        var data = ByteWriter()
        data.u32(100) // says 100 bytes of name, gives 3
        data.append("abc")
        lying.option(NBD.Option.go.rawValue, data.bytes)
        let lyingTransport = ScriptedTransport(lying.bytes)
        _ = session.run(lyingTransport)
        var lyingAnswers = ServerAnswers(lyingTransport.output)
        try lyingAnswers.greeting()
        #expect(try lyingAnswers.optionReply().type == NBD.Reply.errorInvalid.rawValue)

        // Not NBD at all; an old client; unknown client flags; an unknown
        // name with EXPORT_NAME; a bad request magic; a write past the cap.
        #expect(session.run(ScriptedTransport(Array("GET / HTTP/1.1\r\n\r\n".utf8))) == .refused("unknown client flags 0x47455420"))
        #expect(session.run(ScriptedTransport([0, 0, 0, 0])) == .refused("the client does not speak the fixed newstyle handshake"))
        var unknown = ClientScript()
        unknown.option(NBD.Option.exportName.rawValue, Array("nope".utf8))
        #expect(session.run(ScriptedTransport(unknown.bytes)) == .refused("NBD_OPT_EXPORT_NAME of an unknown export 'nope'"))
        var badMagic = ClientScript()
        badMagic.go("")
        badMagic.writer.append([UInt8](repeating: 0x41, count: 28))
        #expect(session.run(ScriptedTransport(badMagic.bytes)) == .refused("a request without the request magic"))
        var bigWrite = ClientScript()
        bigWrite.go("")
        bigWrite.request(.write, cookie: 1, offset: 0, length: UInt32(NBD.maxRequestLength) + 1)
        #expect(session.run(ScriptedTransport(bigWrite.bytes)) == .refused("a write of \(NBD.maxRequestLength + 1) bytes (at most \(NBD.maxRequestLength))"))
        // A truncated handshake: the transport ends it.
        if case .failed = session.run(ScriptedTransport([0, 0])) {} else { Issue.record("a truncated handshake must end as failed") }
        // Abort is acknowledged.
        var abort = ClientScript()
        abort.option(NBD.Option.abort.rawValue)
        #expect(session.run(ScriptedTransport(abort.bytes)) == .aborted)
    }
}
