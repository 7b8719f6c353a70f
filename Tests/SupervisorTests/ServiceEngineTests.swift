import CSpirit
import SpiritCore
import Supervisor
import Testing

/// Plays the kernel: records starts and signals, hands out pids.
final class FakeSpawner: ServiceSpawner {
    var nextPid: Int32 = 100
    var started: [(name: String, pid: Int32, at: Int64)] = []
    var signals: [(pid: Int32, signal: CInt)] = []
    var failing: Set<String> = []
    let clock: FakeClock

    init(clock: FakeClock) { self.clock = clock }

    var probes: [(name: String, pid: Int32, at: Int64)] = []

    func probe(_ service: ServiceDefinition) throws -> Int32 {
        nextPid += 1
        probes.append((service.name, nextPid, clock.nowMicros))
        return nextPid
    }

    func start(_ service: ServiceDefinition) throws -> Int32 {
        if failing.contains(service.name) { throw SpiritError("unable to start \(service.command[0]): No such file or directory") }
        nextPid += 1
        started.append((service.name, nextPid, clock.nowMicros))
        return nextPid
    }

    func signal(_ pid: Int32, _ signal: CInt, service: ServiceDefinition) {
        signals.append((pid, signal))
    }

    var ended: [String] = []
    func ended(_ service: ServiceDefinition) { ended.append(service.name) }

    func pid(of name: String) -> Int32? { started.last { $0.name == name }?.pid }
    func starts(of name: String) -> [Int64] { started.filter { $0.name == name }.map(\.at) }
}

final class FakeClock: SupervisorClock {
    var nowMicros: Int64 = 0
    func advance(ms: Int64) { nowMicros += ms * 1000 }
}

func service(_ name: String, after: [String] = [], requires: [String] = [], readiness: ServiceDefinition.Readiness = .started,
             configure: (inout ServiceDefinition) -> Void = { _ in }) -> ServiceDefinition {
    var definition = ServiceDefinition(name: name, command: ["/bin/\(name)"])
    definition.after = after
    definition.requires = requires
    definition.readiness = readiness
    configure(&definition)
    return definition
}

struct Rig {
    let clock = FakeClock()
    let spawner: FakeSpawner
    let engine: ServiceEngine

    init(_ services: [ServiceDefinition]) {
        spawner = FakeSpawner(clock: clock)
        engine = ServiceEngine(services: services, spawner: spawner, clock: clock)
    }

    func state(_ name: String) -> ServiceState { engine.services[engine.index(of: name)!].state }
    func status(_ name: String) -> ServiceStatus { engine.services[engine.index(of: name)!] }

    /// Runs the clock forward in steps of `ms`, ticking like the real loop.
    func run(ms total: Int64, step: Int64 = 10) {
        var passed: Int64 = 0
        while passed < total {
            clock.advance(ms: step)
            passed += step
            engine.tick()
        }
    }
}

@Suite struct ServiceEngineTests {
    @Test func startsInDependencyOrderAndIndependentOnesTogether() {
        let rig = Rig([
            service("web", after: ["db", "cache"]),
            service("db", readiness: .notify),
            service("cache", readiness: .notify),
        ])
        rig.engine.startEnabled()
        // db and cache have no dependency: both start at once, web waits.
        #expect(rig.spawner.started.map(\.name) == ["cache", "db"])
        #expect(rig.state("web") == .waiting)
        rig.clock.advance(ms: 50)
        rig.engine.notified("db", message: "READY=1")
        #expect(rig.state("db") == .running)
        #expect(rig.state("web") == .waiting, "cache is not ready yet")
        rig.clock.advance(ms: 50)
        rig.engine.notified("cache", message: "STATUS=warming up\nREADY=1\n")
        #expect(rig.spawner.started.map(\.name) == ["cache", "db", "web"])
        #expect(rig.spawner.started[2].at == 100_000)
        let notices = rig.engine.takeNotices()
        #expect(notices.contains(.ready("db", startedAt: 0, at: 50_000)))
        #expect(notices.last == .allReady)
    }

    @Test func readyOnlyWithReadyOneAndTimeoutSettles() {
        let rig = Rig([service("slow", readiness: .notify) { $0.readyTimeoutMicros = 1_000_000 }])
        rig.engine.startEnabled()
        rig.engine.notified("slow", message: "STATUS=loading")
        #expect(rig.state("slow") == .starting)
        #expect(!rig.engine.takeNotices().contains(.allReady))
        rig.run(ms: 1000)
        let notices = rig.engine.takeNotices()
        #expect(notices == [.readyTimeout("slow"), .allReady])
        #expect(rig.state("slow") == .starting && rig.status("slow").pid != nil)
    }

    @Test func anExecProbeRunsEveryIntervalUntilItSucceeds() {
        let rig = Rig([service("ai", readiness: .exec) { $0.readyCommand = ["/bin/probe"]; $0.readyIntervalMicros = 200_000 },
                       service("ask", after: ["ai"])])
        rig.engine.startEnabled()
        #expect(rig.state("ai") == .starting && rig.spawner.probes.isEmpty)
        rig.run(ms: 200)
        #expect(rig.spawner.probes.count == 1, "the first probe after one interval")
        rig.run(ms: 1000)
        #expect(rig.spawner.probes.count == 1, "never two at once")
        rig.engine.childExited(pid: rig.spawner.probes[0].pid, status: .exited(7))
        #expect(rig.state("ai") == .starting)
        rig.run(ms: 190)
        #expect(rig.spawner.probes.count == 1)
        rig.run(ms: 20)
        #expect(rig.spawner.probes.count == 2, "again after the interval")
        #expect(rig.spawner.pid(of: "ask") == nil, "what comes after waits")
        rig.engine.childExited(pid: rig.spawner.probes[1].pid, status: .exited(0))
        #expect(rig.state("ai") == .running && rig.status("ai").ready)
        #expect(rig.spawner.pid(of: "ask") != nil)
        rig.run(ms: 1000)
        #expect(rig.spawner.probes.count == 2, "no probe once ready")
    }

    /// Whatever way the main process ends, the spawner is told, so that
    /// what it left in its cgroup goes with it.
    @Test func theSpawnerHearsEveryEndOfAMainProcess() {
        let rig = Rig([service("web"), service("db") { $0.restart = .never }])
        rig.engine.startEnabled()
        rig.engine.childExited(pid: rig.spawner.pid(of: "db")!, status: .exited(0))
        try? rig.engine.stop("web")
        rig.engine.childExited(pid: rig.spawner.pid(of: "web")!, status: .signaled(SIGTERM))
        #expect(rig.spawner.ended == ["db", "web"])
        rig.engine.childExited(pid: 9999, status: .exited(0))
        #expect(rig.spawner.ended == ["db", "web"], "a pid of no service is nobody's end")
    }

    @Test func aServiceThatEndsWhileProbedIsNotMadeReadyByALateProbe() {
        let rig = Rig([service("ai", readiness: .exec) { $0.readyCommand = ["/bin/probe"]; $0.restart = .never }])
        rig.engine.startEnabled()
        rig.run(ms: 600)
        let probe = rig.spawner.probes[0].pid
        rig.engine.childExited(pid: rig.spawner.pid(of: "ai")!, status: .exited(1))
        rig.engine.childExited(pid: probe, status: .exited(0))
        #expect(rig.state("ai") != .running && !rig.status("ai").ready)
        rig.run(ms: 2000)
        #expect(rig.spawner.probes.count == 1)
    }

    @Test func aServiceWithNothingToDoHereIsSettledAndNotRestarted() {
        let rig = Rig([service("hud", readiness: .notify) { $0.notApplicableExit = 64 }])
        rig.engine.startEnabled()
        rig.clock.advance(ms: 30)
        rig.engine.childExited(pid: rig.spawner.pid(of: "hud")!, status: .exited(64))
        let notices = rig.engine.takeNotices()
        #expect(notices.contains(.notApplicable("hud", status: 64)))
        #expect(notices.last == .allReady)
        rig.run(ms: 60_000)
        #expect(rig.spawner.starts(of: "hud").count == 1)
        #expect(rig.state("hud") == .exited && rig.status("hud").detail == "not applicable here")
        // Another status is a crash like any other: restarted.
        let crash = Rig([service("hud") { $0.notApplicableExit = 64 }])
        crash.engine.startEnabled()
        crash.engine.childExited(pid: crash.spawner.pid(of: "hud")!, status: .exited(1))
        crash.run(ms: 1000)
        #expect(crash.spawner.starts(of: "hud").count == 2)
    }

    @Test func backoffGrowsByItsFactorUpToTheCap() {
        let rig = Rig([service("crashy") {
            $0.backoffInitialMicros = 100_000
            $0.backoffCapMicros = 1_000_000
            $0.crashLoopRestarts = 100
        }])
        rig.engine.startEnabled()
        var gaps: [Int64] = []
        for _ in 0..<6 {
            let pid = rig.spawner.pid(of: "crashy")!
            let exitedAt = rig.clock.nowMicros
            rig.engine.childExited(pid: pid, status: .exited(3))
            #expect(rig.state("crashy") == .backoff)
            while rig.spawner.pid(of: "crashy") == pid { rig.run(ms: 10) }
            gaps.append((rig.spawner.starts(of: "crashy").last! - exitedAt) / 1000)
        }
        #expect(gaps == [100, 200, 400, 800, 1000, 1000])
        #expect(rig.status("crashy").restarts == 6)
    }

    @Test func crashLoopFailsUntilStartedAgain() {
        let rig = Rig([service("crashy") {
            $0.backoffInitialMicros = 100_000
            $0.backoffCapMicros = 100_000
            $0.crashLoopRestarts = 3
            $0.crashLoopWindowMicros = 10_000_000
        }])
        rig.engine.startEnabled()
        for _ in 0..<3 {
            rig.engine.childExited(pid: rig.spawner.pid(of: "crashy")!, status: .exited(3))
            rig.run(ms: 100)
        }
        #expect(rig.spawner.started.count == 4)
        rig.engine.childExited(pid: rig.spawner.pid(of: "crashy")!, status: .exited(3))
        #expect(rig.state("crashy") == .failed)
        #expect(rig.status("crashy").detail == "crash loop: 3 restarts within 10 s, last exited with status 3")
        rig.run(ms: 5000)
        #expect(rig.spawner.started.count == 4, "a failed service stays failed")
        #expect(rig.engine.takeNotices().contains(.failed("crashy", reason: "crash loop: 3 restarts within 10 s, last exited with status 3")))
        try? rig.engine.start("crashy")
        #expect(rig.spawner.started.count == 5)
        #expect(rig.state("crashy") == .running)
    }

    @Test func restartsSpreadOverMoreThanTheWindowAreNoLoop() {
        let rig = Rig([service("flaky") {
            $0.backoffInitialMicros = 100_000
            $0.backoffCapMicros = 100_000
            $0.crashLoopRestarts = 2
            $0.crashLoopWindowMicros = 1_000_000
        }])
        rig.engine.startEnabled()
        for _ in 0..<5 {
            rig.run(ms: 2000)
            rig.engine.childExited(pid: rig.spawner.pid(of: "flaky")!, status: .signaled(SIGSEGV))
            rig.run(ms: 100)
        }
        #expect(rig.state("flaky") == .running)
        #expect(rig.status("flaky").restarts == 5)
    }

    @Test func restartPolicies() {
        let rig = Rig([
            service("once") { $0.restart = .never },
            service("job") { $0.restart = .onFailure },
            service("retry") { $0.restart = .onFailure },
        ])
        rig.engine.startEnabled()
        rig.engine.childExited(pid: rig.spawner.pid(of: "once")!, status: .exited(1))
        rig.engine.childExited(pid: rig.spawner.pid(of: "job")!, status: .exited(0))
        rig.engine.childExited(pid: rig.spawner.pid(of: "retry")!, status: .exited(2))
        #expect(rig.state("once") == .exited)
        #expect(rig.state("job") == .exited)
        #expect(rig.state("retry") == .backoff)
    }

    @Test func stopTimeoutEscalatesToSIGKILL() {
        let rig = Rig([service("stubborn") {
            $0.stopSignal = SIGINT
            $0.stopTimeoutMicros = 2_000_000
        }])
        rig.engine.startEnabled()
        let pid = rig.spawner.pid(of: "stubborn")!
        _ = rig.engine.takeNotices()
        try? rig.engine.stop("stubborn")
        #expect(rig.spawner.signals.map(\.signal) == [SIGINT])
        rig.run(ms: 1990)
        #expect(rig.spawner.signals.map(\.signal) == [SIGINT], "not before the timeout")
        rig.run(ms: 10)
        #expect(rig.spawner.signals.map(\.signal) == [SIGINT, SIGKILL])
        #expect(rig.spawner.signals.allSatisfy { $0.pid == pid })
        rig.clock.advance(ms: 5)
        rig.engine.childExited(pid: pid, status: .signaled(SIGKILL))
        #expect(rig.state("stubborn") == .stopped)
        #expect(rig.engine.takeNotices() == [.stopping("stubborn", signal: SIGINT), .killed("stubborn", afterMicros: 2_000_000),
                                             .stopped("stubborn", tookMicros: 2_005_000, killed: true)])
        rig.run(ms: 1000)
        #expect(rig.spawner.started.count == 1, "a stopped service is not restarted")
    }

    @Test func aStopWithAReasonKeepsItUntilStartedAgain() {
        let rig = Rig([service("nexus")])
        rig.engine.startEnabled()
        let pid = rig.spawner.pid(of: "nexus")!
        try? rig.engine.stop("nexus", reason: "gpu 0000:00:02.0 passed through")
        rig.engine.childExited(pid: pid, status: .signaled(SIGTERM))
        #expect(rig.state("nexus") == .stopped)
        #expect(rig.engine.services[0].detail == "gpu 0000:00:02.0 passed through")
        try? rig.engine.start("nexus")
        #expect(rig.engine.services[0].detail == nil)
    }

    @Test func shutdownStopsDependentsFirst() {
        let rig = Rig([service("db"), service("web", requires: ["db"]), service("api", after: ["web"])])
        rig.engine.startEnabled()
        let pids = ["db", "web", "api"].map { rig.spawner.pid(of: $0)! }
        rig.engine.stopAll()
        // Only api (nothing depends on it) gets its signal first.
        #expect(rig.spawner.signals.map(\.pid) == [pids[2]])
        rig.engine.childExited(pid: pids[2], status: .signaled(SIGTERM))
        #expect(rig.spawner.signals.map(\.pid) == [pids[2], pids[1]])
        rig.engine.childExited(pid: pids[1], status: .signaled(SIGTERM))
        #expect(rig.spawner.signals.map(\.pid) == [pids[2], pids[1], pids[0]])
        rig.engine.childExited(pid: pids[0], status: .exited(0))
        let notices = rig.engine.takeNotices()
        #expect(notices.compactMap { if case .stopped(let name, _, _) = $0 { name } else { nil } } == ["api", "web", "db"])
        #expect(notices.last == .allStopped)
    }

    @Test func aFailedRequirementFailsItsDependent() {
        let rig = Rig([service("db") { $0.restart = .never }, service("web", requires: ["db"], readiness: .notify),
                       service("lonely", requires: ["ghost"])])
        rig.spawner.failing = ["db"]
        rig.engine.startEnabled()
        #expect(rig.state("db") == .failed)
        #expect(rig.state("web") == .failed)
        #expect(rig.status("web").detail == "requires db, which is failed")
        #expect(rig.status("lonely").detail == "requires ghost, which has no service file")
        #expect(rig.engine.takeNotices().last == .allReady)
    }

    @Test func restartStopsThenStartsAgain() throws {
        let rig = Rig([service("nodus")])
        rig.engine.startEnabled()
        let first = rig.spawner.pid(of: "nodus")!
        try rig.engine.restart("nodus")
        #expect(rig.state("nodus") == .stopping)
        rig.engine.childExited(pid: first, status: .signaled(SIGTERM))
        #expect(rig.state("nodus") == .running)
        #expect(rig.spawner.pid(of: "nodus") != first)
        #expect(throws: ServiceEngine.CommandError.unknownService("nope")) { try rig.engine.stop("nope") }
    }
}
