import Glibc
import Net
import SpiritCore

/// The API's routes and the control requests.
extension AIDaemon {
    /// At most this much JSON in a request: a chat with a long history fits;
    /// a client cannot make the daemon hold more.
    static let requestBodyLimit = 1 << 20
    /// Routes passed through to llama-server.
    static let passedThrough: Set<String> = ["/v1/chat/completions", "/v1/completions", "/completion", "/tokenize", "/detokenize"]

    func serve(_ connection: Socket) {
        defer { connection.close() }
        func answer(_ bytes: [UInt8]) { try? connection.write(bytes) }
        let request: HTTPRequest
        do {
            request = try HTTPRequest.read(from: connection, bodyLimit: Self.requestBodyLimit, idleMillis: 10_000)
        } catch {
            answer(HTTPAnswer.error(error.status, error.message))
            return
        }
        switch (request.method, request.path) {
        case ("GET", "/health"), ("GET", "/"):
            answer(HTTPAnswer.whole(status: 200, statusJSON() + "\n"))
        case ("GET", "/v1/models"):
            let created = Int64(time(nil))
            let data = store.list().map {
                "{\"id\":\(jsonString($0.name)),\"object\":\"model\",\"created\":\(created),\"owned_by\":\"spirit\"}"
            }
            answer(HTTPAnswer.whole(status: 200, "{\"object\":\"list\",\"data\":[\(data.joined(separator: ","))]}\n"))
        case ("GET", "/api/tags"):
            let models = store.list().map {
                "{\"name\":\(jsonString($0.name)),\"model\":\(jsonString($0.name)),\"size\":\($0.size),\"digest\":\(jsonString($0.sha256)),"
                    + "\"details\":{\"format\":\"gguf\",\"license\":\(jsonString($0.license))}}"
            }
            answer(HTTPAnswer.whole(status: 200, "{\"models\":[\(models.joined(separator: ","))]}\n"))
        case ("GET", "/api/ps"):
            let loaded = lock.withLock { () -> String in
                guard let model = scheduler.loadedModel, let manifest = store.list().first(where: { $0.name == model }) else { return "" }
                let expires = scheduler.expiresAt.map { "\"expires_in_s\":\(max(0, $0 - Kernel.bootTimeMicros()) / 1_000_000)," } ?? ""
                return "{\"name\":\(jsonString(model)),\"model\":\(jsonString(model)),\"size\":\(manifest.size),\(expires)"
                    + "\"digest\":\(jsonString(manifest.sha256))}"
            }
            answer(HTTPAnswer.whole(status: 200, "{\"models\":[\(loaded)]}\n"))
        case ("POST", let path) where Self.passedThrough.contains(path):
            passThrough(request, to: connection)
        case (_, let path) where Self.passedThrough.contains(path) || ["/health", "/v1/models", "/api/tags", "/api/ps"].contains(path):
            answer(HTTPAnswer.error(405, "\(request.method) \(path) is not taken here"))
        default:
            answer(HTTPAnswer.error(404, "no \(request.path) here; the API: GET /health, /v1/models, /api/tags, /api/ps; "
                                    + "POST " + Self.passedThrough.sorted().joined(separator: ", ")))
        }
    }

    /// The model a request names (`"model"`), the one loaded, or the first
    /// pack here; or why there is none.
    func model(for request: HTTPRequest) -> Result<String, HTTPServerError> {
        let named = (try? JSONReader.parse(request.body))?["model"]?.string ?? ""
        let models = store.list().map(\.name)
        if !named.isEmpty, models.contains(named) { return .success(named) }
        if !named.isEmpty, named != "default", !named.hasPrefix("gpt-") {
            return .failure(HTTPServerError(status: 404, "there is no model \(named) here (\(models.isEmpty ? "no models; spirit ai pull adds one" : "models: " + models.joined(separator: ", ")))"))
        }
        if let loaded = lock.withLock({ scheduler.loadedModel }) { return .success(loaded) }
        if let preload = options.preload, models.contains(preload) { return .success(preload) }
        guard let first = models.first else { return .failure(HTTPServerError(status: 404, "there is no model here yet (spirit ai pull adds one)")) }
        return .success(first)
    }

    /// Loads the model, sends the request to llama-server and streams its
    /// answer back as it comes (server-sent events stay events).
    func passThrough(_ request: HTTPRequest, to connection: Socket) {
        let model: String
        switch self.model(for: request) {
        case .success(let name): model = name
        case .failure(let error):
            try? connection.write(HTTPAnswer.error(error.status, error.message))
            return
        }
        if let failure = acquire(model, begin: true) {
            try? connection.write(HTTPAnswer.error(503, "the model \(model) is not available: \(failure)"))
            return
        }
        defer { release() }
        let upstream: HTTPConnection
        do {
            upstream = try LlamaClient(socketPath: paths.llamaSocket).open("POST", request.target, body: request.body, idleMillis: 120_000)
        } catch {
            try? connection.write(HTTPAnswer.error(502, "llama-server: \(error)"))
            return
        }
        let type = upstream.head.headers["content-type"] ?? "application/json"
        do {
            try connection.write(HTTPAnswer.head(status: upstream.head.status, contentType: type, length: nil))
            var buffer = [UInt8](repeating: 0, count: 16 << 10)
            while true {
                let n = try buffer.withUnsafeMutableBytes { try upstream.read(into: $0) }
                if n == 0 { break }
                try connection.write(Array(buffer[0..<n]))
            }
        } catch {
            // The client went away, or llama-server did: the request ends here.
            console.debug("ai: a request on \(model) ended early: \(error)")
        }
    }

    /// `status` (JSON), `load NAME`, `unload`.
    func answerControl(_ connection: Socket, request: String) {
        defer { connection.close() }
        let words = request.split(separator: " ").map(String.init)
        let reply: String
        switch words.first {
        case "status" where words.count == 1:
            reply = ControlChannel.ok(statusJSON())
        case "load" where words.count == 2:
            if !store.list().contains(where: { $0.name == words[1] }) {
                reply = ControlChannel.error(code: 111, "there is no model \(words[1]) here (spirit ai models lists them)")
            } else if let failure = acquire(words[1], begin: false) {
                reply = ControlChannel.error(code: 111, "the model \(words[1]) did not load: \(failure)")
            } else {
                reply = ControlChannel.ok("\(words[1]) loaded")
            }
        case "unload" where words.count == 1:
            let was = lock.withLock { () -> String? in
                let model = scheduler.loadedModel
                perform(scheduler.unload())
                return model
            }
            reply = ControlChannel.ok(was.map { "\($0) unloaded" } ?? "no model was loaded")
        default:
            reply = ControlChannel.error(code: 100, "unknown request '\(request.prefix(60))' (status, load NAME, unload)")
        }
        try? connection.write(Array(reply.utf8))
    }

    /// What `spirit ai status` and GET /health show.
    func statusJSON() -> String {
        lock.withLock {
            let now = Kernel.bootTimeMicros()
            var fields = ["\"status\":\"ok\"", "\"variant\":\(jsonString(variant.rawValue))", "\"binary\":\(jsonString(binary))",
                          "\"listen\":\(jsonString(options.listen))", "\"in_flight\":\(scheduler.inFlight)"]
            switch scheduler.state {
            case .unloaded: fields.append("\"state\":\"unloaded\"")
            case .loading(let model, let since):
                fields += ["\"state\":\"loading\"", "\"model\":\(jsonString(model))", "\"for_ms\":\((now - since) / 1000)"]
            case .ready(let model, let since):
                fields += ["\"state\":\"ready\"", "\"model\":\(jsonString(model))", "\"for_ms\":\((now - since) / 1000)"]
                if let pid = child { fields.append("\"pid\":\(pid)") }
            case .stopping(let model): fields += ["\"state\":\"stopping\"", "\"model\":\(jsonString(model))"]
            }
            if let expires = scheduler.expiresAt { fields.append("\"unloads_in_s\":\(max(0, expires - now) / 1_000_000)") }
            if let keep = scheduler.keepAliveMicros { fields.append("\"keep_alive_s\":\(keep / 1_000_000)") }
            if let failure = scheduler.lastFailure { fields.append("\"last_failure\":\(jsonString(failure))") }
            if let preload = options.preload { fields.append("\"preload\":\(jsonString(preload))") }
            fields.append("\"models\":[" + store.list().map { jsonString($0.name) }.joined(separator: ",") + "]")
            return "{" + fields.joined(separator: ",") + "}"
        }
    }
}
