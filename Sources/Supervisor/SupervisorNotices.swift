import Glibc
import SpiritCore
import SystemPackage

/// What the engine says happened, turned into console lines, log lines and
/// timeline steps.
extension SupervisorLoop {
    func handleNotices() -> Int32? {
        let notices = engine.takeNotices()
        if !notices.isEmpty { sendStatusToFollowers() }
        for notice in notices {
            switch notice {
            case .started(let name, let pid, _):
                if let (_, fd) = spawner.startedPipes.last(where: { $0.name == name }) {
                    pipes[fd] = name
                    events.watch(fd) { [unowned self] fd in readOutput(fd, name) }
                    spawner.startedPipes.removeAll { $0.fd == fd }
                }
                unreadyStarts[name] = (pid, clock.nowMicros)
                journal.append("service.start", [("service", name), ("pid", "\(pid)"),
                                                 ("reason", journalReasons.removeValue(forKey: name) ?? "wanted (enabled, or required by one started)")])
                console.debug("service \(name): started, process \(pid)")
                logs[name]?.note("started, process \(pid)", at: clock.nowMicros)
            case .ready(let name, let startedAt, let at):
                unreadyStarts[name] = nil
                let pid = engine.services.first { $0.definition.name == name }?.pid ?? 0
                say(.info, "service \(name): ready, process \(pid), in \(formatMilliseconds(at - startedAt)) ms", service: name)
                timeline.record(TimelineStep(step: "service:" + name, process: "supervisor", pid: pid, startMicros: startedAt,
                                             endMicros: at, ok: true, detail: "process \(pid) ready"))
            case .readyTimeout(let name):
                let start = unreadyStarts.removeValue(forKey: name)
                say(.warning, "service \(name): not ready in time (no READY=1 on its NOTIFY_SOCKET); it runs on", service: name)
                let now = clock.nowMicros
                timeline.record(TimelineStep(step: "service:" + name, process: "supervisor", pid: start?.pid ?? 0,
                                             startMicros: start?.at ?? now, endMicros: now, ok: false, detail: "not ready in time"))
            case .exited(let name, let status, let restartIn):
                if let (pid, at) = unreadyStarts.removeValue(forKey: name) {
                    timeline.record(TimelineStep(step: "service:" + name, process: "supervisor", pid: pid, startMicros: at,
                                                 endMicros: clock.nowMicros, ok: false, detail: "\(status) before it was ready"))
                }
                let restart = restartIn.map { "restart in \(($0 + 500) / 1000) ms" }
                say(restartIn == nil ? .info : .warning, "service \(name): \(status)" + (restart.map { "; " + $0 } ?? ""), service: name)
                journal.append("service.exit", [("service", name), ("status", "\(status)"), ("then", restart ?? "not restarted")])
                if restartIn != nil { journalReasons[name] = "restart after it \(status)" }
            case .startFailed(let name, let reason, let restartIn):
                let then = restartIn.map { "; again in \(($0 + 500) / 1000) ms" } ?? ""
                say(.error, "service \(name): \(reason)\(then)", service: name)
                journal.append("service.start-failed", [("service", name), ("reason", reason)])
                let now = clock.nowMicros
                timeline.record(TimelineStep(step: "service:" + name, process: "supervisor", pid: 0, startMicros: now, endMicros: now,
                                             ok: false, detail: reason))
            case .notApplicable(let name, let code):
                // Its last line says why (the HUD: no display here).
                let said = logs[name]?.last(1).first.map { String($0.split(separator: " ", maxSplits: 1).last ?? "") }
                let why = said.map { $0.hasPrefix("spirit: ") ? String($0.dropFirst("spirit: ".count)) : $0 } ?? "exit status \(code)"
                engine.explain(name, "not applicable here: \(why)")
                say(.info, "service \(name): not applicable here (\(why)); not restarted", service: name)
                journal.append("service.not-applicable", [("service", name), ("reason", why)])
            case .failed(let name, let reason):
                say(.error, "service \(name): failed: \(reason); 'spiritctl start \(name)' tries again", service: name)
                journal.append("service.failed", [("service", name), ("reason", reason)])
            case .stopping(let name, let signal):
                console.debug("service \(name): sent \(Signal.name(signal))")
                let why = shutdownStarted != nil ? "shutdown" : journalReasons[name] ?? "a service it requires stopped"
                journal.append("service.stop", [("service", name), ("signal", Signal.name(signal)), ("reason", why)])
            case .killed(let name, let after):
                say(.warning, "service \(name): still running \(formatMilliseconds(after)) ms after its stop signal; SIGKILL", service: name)
            case .stopped(let name, let took, let killed):
                let how = killed ? "killed" : "stopped"
                journal.append("service.stopped", [("service", name), ("how", how), ("took_ms", formatMilliseconds(took))])
                // A restart asked keeps its reason for the start that follows.
                if journalReasons[name]?.hasPrefix("stop ") == true { journalReasons[name] = nil }
                say(.info, (shutdownStarted == nil ? "service \(name): " : "shutdown: \(name) ") + "\(how) in \(formatMilliseconds(took)) ms",
                    service: name)
            case .allReady:
                try? Kernel.writeFile(paths.ready, "\(formatMilliseconds(clock.nowMicros))\n")
                if systemMode, Kernel.parentPID == 1 {
                    try? Kernel.kill(1, SIGHUP)
                } else {
                    say(.info, "ready")
                }
            case .allStopped:
                if let started = shutdownStarted {
                    say(.info, "shutdown: all services stopped in \(formatMilliseconds(clock.nowMicros - started)) ms")
                    finish()
                    return 0
                }
            }
        }
        return nil
    }
}
