import Sentinel
import SpiritCore
import Testing

/// promtool's model: a synthetic series, fixed evaluation times, which
/// alerts exist at each.
@Suite struct RuleEngineTests {
    static let pressure = Rule(id: "memory-pressure", signal: .psiMemorySomeAvg10, comparison: .above, threshold: 10,
                               forMillis: 30_000, keepFiringForMillis: 60_000, severity: .warning)

    /// PSI memory some avg10 = 12% from t = 0, 0 from t = 60 s, evaluated
    /// every second: pending at 29 s, firing at 31 s, still firing while
    /// keep-firing-for runs (60 s from the first false evaluation), then
    /// resolved; one incident for the whole episode.
    @Test func pendingFiringResolved() {
        var engine = RuleEngine(rules: [Self.pressure])
        var phases: [Int64: String] = [:]
        var fired: [Int64] = []
        var resolved: [Int64] = []
        for second in Int64(0)...200 {
            engine.observe(Observation(signal: .psiMemorySomeAvg10, subject: nil, value: second < 60 ? 12 : 0), at: second * 1000)
            let changes = engine.evaluate(at: second * 1000)
            if !changes.fired.isEmpty { fired.append(second) }
            if !changes.resolved.isEmpty { resolved.append(second) }
            phases[second] = engine.phase(rule: "memory-pressure")?.rawValue ?? "none"
        }
        #expect(phases[0] == "pending" && phases[29] == "pending")
        #expect(phases[30] == "firing" && phases[31] == "firing")
        #expect(phases[60] == "firing" && phases[119] == "firing")
        #expect(phases[120] == "none" && phases[200] == "none")
        #expect(fired == [30] && resolved == [120])
        #expect(engine.incidents.count == 1)
        let incident = engine.incidents[0]
        #expect(incident.pendingAt == 0 && incident.firingAt == 30_000 && incident.resolvedAt == 120_000)
        #expect(incident.value == 12 && incident.rule == "memory-pressure" && incident.service == nil)
    }

    /// True for less than `for`: dropped without an incident.
    @Test func shortSpikeNeverFires() {
        var engine = RuleEngine(rules: [Self.pressure])
        for second in Int64(0)...100 {
            engine.observe(Observation(signal: .psiMemorySomeAvg10, subject: nil, value: second % 20 < 10 ? 50 : 0), at: second * 1000)
            _ = engine.evaluate(at: second * 1000)
        }
        #expect(engine.incidents.isEmpty)
    }

    /// True again during keep-firing-for: the same incident goes on, and
    /// keep-firing-for starts over from the next false evaluation.
    @Test func flappingValueIsOneEpisode() {
        var engine = RuleEngine(rules: [Self.pressure])
        let series: (Int64) -> Double = { $0 < 40 || (70..<75).contains($0) ? 20 : 0 }
        var resolvedAt: Int64?
        for second in Int64(0)...200 {
            engine.observe(Observation(signal: .psiMemorySomeAvg10, subject: nil, value: series(second)), at: second * 1000)
            if !engine.evaluate(at: second * 1000).resolved.isEmpty { resolvedAt = second }
        }
        #expect(engine.incidents.count == 1)
        #expect(resolvedAt == 135)
        #expect(engine.incidents[0].peak == 20)
    }

    /// Events: counted within the window, per service; several in one
    /// episode are one incident with all the lines.
    @Test func eventsPerServiceOneIncidentPerEpisode() {
        let rule = Rule(id: "oom-kill", signal: .kmsgOOMKill, comparison: .atLeast, threshold: 1, windowMillis: 60_000, severity: .critical)
        var engine = RuleEngine(rules: [rule])
        engine.observe(Observation(signal: .kmsgOOMKill, subject: "leaky", evidence: ["kill 1"]), at: 1000)
        #expect(engine.evaluate(at: 1000).fired == [1])
        engine.observe(Observation(signal: .kmsgOOMKill, subject: "leaky", evidence: ["kill 2"]), at: 5000)
        engine.observe(Observation(signal: .kmsgOOMKill, subject: nil, evidence: ["kill 3"]), at: 5000)
        #expect(engine.evaluate(at: 5000).fired == [2])
        #expect(engine.incident(1)?.evidence == ["kill 1", "kill 2"] && engine.incident(1)?.service == "leaky")
        #expect(engine.incident(2)?.service == nil)
        #expect(engine.evaluate(at: 64_999).resolved == [])
        #expect(engine.evaluate(at: 65_000).resolved == [1, 2])
        engine.observe(Observation(signal: .kmsgOOMKill, subject: "leaky", evidence: ["kill 4"]), at: 70_000)
        #expect(engine.evaluate(at: 70_000).fired == [3])
    }

    /// monit's bug class as a test: once `service-flapping` resolves, the
    /// restarts of that episode are spent. One more restart in the window is
    /// one, not a fourth; three new ones are a new episode.
    @Test func restartCountsResetOnResolved() {
        let rule = Rule(id: "service-flapping", signal: .serviceRestart, comparison: .atLeast, threshold: 3, windowMillis: 600_000,
                        keepFiringForMillis: 0, severity: .warning)
        var engine = RuleEngine(rules: [rule])
        for second: Int64 in [10, 20, 30] {
            engine.observe(Observation(signal: .serviceRestart, subject: "web"), at: second * 1000)
        }
        #expect(engine.evaluate(at: 30_000).fired == [1])
        // The window (600 s) still holds the three restarts; the rule stays
        // firing until they age out, then resolves.
        #expect(engine.evaluate(at: 600_000).resolved == [])
        #expect(engine.evaluate(at: 610_000).resolved == [1])
        engine.observe(Observation(signal: .serviceRestart, subject: "web"), at: 611_000)
        #expect(engine.evaluate(at: 611_000).fired == [])
        #expect(engine.phase(rule: "service-flapping", subject: "web") == nil)
        engine.observe(Observation(signal: .serviceRestart, subject: "web"), at: 612_000)
        engine.observe(Observation(signal: .serviceRestart, subject: "web"), at: 613_000)
        #expect(engine.evaluate(at: 613_000).fired == [2])
    }

    /// Resolved by keep-firing-for while events are still in the window: the
    /// reset forgets them, so the rule does not fire again on the same events.
    @Test func resolvedEpisodeDoesNotRefireOnItsOwnEvents() {
        let rule = Rule(id: "io-error", signal: .kmsgIOError, comparison: .atLeast, threshold: 1, windowMillis: 60_000, severity: .warning)
        var engine = RuleEngine(rules: [rule])
        engine.observe(Observation(signal: .kmsgIOError, subject: nil, evidence: ["I/O error, dev sda, sector 1"]), at: 0)
        #expect(engine.evaluate(at: 0).fired == [1])
        #expect(engine.evaluate(at: 60_000).resolved == [1])
        #expect(engine.evaluate(at: 61_000).fired == [])
        #expect(engine.incidents.count == 1)
    }
}

@Suite struct SupervisorWatchTests {
    func summary(_ name: String, _ state: String, restarts: Int, why: String? = nil) -> ServiceSummary {
        ServiceSummary(name: name, state: state, restarts: restarts, why: why)
    }

    /// The first poll is a baseline; rises are events; a fall (a new
    /// supervisor) is a new baseline; `failed` is a gauge, not restarts.
    @Test func restartDeltas() {
        var watch = SupervisorWatch()
        let first = watch.update([summary("web", "running", restarts: 5)])
        #expect(first.filter { $0.signal == .serviceRestart }.isEmpty)
        #expect(watch.update([summary("web", "running", restarts: 7)]).filter { $0.signal == .serviceRestart }.count == 2)
        #expect(watch.update([summary("web", "running", restarts: 0)]).filter { $0.signal == .serviceRestart }.isEmpty)
        #expect(watch.update([summary("web", "running", restarts: 1)]).filter { $0.signal == .serviceRestart }.count == 1)
        let failed = watch.update([summary("web", "failed", restarts: 4, why: "crash loop: 3 restarts within 10 s")])
        #expect(failed.filter { $0.signal == .serviceRestart }.isEmpty)
        #expect(failed.first { $0.signal == .serviceFailed }?.value == 1)
        #expect(failed.first { $0.signal == .serviceFailed }?.evidence == ["supervisor: web failed: crash loop: 3 restarts within 10 s"])
        #expect(watch.states["web"] == "failed")
        #expect(watch.update([]).first { $0.signal == .serviceFailed } == Observation(signal: .serviceFailed, subject: "web", value: 0))
    }

    @Test func segfaultExitsAreEvents() {
        var watch = SupervisorWatch()
        _ = watch.update([summary("crashy", "running", restarts: 0)])
        let crashed = watch.update([summary("crashy", "backoff", restarts: 1, why: "last was killed by SIGSEGV (Segmentation fault)")])
        #expect(crashed.contains { $0.signal == .kmsgSegfault && $0.subject == "crashy" })
        #expect(!watch.update([summary("crashy", "backoff", restarts: 1, why: "last was killed by SIGSEGV (Segmentation fault)")])
            .contains { $0.signal == .kmsgSegfault })
    }
}
