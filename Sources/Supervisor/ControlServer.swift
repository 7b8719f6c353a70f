import Glibc
import SpiritCore
import SystemPackage

/// The control socket (/run/spirit/control.sock): one request a line, one
/// answer (`ok` and a body, or `error CODE MESSAGE`), root only; `logs -f`
/// keeps the connection as a follower.
extension SupervisorLoop {
    func acceptConnection() {
        guard let control, let (connection, line, uid) = ControlChannel.accept(on: control) else { return }
        let fd = connection.fd
        guard uid == 0 else {
            reply(fd, error: 111, "permission denied: the control socket answers only root (you are uid \(uid))")
            connection.close()
            return
        }
        guard let line else {
            reply(fd, error: 100, "no request (expected one line: status, start S, stop S, restart S or logs S N)")
            connection.close()
            return
        }
        guard let request = ControlRequest(line: line) else {
            reply(fd, error: 100, "not a request: '\(line)'")
            connection.close()
            return
        }
        if answer(fd, request) {
            if request.command == .events { statusFollowers.insert(fd) } else { followers[fd] = request.service }
            // A follower only ever reads: input or a hangup ends it.
            events.watch(fd) { [unowned self] fd in dropFollower(fd) }
        } else {
            connection.close()
        }
    }

    /// Answers; returns true when the connection stays open as a follower.
    func answer(_ fd: CInt, _ request: ControlRequest) -> Bool {
        let now = clock.nowMicros
        if let name = request.service, engine.index(of: name) == nil {
            // A file added since the supervisor started: `start` picks it up.
            guard request.command == .start, Kernel.exists(paths.services + "/" + name + ".toml") else {
                reply(fd, error: 100, "unknown service '\(name)' (no \(paths.services)/\(name).toml)")
                return false
            }
            let path = paths.services + "/" + name + ".toml"
            do {
                let definition = try ServiceDefinition(name: name, file: try ServiceFile.parse(try Kernel.readText(path), path: path))
                engine.add(definition)
                prepare(definition)
            } catch {
                reply(fd, error: 100, "\(error)")
                return false
            }
        }
        switch request.command {
        case .status:
            var services = engine.services
            if let name = request.service { services = services.filter { $0.definition.name == name } }
            let head = journal.head()
            reply(fd, request.json ? StatusReport.json(services, now: now, journal: head) : StatusReport.text(services, now: now, journal: head))
        case .start, .stop, .restart:
            let name = request.service!
            do {
                switch request.command {
                case .start: try engine.start(name)
                case .stop: try engine.stop(name, reason: request.reason)
                default: try engine.restart(name)
                }
            } catch {
                reply(fd, error: 100, "\(error)")
                return false
            }
            say(.debug, "service \(name): \(request.command.rawValue) asked through the control socket", service: name)
            journalReasons[name] = "\(request.command.rawValue) asked through the control socket" + (request.reason.map { " because \($0)" } ?? "")
            journal.append("service.\(request.command.rawValue)-asked", [("service", name)] + (request.reason.map { [("reason", $0)] } ?? []))
            let state = engine.services[engine.index(of: name)!].state.rawValue
            reply(fd, request.json ? "{\"service\":\(jsonString(name)),\"state\":\(jsonString(state))}" : "\(name): \(state)")
        case .events:
            reply(fd, Self.oneLine(StatusReport.json(engine.services, now: now)))
            try? Kernel.setNonBlocking(fd)
            return true
        case .logs:
            let name = request.service!
            let lines = logs[name]?.last(request.lines) ?? []
            reply(fd, lines.joined(separator: "\n"))
            if request.follow {
                try? Kernel.setNonBlocking(fd)
                return true
            }
        }
        return false
    }

    func sendToFollowers(_ name: String, _ lines: [String]) {
        for (fd, service) in followers where service == name {
            if !write(fd, lines.joined(separator: "\n") + "\n") { dropFollower(fd) }
        }
    }

    /// The status to every `events follow` connection, after the services
    /// changed (a notice from the engine).
    func sendStatusToFollowers() {
        guard !statusFollowers.isEmpty else { return }
        let line = Self.oneLine(StatusReport.json(engine.services, now: clock.nowMicros)) + "\n"
        for fd in statusFollowers where !write(fd, line) { dropFollower(fd) }
    }

    /// A JSON document on one line (strings escape their newlines).
    static func oneLine(_ json: String) -> String { String(json.filter { $0 != "\n" }) }

    func dropFollower(_ fd: CInt) {
        followers[fd] = nil
        statusFollowers.remove(fd)
        events.unwatch(fd)
        Kernel.close(fd)
    }

    func reply(_ fd: CInt, _ body: String) {
        _ = write(fd, ControlChannel.ok(body))
    }

    func reply(_ fd: CInt, error code: Int, _ message: String) {
        _ = write(fd, ControlChannel.error(code: code, message))
    }

    @discardableResult
    func write(_ fd: CInt, _ text: String) -> Bool {
        (try? Kernel.write(fd, text, socket: true, "a control connection")) != nil
    }
}
