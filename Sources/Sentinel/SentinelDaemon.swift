import Glibc
import Net
import SpiritCore

/// `spirit sentinel`: the Sentinel's I/O shell. One thread: the kernel log
/// and the supervisor's `events follow` stream (its status, sent each time
/// a service changes state) are evaluated as they come (an OOM kill or a
/// crash loop is an incident in milliseconds); every second the other
/// collectors are read and the rules evaluated. A supervisor that does not
/// stream (an older one, or none yet) is polled with `status json` each
/// second, and asked to stream again. Fired and
/// resolved incidents go to /run/log/sentinel.jsonl; `spiritctl sentinel`
/// asks through /run/spirit/sentinel.sock.
public final class SentinelDaemon {
    let paths: SentinelPaths
    let console: Console
    /// Each restart it asks for goes into the journal (/run/log/journal.jsonl).
    var journal: JournalFile { JournalFile(directory: paths.serviceLogs, process: "sentinel") }
    let explainer: any Explainer
    var engine: RuleEngine
    var policy: ActionPolicy
    var collectors: Collectors
    var watch = SupervisorWatch()
    var joiner = KernelEventJoiner()
    /// The `events follow` connection, and the bytes of a line not yet whole.
    var follower: Socket?
    var followed: [UInt8] = []
    var followerAnswered = false
    let events = EventLoop()
    public static let tickMillis: Int64 = 1000

    init(paths: SentinelPaths, console: Console, rules: [Rule], policies: [String: ServicePolicy], explainer: any Explainer) {
        self.paths = paths
        self.console = console
        self.explainer = explainer
        engine = RuleEngine(rules: rules)
        policy = ActionPolicy(policies: policies)
        collectors = Collectors(paths: paths, console: console)
    }

    static func now() -> Int64 { Kernel.bootTimeMicros() / 1000 }

    /// Runs the daemon; returns its exit status (111: it could not start).
    /// `metrics`: where /metrics is served (Prometheus' text; nil: not served).
    public static func run(paths: SentinelPaths, console: Console, explainer: any Explainer = TemplateExplainer(),
                           metrics: String? = nil) -> Int32 {
        let rules: [Rule]
        do {
            rules = try RuleFile.parse(try Kernel.readText(paths.rules), path: paths.rules)
        } catch {
            console.error("sentinel: unable to read the rules: \(error)")
            return 111
        }
        let daemon = SentinelDaemon(paths: paths, console: console, rules: rules, policies: policies(paths), explainer: explainer)
        let signals: SignalQueue
        let control: Socket
        do {
            try SignalQueue.blockAll()
            signals = try SignalQueue()
            try Kernel.makeDirectory(paths.root + "/run/spirit", parents: true)
            try Kernel.makeDirectory(paths.root + "/run/log", parents: true)
            Kernel.remove(paths.control)
            control = try Socket.listenUnix(paths.control)
        } catch {
            console.error("sentinel: \(error)")
            return 111
        }
        var metricsListener: Socket?
        if let metrics {
            do {
                metricsListener = try Socket.listenTCP(try SocketAddress.parse(metrics, defaultPort: 9100))
            } catch {
                console.warning("sentinel: \(error): /metrics is not served")
            }
        }
        let kernelLog: KernelLogReader?
        do {
            kernelLog = try KernelLogReader(path: paths.kmsg)
        } catch {
            console.warning("sentinel: \(error): kernel events are not watched")
            kernelLog = nil
        }
        let events = daemon.events
        var running = true
        events.watch(signals.fd) { _ in
            guard let (signal, _) = try? signals.next() else { return }
            if [SIGTERM, SIGINT].contains(signal) { running = false }
            if signal == SIGHUP { daemon.policy.policies = policies(paths) }
        }
        events.watch(control.fd) { _ in
            guard let (connection, request, _) = ControlChannel.accept(on: control) else { return }
            _ = try? Kernel.write(connection.fd, daemon.answer(request ?? ""), socket: true, "a sentinel control connection")
            connection.close()
        }
        if let metricsListener {
            events.watch(metricsListener.fd) { _ in
                guard let (connection, _) = try? metricsListener.accept() else { return }
                do {
                    try Threads.start { serveMetrics(connection, paths: paths) }
                } catch {
                    connection.close()
                }
            }
        }
        if let kernelLog, kernelLog.device {
            events.watch(kernelLog.fd) { _ in daemon.kernel(kernelLog.read(), at: now()) }
        }
        console.notice("sentinel: watching with \(rules.count) rules" + (kernelLog == nil ? " (no kernel log)" : ""))
        daemon.tick(kernelLog: kernelLog, at: now())
        ServiceNotify.ready()
        var next = now() + tickMillis
        while running {
            do {
                try events.runOnce(milliseconds: Int(max(0, next - now())))
            } catch {
                console.error("sentinel: \(error)")
                return 111
            }
            if now() >= next {
                daemon.tick(kernelLog: kernelLog, at: now())
                next = now() + tickMillis
            }
        }
        Kernel.remove(paths.control)
        return 0
    }

    /// Each service file's `[sentinel]` table (a file the supervisor
    /// refuses gives nothing: it says why in its own log).
    static func policies(_ paths: SentinelPaths) -> [String: ServicePolicy] {
        var out: [String: ServicePolicy] = [:]
        for file in Kernel.listDirectory(paths.services) where file.hasSuffix(".toml") {
            let path = paths.services + "/" + file
            if let text = try? Kernel.readText(path), let config = try? ConfigFile.parse(text, path: path),
               let policy = try? ServicePolicy(file: config), policy != ServicePolicy() {
                out[String(file.dropLast(5))] = policy
            }
        }
        return out
    }

    /// Kernel messages: joined, observed, evaluated at once.
    func kernel(_ messages: [String], at time: Int64) {
        var any = false
        let services = Dictionary(watch.pids.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })
        for message in messages {
            if let observation = joiner.add(message, services: services) {
                engine.observe(observation, at: time)
                any = true
            }
        }
        if any { evaluate(at: time) }
    }

    func tick(kernelLog: KernelLogReader?, at time: Int64) {
        if let kernelLog, !kernelLog.device { kernel(kernelLog.read(), at: time) }
        var observations = collectors.pressure() + collectors.cgroups() + collectors.rootFill() + collectors.thermal()
            + collectors.zram() + collectors.serviceLogs()
        if follower == nil { follow() }
        if !followerAnswered, let services = collectors.services() { observations += watch.update(services) }
        for observation in observations { engine.observe(observation, at: time) }
        evaluate(at: time)
    }

    /// Asks the supervisor for `events follow json`; its lines come to `readFollower`.
    func follow() {
        guard let connection = try? Socket.connectUnix(paths.supervisorControl) else { return }
        guard (try? connection.write(Array("events follow json\n".utf8))) != nil else {
            connection.close()
            return
        }
        follower = connection
        followed = []
        followerAnswered = false
        events.watch(connection.fd) { [unowned self] _ in readFollower() }
    }

    func readFollower() {
        guard let connection = follower else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var ended = false
        while true {
            let count: Int?
            do {
                count = try buffer.withMutableBytes { raw throws(SystemError) in try connection.readIfReady(into: raw) }
            } catch {
                ended = true
                break
            }
            guard let count else { break }
            if count == 0 {
                ended = true
                break
            }
            followed += buffer[0..<count]
        }
        let time = Self.now()
        var changed = false
        while let newline = followed.firstIndex(of: 0x0A) {
            let line = String(decoding: followed[..<newline], as: UTF8.self)
            followed.removeSubrange(...newline)
            if !followerAnswered {
                // `ok`, or an error from a supervisor that has no `events`: poll it.
                guard line == "ok" else {
                    collectors.warnOnce(SampleError("supervisor", "no events stream (\(line)): polling its status each second"))
                    ended = true
                    break
                }
                followerAnswered = true
                continue
            }
            guard let services = try? ServiceSummary.parse(line) else { continue }
            for observation in watch.update(services) { engine.observe(observation, at: time) }
            changed = true
        }
        if changed { evaluate(at: time) }
        if ended {
            events.unwatch(connection.fd)
            connection.close()
            follower = nil
            followerAnswered = false
        }
    }

    func evaluate(at time: Int64) {
        let changes = engine.evaluate(at: time)
        for id in changes.fired {
            guard let incident = engine.incident(id), let rule = engine.rules.first(where: { $0.id == incident.rule }) else { continue }
            let decision = policy.decide(rule: rule, service: incident.service, states: watch.states, memory: collectors.memory,
                                         pids: watch.pids, now: time)
            var decided = incident
            decided.decision = decision
            engine.record(id, decision: decision, explanation: explainer.explain(decided, rule: rule))
            if case .restart(let service) = decision { restart(service, at: time, incident: id, rule: "\(incident.rule)") }
            report(id)
        }
        for id in changes.resolved { report(id) }
    }

    func restart(_ service: String, at time: Int64, incident: Int, rule: String) {
        policy.took(service, at: time)
        let head = ControlChannel.send("restart \(service)", to: paths.supervisorControl, server: "supervisor") { _ in true }
        var result = "asked the supervisor"
        if case .error(_, let message) = head {
            console.warning("sentinel: unable to restart \(service): \(message)")
            result = "unable: \(message)"
        }
        // The Sentinel's sandbox leaves /run/log writable for this.
        if let problem = journal.append("sentinel.restart", [("service", service), ("rule", rule), ("incident", "\(incident)"),
                                                             ("result", result)]) {
            collectors.warnOnce(problem)
        }
    }

    /// One line to the log and the console.
    func report(_ id: Int) {
        guard let incident = engine.incident(id) else { return }
        do {
            try Kernel.writeFile(paths.log, IncidentJSON.encode(incident) + "\n", append: true)
        } catch {
            collectors.warnOnce(error)
        }
        let text = incident.resolvedAt == nil ? incident.explanation : "\(incident.rule) on \(incident.service ?? "the system") resolved (incident \(id))"
        if incident.severity == .critical, incident.resolvedAt == nil { console.warning("sentinel: " + text) } else { console.notice("sentinel: " + text) }
    }

    /// `list`, `list json`, `explain ID`.
    func answer(_ request: String) -> String {
        let words = request.split(separator: " ").map(String.init)
        switch words.first {
        case "list" where words.count == 1:
            return ControlChannel.ok(engine.incidents.isEmpty ? "no incidents" : IncidentJSON.table(engine.incidents, now: Self.now()))
        case "list" where words == ["list", "json"]:
            return ControlChannel.ok("{\"now_ms\":\(Self.now()),\"incidents\":[" + engine.incidents.map(IncidentJSON.encode).joined(separator: ",\n") + "]}")
        case "explain" where words.count == 2:
            guard let id = Int(words[1]), let incident = engine.incident(id) else {
                return ControlChannel.error(code: 100, "no incident \(words[1]) (spiritctl sentinel lists them)")
            }
            var lines = [incident.explanation, "",
                         "rule \(incident.rule), \(incident.severity.rawValue), \(incident.state); pending at \(incident.pendingAt) ms, firing at \(incident.firingAt) ms"
                             + (incident.resolvedAt.map { ", resolved at \($0) ms" } ?? ""),
                         "evidence:"]
            lines += incident.evidence.map { "  " + $0 }
            return ControlChannel.ok(lines.joined(separator: "\n"))
        default:
            return ControlChannel.error(code: 100, "unknown request '\(request)' (list [json] | explain ID)")
        }
    }
}

extension SentinelDaemon {
    /// One request on the metrics listener, on a thread of its own: a slow
    /// client waits alone. GET /metrics gets the readings of this moment.
    static func serveMetrics(_ connection: Socket, paths: SentinelPaths) {
        defer { connection.close() }
        let answer: [UInt8]
        do {
            let request = try HTTPRequest.read(from: connection, bodyLimit: 0, idleMillis: 5000)
            switch (request.method, request.path) {
            case ("GET", "/metrics"):
                let services = (try? ServiceSummary.query(socket: paths.supervisorControl)) ?? []
                let text = Array(PrometheusText.render(NodeMetrics.families(NodeMetrics.read(paths: paths, services: services))).utf8)
                answer = HTTPAnswer.head(status: 200, contentType: PrometheusText.contentType, length: text.count) + text
            case (_, "/metrics"): answer = HTTPAnswer.error(405, "\(request.method) /metrics is not taken here")
            default: answer = HTTPAnswer.error(404, "no \(request.path) here; the metrics are at /metrics")
            }
        } catch {
            answer = HTTPAnswer.error(error.status, error.message)
        }
        try? connection.write(answer)
    }
}
