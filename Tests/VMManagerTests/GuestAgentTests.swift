import SpiritCore
import Testing
import VMManager

/// The guest-agent client on the transcripts of §2.2 of the research.
@Suite struct GuestAgentTests {
    @Test func syncSkipsTheParseErrorAndStaleAnswersUntilItsId() throws {
        let clock = FakeClock()
        let stream = ScriptedStream([
            .bytes(Array(#"{"return": {"pid": 140}}"#.utf8) + [0x0A]),  // late answer to an exec that timed out
            .bytes(Array(#"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}"#.utf8) + [0x0A]),
            .bytes([0xFF] + Array(#"{"return": 1000001}"#.utf8) + [0x0A]),
        ], clock: clock)
        let agent = GuestAgentClient(stream: stream, clock: clock)
        #expect(try agent.sync())
        #expect(agent.synchronized)
        #expect(stream.sent[0].first == 0xFF)
        #expect(stream.sentText == [#"{"execute": "guest-sync-delimited", "arguments": {"id": 1000001}}"# + "\n"])
    }

    @Test func anAgentThatIsNotRunningIsNotReady() throws {
        let clock = FakeClock()
        let agent = GuestAgentClient(stream: ScriptedStream([], clock: clock), clock: clock)
        #expect(try agent.sync(milliseconds: 500) == false)
        #expect(clock.nowMilliseconds == 500)
    }

    @Test func anOldSyncIdIsNotTakenForTheNewOne() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [#"{"return": 1000001}"#], clock: clock)
        let agent = GuestAgentClient(stream: stream, clock: clock, firstSyncID: 1_000_002)
        #expect(try agent.sync(milliseconds: 100) == false)
    }

    @Test func execPollsUntilTheEndWithBackoffAndDecodesTheOutput() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [
            #"{"return": {"pid": 140}}"#,
            #"{"return": {"exited": false}}"#,
            #"{"return": {"exited": false}}"#,
            #"{"return": {"exitcode": 0, "out-data": "TGludXggKG5vbmUpIDYuMS4wLTU2LWFtZDY0ICMxIFNNUCBQUkVFTVBUX0RZTkFNSUMgRGViaWFuIDYuMS4xOTItMiAoMjAyNi0xMS0xNikgeDg2XzY0IEdOVS9MaW51eAo=", "out-truncated": false, "exited": true}}"#,
        ], clock: clock)
        let agent = GuestAgentClient(stream: stream, clock: clock)
        let result = try agent.exec("/bin/uname", ["-a"], milliseconds: 10_000)
        #expect(String(decoding: result.stdout, as: UTF8.self).hasPrefix("Linux (none) 6.1.0-56-amd64 #1 SMP PREEMPT_DYNAMIC Debian"))
        #expect(result.exitCode == 0 && result.shellStatus == 0 && result.stderr.isEmpty)
        #expect(clock.slept == [20, 40])
        #expect(stream.sentText[0] == #"{"execute": "guest-exec", "arguments": {"path": "/bin/uname", "arg": ["-a"], "capture-output": true}}"# + "\n")
        #expect(stream.sentText[1] == #"{"execute": "guest-exec-status", "arguments": {"pid": 140}}"# + "\n")
    }

    @Test func exitCodeStderrAndInputTravel() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [
            #"{"return": {"pid": 141}}"#,
            #"{"return": {"exitcode": 3, "err-data": "ZXJyCg==", "out-data": "aGVsbG8gZnJvbSBob3N0Cg==", "err-truncated": false, "out-truncated": false, "exited": true}}"#,
        ], clock: clock)
        let agent = GuestAgentClient(stream: stream, clock: clock)
        let result = try agent.exec("/bin/sh", ["-c", "cat; echo err >&2; exit 3"], input: Array("hello from host\n".utf8), milliseconds: 1000)
        #expect(result == GuestExecResult(exitCode: 3, stdout: Array("hello from host\n".utf8), stderr: Array("err\n".utf8)))
        #expect(result.shellStatus == 3)
        #expect(stream.sentText[0].contains(#""input-data": "aGVsbG8gZnJvbSBob3N0Cg==""#))
    }

    @Test func aSignalIsTheShellsStatus() throws {
        let value = try JSONReader.parse(#"{"exited": true, "signal": 9, "out-data": ""}"#)
        let result = try #require(try GuestExecResult.decode(value))
        #expect(result.signal == 9 && result.shellStatus == 137)
    }

    @Test func truncatedOutputIsReported() throws {
        let value = try JSONReader.parse(#"{"exited": true, "exitcode": 0, "out-data": "YQ==", "out-truncated": true}"#)
        #expect(try GuestExecResult.decode(value)?.stdoutTruncated == true)
    }

    @Test func execThatOutlivesItsTimeoutSaysSo() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [#"{"return": {"pid": 7}}"#] + Array(repeating: #"{"return": {"exited": false}}"#, count: 40), clock: clock)
        let agent = GuestAgentClient(stream: stream, clock: clock)
        #expect(throws: VMError("sleep did not end within 1 s (it still runs in the guest as pid 7)")) {
            try agent.exec("sleep", ["100"], milliseconds: 1000)
        }
        #expect(clock.nowMilliseconds >= 1000 && clock.nowMilliseconds < 1300)
    }

    @Test func errorsAreVerbatim() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [#"{"error": {"class": "GenericError", "desc": "Guest agent command failed, error was 'Failed to execute child process “/nope” (No such file or directory)'"}}"#], clock: clock)
        let agent = GuestAgentClient(stream: stream, clock: clock)
        #expect(throws: VMError("the guest agent refused guest-exec: Guest agent command failed, error was 'Failed to execute child process “/nope” (No such file or directory)'")) {
            try agent.exec("/nope", [], milliseconds: 1000)
        }
    }

    @Test func shutdownWaitsForNoAnswerButTakesAnError() throws {
        let clock = FakeClock()
        let quiet = ScriptedStream([], clock: clock)
        try GuestAgentClient(stream: quiet, clock: clock).shutdown()
        #expect(quiet.sentText == [#"{"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}}"# + "\n"])
        let refusing = ScriptedStream(lines: [#"{"error": {"class": "GenericError", "desc": "The command guest-shutdown has been disabled for this instance"}}"#], clock: clock)
        #expect(throws: VMError("the guest agent refused guest-shutdown: The command guest-shutdown has been disabled for this instance")) {
            try GuestAgentClient(stream: refusing, clock: clock).shutdown()
        }
    }

    @Test func aSocketThatClosesAfterShutdownIsTheGuestGoingDown() throws {
        let clock = FakeClock()
        try GuestAgentClient(stream: ScriptedStream([.end], clock: clock), clock: clock).shutdown()
    }

    @Test func endOfStreamIsAnError() throws {
        let clock = FakeClock()
        let agent = GuestAgentClient(stream: ScriptedStream([.end], clock: clock), clock: clock)
        #expect(throws: VMError("the guest agent's socket closed (QEMU ended?)")) { try agent.execute("guest-ping") }
    }

    @Test func setTimeSendsNanoseconds() throws {
        let clock = FakeClock()
        let stream = ScriptedStream(lines: [#"{"return": {}}"#], clock: clock)
        try GuestAgentClient(stream: stream, clock: clock).setTime(nanoseconds: 1_764_115_200_000_000_000)
        #expect(stream.sentText == [#"{"execute": "guest-set-time", "arguments": {"time": 1764115200000000000}}"# + "\n"])
    }
}

@Suite struct Base64Tests {
    @Test func rfc4648Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
    }

    @Test func everyLengthAndByteRoundTrips() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 37 + 251) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
    }

    @Test func refusesWhatIsNotBase64() {
        #expect(Base64.decode("Zg=") == nil)
        #expect(Base64.decode("Z!==") == nil)
        #expect(Base64.decode("Zg==Zg==") == nil)
        #expect(Base64.decode("Z===") == nil)
    }
}

@Suite struct GuestCommandTests {
    @Test func linuxRunsTheLineThroughSh() {
        let command = GuestCommand.shell(["uname", "-a;", "echo", "$HOME"], os: .linux)
        #expect(command.path == "/bin/sh" && command.arguments == ["-c", "uname -a; echo $HOME"])
    }

    @Test func windowsRunsItThroughCmdInUTF8() {
        let command = GuestCommand.shell(["dir", "C:\\Users"], os: .windows)
        #expect(command.path == "cmd.exe" && command.arguments == ["/d", "/s", "/c", "chcp 65001>nul & dir C:\\Users"])
    }
}
