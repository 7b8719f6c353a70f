/// Which model llama-server holds, as ollama's scheduler keeps it: nothing
/// is loaded until a request asks for a model; a loaded model stays while
/// requests come and for `keepAlive` after the last one ends (ollama's
/// keep_alive, five minutes by default), then its process ends and its
/// memory is free. A request for another model waits for the requests in
/// flight, then swaps. Pure: the daemon feeds it events with the time and
/// does what it returns.
public struct ModelScheduler: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case unloaded
        /// llama-server started; `/health` not yet 200.
        case loading(model: String, since: Int64)
        case ready(model: String, since: Int64)
        /// Asked to end (idle, unload, a swap); waits for it to exit.
        case stopping(model: String)
    }

    public enum Action: Sendable, Equatable {
        case start(model: String)
        case stop(model: String, why: String)
    }

    public private(set) var state = State.unloaded
    /// Requests in flight on the loaded model (none unloads it).
    public private(set) var inFlight = 0
    /// When the last request ended (microseconds).
    public private(set) var lastUsed: Int64 = 0
    /// The model the next start loads, when one is wanted.
    public private(set) var wanted: String?
    /// Why the last load failed, for the requests that waited on it.
    public private(set) var lastFailure: String?
    /// 0 unloads as soon as the last request ends; nil never unloads.
    public var keepAliveMicros: Int64?

    public init(keepAliveMicros: Int64? = 300_000_000) {
        self.keepAliveMicros = keepAliveMicros
    }

    public var loadedModel: String? {
        if case .ready(let model, _) = state { return model }
        return nil
    }

    /// A request wants `model`: start it, or swap to it once the requests
    /// in flight end.
    public mutating func want(_ model: String, now: Int64) -> [Action] {
        wanted = model
        lastFailure = nil
        switch state {
        case .unloaded:
            state = .loading(model: model, since: now)
            return [.start(model: model)]
        case .loading(let current, _), .ready(let current, _):
            if current == model || inFlight > 0 { return [] }
            state = .stopping(model: current)
            return [.stop(model: current, why: "\(model) was asked for")]
        case .stopping:
            return []
        }
    }

    /// A request starts on the ready model (the daemon checked `loadedModel`).
    public mutating func begin() { inFlight += 1 }

    public mutating func end(now: Int64) -> [Action] {
        inFlight = max(0, inFlight - 1)
        lastUsed = now
        // A swap waited for this request.
        if inFlight == 0, case .ready(let current, _) = state, let wanted, wanted != current {
            state = .stopping(model: current)
            return [.stop(model: current, why: "\(wanted) was asked for")]
        }
        return []
    }

    /// `/health` answered 200.
    public mutating func healthy(now: Int64) {
        if case .loading(let model, _) = state {
            state = .ready(model: model, since: now)
            lastUsed = now
        }
    }

    /// llama-server could not load (it exited, or did not become healthy
    /// within the deadline, or could not be started): `why` goes to the
    /// requests that wait.
    public mutating func loadFailed(_ why: String) -> [Action] {
        guard case .loading(let model, _) = state else { return [] }
        lastFailure = why
        wanted = nil
        state = .stopping(model: model)
        return [.stop(model: model, why: "it did not load: \(why)")]
    }

    /// The process ended, as asked (a stop) or by itself (`how`: "exited
    /// with status 1"). After a swap's stop the wanted model starts; a
    /// process that ended by itself is not started again until a request
    /// asks (the requests that waited are told why).
    public mutating func exited(how: String, now: Int64) -> [Action] {
        switch state {
        case .stopping:
            state = .unloaded
            if let wanted {
                state = .loading(model: wanted, since: now)
                return [.start(model: wanted)]
            }
        case .loading(let model, _):
            lastFailure = "llama-server \(how) while loading \(model)"
        case .ready(let model, _):
            lastFailure = "llama-server \(how) while serving \(model)"
        case .unloaded:
            break
        }
        state = .unloaded
        wanted = nil
        return []
    }

    /// `spirit ai unload`.
    public mutating func unload() -> [Action] {
        wanted = nil
        switch state {
        case .loading(let model, _), .ready(let model, _):
            state = .stopping(model: model)
            return [.stop(model: model, why: "unloaded by request")]
        case .unloaded, .stopping:
            return []
        }
    }

    /// The clock: an idle model past its keep-alive is stopped.
    public mutating func tick(now: Int64) -> [Action] {
        guard case .ready(let model, _) = state, inFlight == 0, let keep = keepAliveMicros, now - lastUsed >= keep else { return [] }
        wanted = nil
        state = .stopping(model: model)
        return [.stop(model: model, why: "idle for \(keep / 1_000_000) s")]
    }

    /// When the idle model would be stopped (microseconds), for `status`.
    public var expiresAt: Int64? {
        guard case .ready = state, inFlight == 0, let keep = keepAliveMicros else { return nil }
        return lastUsed + keep
    }
}
