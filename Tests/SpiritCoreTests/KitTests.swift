import Glibc
import SpiritCore
import Synchronization
import Testing

/// The daemon kit: the event loop and the control channel, on real
/// descriptors (pipes and a Unix socket in /tmp; no root needed).
@Suite struct EventLoopTests {
    @Test func aReadableDescriptorRunsItsHandlerAndATimeoutRunsNone() throws {
        let pipe = try Kernel.outputPipe()
        defer { Kernel.close(pipe.read); Kernel.close(pipe.write) }
        let loop = EventLoop()
        var calls: [CInt] = []
        loop.watch(pipe.read) { calls.append($0) }
        try loop.runOnce(milliseconds: 10)
        #expect(calls.isEmpty)
        try Kernel.write(pipe.write, "x", "the test pipe")
        try loop.runOnce(milliseconds: 1000)
        #expect(calls == [pipe.read])
    }

    @Test func anUnwatchedDescriptorIsNotCalledEvenWhenReadyInTheSameRound() throws {
        let first = try Kernel.outputPipe()
        let second = try Kernel.outputPipe()
        defer { [first.read, first.write, second.read, second.write].forEach(Kernel.close) }
        let loop = EventLoop()
        var calls: [String] = []
        // unowned: the loop holds the handler, so a strong capture is a
        // cycle that outlives the test (LeakSanitizer found it).
        loop.watch(first.read) { [unowned loop] _ in
            calls.append("first")
            loop.unwatch(second.read)
        }
        loop.watch(second.read) { _ in calls.append("second") }
        try Kernel.write(first.write, "x", "pipe 1")
        try Kernel.write(second.write, "y", "pipe 2")
        try loop.runOnce(milliseconds: 1000)
        #expect(calls == ["first"])
        #expect(!loop.isWatching(second.read))
    }
}

@Suite struct ControlChannelTests {
    @Test(arguments: [
        ("ok", ControlChannel.Head.ok),
        ("error 100 unknown service 'x'", .error(code: 100, message: "unknown service 'x'")),
        ("error 111 permission denied: root only", .error(code: 111, message: "permission denied: root only")),
        ("hello", .error(code: 111, message: "the supervisor answered 'hello'")),
        ("error x y", .error(code: 111, message: "the supervisor answered 'error x y'")),
    ])
    func heads(_ line: String, _ head: ControlChannel.Head) {
        #expect(ControlChannel.Head(line: line, server: "supervisor") == head)
    }

    @Test func framing() {
        #expect(ControlChannel.ok("") == "ok\n")
        #expect(ControlChannel.ok("a\nb") == "ok\na\nb\n")
        #expect(ControlChannel.error(code: 100, "bad") == "error 100 bad\n")
    }

    /// A control socket in /tmp whose thread answers each connection, in
    /// turn, with the next of `answers`; `heard` keeps each request and
    /// the client's uid. `close` ends it.
    final class ScriptedServer: @unchecked Sendable {
        let path: String
        let listener: Socket
        let heard = Mutex<[(request: String?, uid: Int)]>([])

        init(_ name: String, answers: [String]) throws {
            path = "/tmp/spirit-control-\(name)-\(Kernel.pid).sock"
            listener = try Socket.listenUnix(path)
            try Threads.start { [self] in
                for answer in answers {
                    // The listener is non-blocking: wait for the client first.
                    guard (try? listener.waitReadable(milliseconds: 5000)) == true,
                          let (connection, request, uid) = ControlChannel.accept(on: listener) else { return }
                    heard.withLock { $0.append((request, uid)) }
                    try? Kernel.write(connection.fd, answer, socket: true, "the test client")
                    connection.close()
                }
            }
        }

        func close() {
            listener.close()
            Kernel.remove(path)
        }
    }

    @Test func aClientAndAServerSpeakIt() throws {
        let server = try ScriptedServer("test", answers: [ControlChannel.ok("line 1\nline 2")])
        defer { server.close() }
        var body: [UInt8] = []
        let head = ControlChannel.send("status json", to: server.path) { chunk in
            body += chunk
            return true
        }
        #expect(head == .ok)
        #expect(String(decoding: body, as: UTF8.self) == "line 1\nline 2\n")
        #expect(server.heard.withLock { $0.first?.request } == "status json")
        #expect(server.heard.withLock { $0.first?.uid } == Int(getuid()))
    }

    /// `status json` asked and parsed in one place: the services, a
    /// refusal with its code, or an answer that does not parse.
    @Test func theSupervisorsServicesAreQueriedInOnePlace() throws {
        let server = try ScriptedServer("status", answers: [
            ControlChannel.ok(#"{"now_ms":5,"services":[{"name":"modules","state":"running","ready":true}]}"#),
            ControlChannel.error(code: 100, "unknown request"), ControlChannel.ok("not json"),
        ])
        defer { server.close() }
        let path = server.path
        #expect(try ServiceSummary.query(socket: path, idleMilliseconds: 5000) == [ServiceSummary(name: "modules", state: "running", ready: true)])
        #expect(throws: ServiceSummary.Unread.refused(code: 100, message: "unknown request")) { try ServiceSummary.query(socket: path, idleMilliseconds: 5000) }
        #expect(ServiceSummary.Unread.refused(code: 100, message: "unknown request").sample(source: "supervisor")
            == SampleError("supervisor", "unknown request"))
        #expect { try ServiceSummary.query(socket: path, idleMilliseconds: 5000) } throws: { error in
            if case ServiceSummary.Unread.broken(let why) = error { why.source == "spiritctl status --json" } else { false }
        }
        Kernel.remove(path)
        #expect { try ServiceSummary.query(socket: path, idleMilliseconds: 5000) } throws: { error in
            if case ServiceSummary.Unread.refused(let code, _) = error { code == 111 } else { false }
        }
    }

    @Test func noServerIsAnErrorThatSaysSo() {
        let head = ControlChannel.send("status", to: "/tmp/spirit-no-such-socket", server: "supervisor") { _ in true }
        guard case .error(let code, let message) = head else {
            Issue.record("expected an error")
            return
        }
        #expect(code == 111)
        #expect(message.contains("is the supervisor running?"))
    }
}

@Suite struct DeviceActivityTests {
    @Test func nothingIsSettledBeforeColdplugIsDone() {
        let activity = DeviceActivity(quietMicros: 1_200_000, now: 1_000_000)
        // However quiet: the boot's first loads are not reported one by one.
        #expect(activity.settlesAt() == nil)
        #expect(!activity.isSettled(now: 9_000_000))
        activity.loadStarted(now: 2_100_000)
        #expect(activity.settlesAt() == nil)
        activity.loadEnded(now: 2_300_000)
        // Coldplug's fixed point without a USB stick: settled at once.
        activity.coldplugDone(usbStorage: false)
        #expect(activity.isSettled(now: 2_300_001))
        // A load still running keeps it unsettled.
        activity.loadStarted(now: 2_400_000)
        #expect(!activity.isSettled(now: 9_000_000))
    }

    @Test func withoutUeventsTheDevicesAreAsSettledAsTheyWillGet() {
        let activity = DeviceActivity(quietMicros: 1_200_000, now: 1_000_000, listening: false)
        #expect(activity.isSettled(now: 1_000_001))
    }

    @Test func aStopConditionEndsTheWaitForSettling() {
        final class Flag: @unchecked Sendable {
            let monitor = Monitor()
            var raised = false
        }
        let activity = DeviceActivity(quietMicros: 1_200_000)
        let flag = Flag()
        let began = Kernel.bootTimeMicros()
        Threads.detach {
            usleep(50_000)
            flag.monitor.withLock { flag.raised = true }
            activity.wakeAll()
        }
        // Coldplug never finishes here: only the stop condition ends the wait.
        let settled = activity.waitUntilSettled(deadline: began + 20_000_000, stopping: { flag.monitor.withLock { flag.raised } })
        #expect(!settled)
        #expect(Kernel.bootTimeMicros() - began < 10_000_000)
    }

    @Test func aUSBStickKeepsTheQuietWindowForItsDelayedScan() {
        let activity = DeviceActivity(quietMicros: 1_200_000, now: 1_000_000)
        activity.coldplugDone(usbStorage: true)
        activity.noteEvent(now: 3_000_000)
        #expect(!activity.isSettled(now: 3_500_000))
        #expect(activity.isSettled(now: 4_200_000))
    }
}
