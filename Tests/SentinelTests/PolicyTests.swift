import Sentinel
import SpiritCore
import Testing

@Suite struct PolicyTests {
    static let restartRule = Rule(id: "log-error-burst", signal: .serviceRestart, comparison: .atLeast, threshold: 1, severity: .warning, action: .restart)
    static let largestRule = Rule(id: "memory-pressure-critical", signal: .psiMemoryFullAvg10, comparison: .above, threshold: 5,
                                  severity: .critical, action: .restartLargest)
    let policy = ActionPolicy(policies: [
        "web": ServicePolicy(autoRestart: ["log-error-burst"]),
        "cache": ServicePolicy(pressureKill: true), "big": ServicePolicy(pressureKill: true),
        "sentinel": ServicePolicy(autoRestart: ["log-error-burst"]),
    ])

    @Test func adviseRulesAskNothing() {
        let rule = Rule(id: "oom-kill", signal: .kmsgOOMKill, comparison: .atLeast, threshold: 1, severity: .critical)
        #expect(policy.decide(rule: rule, service: "web", states: [:], now: 0) == .advise)
    }

    @Test func optedInRestarts() {
        #expect(policy.decide(rule: Self.restartRule, service: "web", states: ["web": "running"], now: 0) == .restart("web"))
    }

    @Test func notOptedIn() {
        #expect(policy.decide(rule: Self.restartRule, service: "db", states: [:], now: 0) == .suppressed(service: "db", .notOptedIn))
        let none = ActionPolicy(policies: ["web": ServicePolicy(autoRestart: ["other"])])
        #expect(none.decide(rule: Self.largestRule, service: nil, states: [:], now: 0) == .suppressed(service: nil, .notOptedIn))
        #expect(none.decide(rule: Self.restartRule, service: "web", states: [:], now: 0) == .suppressed(service: "web", .notOptedIn))
    }

    @Test func rateLimited() {
        var limited = policy
        limited.took("web", at: 0)
        #expect(limited.decide(rule: Self.restartRule, service: "web", states: [:], now: 14 * 60_000) == .suppressed(service: "web", .rateLimited))
        #expect(limited.decide(rule: Self.restartRule, service: "web", states: [:], now: 15 * 60_000) == .restart("web"))
        // Three on the whole system within an hour: the fourth waits.
        limited.took("cache", at: 20 * 60_000)
        limited.took("big", at: 30 * 60_000)
        #expect(limited.decide(rule: Self.restartRule, service: "web", states: [:], now: 40 * 60_000) == .suppressed(service: "web", .rateLimited))
        #expect(limited.decide(rule: Self.restartRule, service: "web", states: [:], now: 60 * 60_000) == .restart("web"))
    }

    @Test func supervisorBackoff() {
        #expect(policy.decide(rule: Self.restartRule, service: "web", states: ["web": "backoff"], now: 0) == .suppressed(service: "web", .supervisorBackoff))
    }

    @Test func protectedService() {
        #expect(policy.decide(rule: Self.restartRule, service: "sentinel", states: [:], now: 0) == .suppressed(service: "sentinel", .protectedService))
        #expect(policy.decide(rule: Self.restartRule, service: "web", states: [:], pids: ["web": 1], now: 0) == .suppressed(service: "web", .protectedService))
    }

    /// oomd's choice: the opted-in service using the most memory.
    @Test func restartLargestPicksTheBiggestOptedIn() {
        let memory: [String: UInt64] = ["web": 900_000_000, "cache": 100_000_000, "big": 300_000_000]
        #expect(policy.decide(rule: Self.largestRule, service: nil, states: [:], memory: memory, now: 0) == .restart("big"))
    }

    @Test func templateNamesServiceEvidenceAndDecision() {
        let rule = Rule(id: "oom-kill", signal: .kmsgOOMKill, comparison: .atLeast, threshold: 1, severity: .critical, advice: "Raise memory-max.")
        var incident = Incident(id: 1, rule: "oom-kill", severity: .critical, service: "leaky", condition: rule.condition, pendingAt: 0, firingAt: 0,
                                evidence: ["Memory cgroup out of memory: Killed process 4242 (leaky)"], value: 1, peak: 1)
        incident.decision = .suppressed(service: "leaky", .notOptedIn)
        let text = TemplateExplainer().explain(incident, rule: rule)
        #expect(text == "oom-kill (critical) on service leaky: kmsg.oom-kill at-least 1 within 60 s, value 1. "
            + "Evidence: Memory cgroup out of memory: Killed process 4242 (leaky). Raise memory-max. Decision: suppressed (not-opted-in): restart leaky.")
        incident.explanation = text
        #expect(TemplateExplainer().number(99.94404973357015) == "99.94" && TemplateExplainer().number(12) == "12")
        let json = IncidentJSON.encode(incident)
        let parsed = try? JSONReader.parse(json)
        #expect(parsed?["service"]?.string == "leaky" && parsed?["reason"]?.string == "not-opted-in" && parsed?["resolved_ms"] == JSONValue.null)
    }
}

@Suite struct RuleFileTests {
    @Test func shippedRulesParse() throws {
        let path = String(#filePath.split(separator: "/Tests/").first!) + "/rootfs/sentinel/rules.toml"
        let rules = try RuleFile.parse(try Kernel.readText(path), path: path)
        let ids = Set(rules.map(\.id))
        for id in ["service-failed", "service-flapping", "oom-kill", "memory-pressure", "memory-pressure-critical", "ram-root-full",
                   "squashfs-error", "io-error", "segfault", "hung-task", "thermal"] {
            #expect(ids.contains(id), "\(id)")
        }
        let pressure = try #require(rules.first { $0.id == "memory-pressure" })
        #expect(pressure == Rule(id: "memory-pressure", signal: .psiMemorySomeAvg10, comparison: .above, threshold: 10, forMillis: 30_000,
                                 keepFiringForMillis: 60_000, severity: .warning, advice: pressure.advice))
    }

    @Test func errorsNameFileLineAndField() {
        func error(_ text: String) -> String {
            do {
                _ = try RuleFile.parse(text, path: "/etc/spirit/sentinel/rules.toml")
                return "no error"
            } catch {
                return error.description
            }
        }
        #expect(error("[x]\nsignal = \"psi.memory.sum\"\nabove = 1\nseverity = \"warning\"\n")
            .hasPrefix("/etc/spirit/sentinel/rules.toml:2: x.signal: unknown signal 'psi.memory.sum' (known: "))
        #expect(error("[x]\nsignal = \"kmsg.oom-kill\"\nat-least = 1\nseverity = \"warning\"\nthreshold = 3\n")
            .hasPrefix("/etc/spirit/sentinel/rules.toml:5: x.threshold: unknown field (known: "))
        #expect(error("signal = \"kmsg.oom-kill\"\n") == "/etc/spirit/sentinel/rules.toml:1: signal: outside a rule: every field goes under a [rule-id] table")
        #expect(error("[x]\nsignal = \"kmsg.oom-kill\"\nseverity = \"warning\"\n") == "/etc/spirit/sentinel/rules.toml:1: x.above: missing: a rule needs above = N or at-least = N")
        #expect(error("[x]\nsignal = \"kmsg.oom-kill\"\nat-least = 1\nseverity = \"bad\"\n") == "/etc/spirit/sentinel/rules.toml:4: x.severity: 'bad' is not info, warning or critical")
        #expect(error("[x]\nsignal = \"psi.io.some.avg10\"\nabove = 1\nwithin-seconds = 5\nseverity = \"info\"\n")
            .hasPrefix("/etc/spirit/sentinel/rules.toml:4: x.within-seconds: only event signals"))
        #expect(error("[x]\nsignal = \"kmsg.oom-kill\"\nat-least = 1\nseverity = \"info\"\naction = \"reboot\"\n")
            == "/etc/spirit/sentinel/rules.toml:5: x.action: 'reboot' is not advise, restart, restart-largest")
        #expect(error("[x]\nsignal = \"kmsg.oom-kill\"\nat-least = \"1\"\nseverity = \"info\"\n") == "/etc/spirit/sentinel/rules.toml:3: x.at-least: expected an integer, found a string")
    }
}
