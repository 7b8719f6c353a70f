import Glibc
import Net
import SpiritCore

/// `spirit ai serve`: the AI runtime's I/O shell, ollama's scheduler and
/// runner inside Spirit's supervisor. It owns one llama-server process at a
/// time (its child, in the service's cgroup), started when a request asks
/// for a model and ended after `keepAlive` idle (ModelScheduler decides).
/// The API (OpenAI's /v1/chat/completions and /v1/completions, streamed or
/// not, passed through to llama-server; /v1/models, ollama's /api/tags and
/// /api/ps) listens on 127.0.0.1:11434, ollama's port; `spirit ai
/// status|load|unload` come on /run/spirit/ai.sock. The main thread takes
/// signals and connections; each connection runs on a thread of its own;
/// the keeper thread starts and stops llama-server and watches its health.
public final class AIDaemon: @unchecked Sendable {
    public static let notApplicableExit: Int32 = 64
    public static let defaultListen = "127.0.0.1:11434"

    public struct Options: Sendable {
        public var listen = AIDaemon.defaultListen
        public var keepAliveSeconds: Int64? = 300
        public var settings = LlamaSettings(threads: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        /// How long llama-server may take to answer /health with 200 (a
        /// 100 MB model loads in under a second natively; under QEMU's TCG
        /// it takes many times that).
        public var loadTimeoutSeconds: Int64 = 180
        /// A model to load at start (`crom.ai=NAME`); nil loads on demand.
        public var preload: String?
        public init() {}
    }

    let paths: AIPaths
    let console: Console
    let options: Options
    let store: ModelStore
    let binary: String
    let variant: CPUVariant
    let lock = Monitor()
    var scheduler: ModelScheduler
    var child: pid_t?
    var childModel: String?
    var stopSentAt: Int64?
    var running = true

    init(paths: AIPaths, console: Console, options: Options, binary: String, variant: CPUVariant) {
        self.paths = paths
        self.console = console
        self.options = options
        self.store = ModelStore(paths: paths, console: console)
        self.binary = binary
        self.variant = variant
        self.scheduler = ModelScheduler(keepAliveMicros: options.keepAliveSeconds.map { $0 * 1_000_000 })
    }

    /// Runs the daemon; returns its exit status.
    public static func run(paths: AIPaths, options: Options, console: Console) -> Int32 {
        let cpuinfo = (try? Kernel.readText(paths.cpuinfo)) ?? ""
        let installed = Set([CPUVariant.v3, .v2].filter { Kernel.exists(paths.serverBinaries + "/" + $0.binary) })
        let variant: CPUVariant
        switch CPUVariant.choose(flags: CPUVariant.flags(cpuinfo: cpuinfo), installed: installed) {
        case .success(let chosen): variant = chosen
        case .failure(let why):
            console.notice("ai: \(why): nothing to do")
            return notApplicableExit
        }
        let signals: SignalQueue
        let control: Socket
        let api: Socket
        do {
            try SignalQueue.blockAll()
            signals = try SignalQueue()
            try Kernel.makeDirectory(paths.run, parents: true)
            try Kernel.makeDirectory(paths.models, parents: true)
            Kernel.remove(paths.llamaSocket)
            control = try Socket.listenUnix(paths.controlSocket)
            api = try Socket.listenTCP(try SocketAddress.parse(options.listen, defaultPort: 11434))
        } catch {
            console.error("ai: \(error)")
            return 111
        }
        let daemon = AIDaemon(paths: paths, console: console, options: options,
                              binary: paths.serverBinaries + "/" + variant.binary, variant: variant)
        let models = daemon.store.list().map(\.name)
        console.info("ai: llama-server \(variant.rawValue) (\(daemon.binary)); API on http://\(options.listen); "
                     + (models.isEmpty ? "no model yet (spirit ai pull)" : "models: " + models.joined(separator: ", ")))
        do {
            try Threads.start { daemon.keep() }
        } catch {
            console.error("ai: \(error)")
            return 111
        }
        if let preload = options.preload {
            daemon.lock.withLock { daemon.perform(daemon.scheduler.want(preload, now: Kernel.bootTimeMicros())) }
        }
        ServiceNotify.ready()
        let events = EventLoop()
        events.watch(signals.fd) { _ in
            guard let (signal, _) = try? signals.next() else { return }
            if [SIGTERM, SIGINT].contains(signal) { daemon.lock.withLock { daemon.running = false } }
        }
        events.watch(control.fd) { _ in
            guard let (connection, request, _) = ControlChannel.accept(on: control) else { return }
            daemon.onThread(connection) { daemon.answerControl(connection, request: request ?? "") }
        }
        events.watch(api.fd) { _ in
            guard let (connection, _) = try? api.accept() else { return }
            daemon.onThread(connection) { daemon.serve(connection) }
        }
        while daemon.lock.withLock({ daemon.running }) {
            do {
                try events.runOnce(milliseconds: 500)
            } catch {
                console.error("ai: \(error)")
                return 111
            }
        }
        daemon.shutdown()
        Kernel.remove(paths.controlSocket)
        return 0
    }

    func onThread(_ connection: Socket, _ body: @escaping @Sendable () -> Void) {
        do {
            try Threads.start(body)
        } catch {
            try? connection.write(HTTPAnswer.error(503, "\(error)"))
            connection.close()
        }
    }

    // MARK: The keeper: llama-server's life

    /// Every 100 ms: reaps llama-server, probes its health while it loads,
    /// ends it after its keep-alive, and escalates a stop that is not heard.
    func keep() {
        while true {
            let (pid, loading, since) = lock.withLock { () -> (pid_t?, Bool, Int64) in
                if case .loading(_, let since) = scheduler.state { return (child, true, since) }
                return (child, false, 0)
            }
            if let pid, let ended = try? Spawn.wait(pid, noHang: true) {
                lock.withLock {
                    let model = childModel ?? "?"
                    child = nil
                    childModel = nil
                    stopSentAt = nil
                    console.info("ai: llama-server (\(model)) \(ended.status)")
                    perform(scheduler.exited(how: ended.status.description, now: Kernel.bootTimeMicros()))
                    lock.broadcast()
                }
                continue
            }
            let now = Kernel.bootTimeMicros()
            if loading, pid != nil {
                if LlamaClient(socketPath: paths.llamaSocket).health() == 200 {
                    lock.withLock {
                        scheduler.healthy(now: Kernel.bootTimeMicros())
                        if let model = scheduler.loadedModel {
                            console.info("ai: \(model) loaded in \(formatMilliseconds(Kernel.bootTimeMicros() - since)) ms")
                        }
                        lock.broadcast()
                    }
                } else if now - since > options.loadTimeoutSeconds * 1_000_000 {
                    lock.withLock {
                        perform(scheduler.loadFailed("/health did not answer 200 within \(options.loadTimeoutSeconds) s"))
                        lock.broadcast()
                    }
                }
            }
            lock.withLock {
                perform(scheduler.tick(now: now))
                if let pid = child, let sent = stopSentAt, now - sent > 5_000_000 {
                    try? Kernel.kill(pid, SIGKILL)
                    stopSentAt = now
                }
                // A start that failed at once left no child: nothing to wait for.
                if child == nil, case .stopping = scheduler.state {
                    perform(scheduler.exited(how: "did not start", now: now))
                    lock.broadcast()
                }
            }
            Kernel.sleep(milliseconds: 100)
        }
    }

    /// Does what the scheduler decided; called with the lock held.
    func perform(_ actions: [ModelScheduler.Action]) {
        for action in actions {
            switch action {
            case .start(let model):
                Kernel.remove(paths.llamaSocket)
                let arguments = options.settings.arguments(model: paths.model(model), alias: model, socket: paths.llamaSocket)
                do {
                    guard Kernel.exists(paths.model(model)) else { throw SpiritError("there is no model \(model) in \(paths.models)") }
                    let log = try Kernel.open(paths.llamaLog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
                    defer { Kernel.close(log) }
                    child = try Spawn.spawn(binary, [binary] + arguments, options: Spawn.Options(outputFD: log, nullStdin: true))
                    childModel = model
                    console.info("ai: loading \(model): \(binary) \(arguments.joined(separator: " "))")
                } catch {
                    console.error("ai: unable to start llama-server for \(model): \(error)")
                    // Its stop has no process to stop: the keeper sees no child and settles.
                    _ = scheduler.loadFailed("\(error)")
                }
            case .stop(let model, let why):
                guard let pid = child else { continue }
                console.info("ai: unloading \(model): \(why)")
                try? Kernel.kill(pid, SIGTERM)
                stopSentAt = Kernel.bootTimeMicros()
            }
        }
    }

    func shutdown() {
        let pid = lock.withLock { () -> pid_t? in
            _ = scheduler.unload()
            return child
        }
        guard let pid else { return }
        try? Kernel.kill(pid, SIGTERM)
        let deadline = Kernel.bootTimeMicros() + 5_000_000
        while Kernel.bootTimeMicros() < deadline {
            if (try? Spawn.wait(pid, noHang: true)) != nil { return }
            Kernel.sleep(milliseconds: 50)
        }
        try? Kernel.kill(pid, SIGKILL)
        _ = try? Spawn.wait(pid)
    }

    /// Asks for `model` and waits until it is ready (true), or its load
    /// failed or timed out (the reason). With `begin`, a request is counted
    /// on it before the lock is let go, so that it cannot be unloaded under
    /// the request.
    func acquire(_ model: String, begin: Bool) -> String? {
        lock.withLock {
            perform(scheduler.want(model, now: Kernel.bootTimeMicros()))
            let deadline = Kernel.bootTimeMicros() + (options.loadTimeoutSeconds + 10) * 1_000_000
            while true {
                if scheduler.loadedModel == model {
                    if begin { scheduler.begin() }
                    return nil
                }
                if let failure = scheduler.lastFailure, scheduler.wanted == nil { return failure }
                if !running { return "the AI runtime is stopping" }
                // Another request asked for another model meanwhile: ask again.
                if scheduler.wanted != model { perform(scheduler.want(model, now: Kernel.bootTimeMicros())) }
                if Kernel.bootTimeMicros() > deadline { return "\(model) did not load in time" }
                lock.wait(untilBootMicros: min(deadline, Kernel.bootTimeMicros() + 500_000))
            }
        }
    }

    func release() {
        lock.withLock {
            perform(scheduler.end(now: Kernel.bootTimeMicros()))
            lock.broadcast()
        }
    }
}
