import SpiritCore
import Testing
import VMManager

/// The QMP client on transcripts captured from QEMU 7.2 on this machine
/// (../shared/research/vm-gpu.md §2.1), with the ids our client sends.
@Suite struct QMPTests {
    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#

    @Test func handshakeReadsTheVersionAndNegotiates() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [Self.greeting, #"{"return": {}, "id": "spirit-1"}"#], clock: clock)
        let client = QMPClient(stream: stream, clock: clock)
        try client.handshake()
        #expect(client.version == "7.2.22")
        #expect(client.package == "Debian 1:7.2+dfsg-7+deb12u18+b3")
        #expect(stream.sentText == [#"{"execute": "qmp_capabilities", "id": "spirit-1"}"# + "\n"])
    }

    @Test func eventsBeforeAndAfterTheReplyAreQueued() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [
            Self.greeting, #"{"return": {}, "id": "spirit-1"}"#,
            #"{"timestamp": {"seconds": 1764000000, "microseconds": 1}, "event": "STOP"}"#,
            #"{"return": {}, "id": "spirit-2"}"#,
            #"{"return": {"status": "paused", "singlestep": false, "running": false}, "id": "spirit-3"}"#,
            #"{"timestamp": {"seconds": 1764000001, "microseconds": 2}, "event": "RESUME"}"#,
        ], clock: clock)
        let client = QMPClient(stream: stream, clock: clock)
        try client.handshake()
        try client.execute("stop")
        let status = try client.execute("query-status")
        #expect(status["status"]?.string == "paused")
        #expect(client.takeEvents() == [QMPEvent(name: "STOP", seconds: 1_764_000_000)])
        #expect(try client.waitForEvent("RESUME", milliseconds: 1000)?.seconds == 1_764_000_001)
    }

    @Test func anAnswerToAnotherIdIsNotTakenForTheReply() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [
            #"{"return": {"status": "running", "running": true}, "id": "spirit-0"}"#,
            #"{"return": {"status": "running", "singlestep": false, "running": false}, "id": "spirit-1"}"#,
        ], clock: clock)
        let client = QMPClient(stream: stream, clock: clock)
        #expect(try client.execute("query-status")["running"] == .bool(false))
    }

    @Test func errorsAreSurfacedVerbatim() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [
            #"{"error": {"class": "GenericError", "desc": "Parameter 'uri' expects a valid migration protocol"}, "id": "spirit-1"}"#,
        ], clock: clock)
        let client = QMPClient(stream: stream, clock: clock)
        #expect(throws: VMError("QEMU refused migrate: Parameter 'uri' expects a valid migration protocol (GenericError)")) {
            try client.execute("migrate", [("uri", .string("file:/tmp/x"))])
        }
    }

    @Test func theEndOfTheSocketMidCommandIsAnErrorNotAHang() throws {
        let clock = FakeClock()
        let stream = ScriptedStream([.bytes(Array(#"{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#.utf8) + [0x0A]), .end], clock: clock)
        let client = QMPClient(stream: stream, clock: clock)
        #expect(throws: VMError("QEMU closed its QMP socket while waiting for the answer to query-migrate")) {
            try client.execute("query-migrate")
        }
        #expect(client.events.first?.name == "SHUTDOWN")
        #expect(client.events.first?.data?["reason"]?.string == "host-qmp-quit")
    }

    @Test func silenceEndsAtTheDeadline() throws {
        let clock = FakeClock()
        let client = QMPClient(stream: ScriptedStream([.silence], clock: clock), clock: clock)
        #expect(throws: VMError("QEMU did not send the answer to query-status in time")) {
            try client.execute("query-status", milliseconds: 3000)
        }
        #expect(clock.nowMilliseconds == 3000)
    }

    @Test func aReplySplitAcrossReadsIsJoined() throws {
        let clock = FakeClock()
        let line = Array(#"{"return": {"blocked-reasons": ["VFIO device doesn't support migration"]}, "id": "spirit-1"}"#.utf8) + [0x0A]
        let stream = ScriptedStream([.bytes(Array(line[..<10])), .bytes(Array(line[10...]))], clock: clock)
        let client = QMPClient(stream: stream, clock: clock)
        let answer = try client.execute("query-migrate")
        #expect(answer["blocked-reasons"] == .array([.string("VFIO device doesn't support migration")]))
    }

    @Test func getfdPassesTheDescriptorWithTheCommand() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [#"{"return": {}, "id": "spirit-1"}"#], clock: clock)
        let client = QMPClient(stream: stream, clock: clock)
        try client.execute("getfd", [("fdname", .string("statefd"))], passing: 7)
        #expect(stream.passed == [7])
        #expect(stream.sentText == [#"{"execute": "getfd", "arguments": {"fdname": "statefd"}, "id": "spirit-1"}"# + "\n"])
    }
}
