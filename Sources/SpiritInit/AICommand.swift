import AIRuntime
import BootCascade
import Glibc
import Net
import Overlay
import SpiritCommands
import SpiritCore

/// `spirit ai …`: the AI runtime. `serve` is the ai service (AIDaemon);
/// `models`, `pull`, `remove` work on the packs in RAM directly; `status`,
/// `load`, `unload` ask the daemon on /run/spirit/ai.sock; `pack` signs a
/// GGUF on the build host (`make model-pack`). `--root DIR` (or
/// SPIRIT_AI_ROOT) puts every path under DIR, for host tests.
enum AICommand {
    static let usage = "ai [--root DIR] serve [--listen ADDR:PORT] [--keep-alive S|never] [--context N] [--threads N] [--preload NAME] [--load-timeout S] | "
        + "status | health | models [--json] | pull [NAME] [--from URL|DIR|peer|nodus://ADDR] | load NAME | unload | remove NAME | "
        + "run \"PROMPT\" [--model NAME] [--max-tokens N] | "
        + "pack --gguf F --name NAME --key K --license SPDX --source TEXT --out DIR"

    static func run(_ arguments: [String]) -> Int32 {
        var words = arguments
        var root = getenv("SPIRIT_AI_ROOT").map { String(cString: $0) } ?? ""
        if words.first == "--root", words.count >= 2 {
            root = words[1]
            words.removeFirst(2)
        }
        let paths = AIPaths(root: root)
        let console = Console.tool
        guard let verb = words.first else { return Usage.fail("usage: spirit \(usage)") }
        let rest = Array(words.dropFirst())
        if verb == "serve" {
            if BootConfig.current().ai == "off" {
                console.notice("ai: crom.ai=off: the AI runtime does not run on this boot")
                return AIDaemon.notApplicableExit
            }
            return exitStatus {
                let daemonConsole = Console(debug: BootConfig.current().debug, kmsgPath: nil)
                let code = AIDaemon.run(paths: paths, options: try serveOptions(try Options(rest)), console: daemonConsole)
                if code != 0 { exit(code) }
            }
        }
        return exitStatus {
            // `--json` takes no value: only the verbs with named values parse them.
            let options = rest == ["--json"] ? try Options([]) : try Options(rest)
            let store = ModelStore(paths: paths, console: console)
            switch verb {
            case "status" where rest.isEmpty:
                try control("status", paths: paths) { print($0) }
            case "health" where rest.isEmpty:
                // The ai service's readiness probe: the daemon answers, and
                // the model crom.ai= names is loaded.
                var text = ""
                try control("status", paths: paths) { text += $0 }
                let status = try JSONReader.parse(text)
                if let preload = status["preload"]?.string, status["model"]?.string != preload || status["state"]?.string != "ready" {
                    throw SpiritError("the AI runtime answers; \(preload) is \(status["state"]?.string ?? "?")")
                }
            case "load" where options.words.count == 1 && options.named.isEmpty:
                try control("load \(options.words[0])", paths: paths) { console.info("ai: \($0)") }
            case "unload" where rest.isEmpty:
                try control("unload", paths: paths) { console.info("ai: \($0)") }
            case "models" where rest.isEmpty || rest == ["--json"]:
                let models = store.list()
                if rest == ["--json"] {
                    print("[" + models.map { "{\"name\":\(jsonString($0.name)),\"size\":\($0.size),\"sha256\":\(jsonString($0.sha256)),"
                        + "\"license\":\(jsonString($0.license)),\"source\":\(jsonString($0.source))}" }.joined(separator: ",") + "]")
                } else if models.isEmpty {
                    print("no models (spirit ai pull NAME --from URL|DIR|peer|nodus://ADDR adds one)")
                } else {
                    for model in models {
                        print("\(model.name)  \(model.size >> 20) MiB  \(model.license)  SHA-256 \(model.sha256.prefix(12))  \(model.source)")
                    }
                }
            case "pull" where options.words.count <= 1:
                try store.pull(options.words.first, from: try shelf(from: options.named["from"], for: "ai pull", console: console))
                LayerCommand.restartInapplicableServices(console: console)
            case "remove" where options.words.count == 1 && options.named.isEmpty:
                try store.remove(options.words[0])
            case "run" where options.words.count == 1:
                try runPrompt(options.words[0], model: options.named["model"], maxTokens: options.named["max-tokens"])
            case "pack":
                try pack(options)
            default:
                throw UsageError(message: "usage: spirit \(usage)")
            }
        }
    }

    /// `spirit ai run "PROMPT"`: one answer at temperature 0, printed as it
    /// comes, then its timings (ollama's `run`, without the chat loop).
    static func runPrompt(_ prompt: String, model: String?, maxTokens: String?) throws {
        guard let tokens = Int(maxTokens ?? "128"), (1...4096).contains(tokens) else {
            throw UsageError(message: "--max-tokens takes 1 to 4096, not \(maxTokens ?? "")")
        }
        let body = "{" + (model.map { "\"model\":\(jsonString($0))," } ?? "")
            + "\"messages\":[{\"role\":\"user\",\"content\":\(jsonString(prompt))}],\"temperature\":0,\"max_tokens\":\(tokens),\"stream\":false}"
        let answer = try AIAPI.post("/v1/chat/completions", body: body)
        guard let content = answer["choices"]?.array?.first?["message"]?["content"]?.string else {
            throw SpiritError("the AI runtime's answer has no message")
        }
        print(content.trimmed)
        if let timings = answer["timings"] {
            let rate = { (value: Double) in " (\(formatMilliseconds(Int64(value * 1000))) tokens/s)" }
            let prompt = timings["prompt_per_second"]?.double.map(rate) ?? ""
            let predicted = timings["predicted_per_second"]?.double.map(rate) ?? ""
            Console.tool.info("ai: prompt \(timings["prompt_n"]?.integer ?? 0) tokens\(prompt), answer \(timings["predicted_n"]?.integer ?? 0) tokens\(predicted)")
        }
    }

    static func serveOptions(_ options: Options) throws -> AIDaemon.Options {
        guard options.words.isEmpty, Set(options.named.keys).isSubset(of: ["listen", "keep-alive", "context", "threads", "preload", "load-timeout"]) else {
            throw UsageError(message: "usage: spirit \(usage)")
        }
        var result = AIDaemon.Options()
        if let listen = options.named["listen"] { result.listen = listen }
        if let keep = options.named["keep-alive"] {
            guard keep == "never" || Int64(keep).map({ $0 >= 0 }) == true else { throw UsageError(message: "--keep-alive takes seconds or never, not \(keep)") }
            result.keepAliveSeconds = Int64(keep)
        }
        for (name, minimum) in [("context", 128), ("threads", 1), ("load-timeout", 1)] {
            guard let text = options.named[name] else { continue }
            guard let value = Int(text), value >= minimum else { throw UsageError(message: "--\(name) takes a whole number of at least \(minimum), not \(text)") }
            switch name {
            case "context": result.settings.context = value
            case "threads": result.settings.threads = value
            default: result.loadTimeoutSeconds = Int64(value)
            }
        }
        let flag = BootConfig.current().ai
        result.preload = options.named["preload"] ?? (flag.isEmpty || flag == "auto" || flag == "off" ? nil : flag)
        return result
    }

    /// One request to the daemon; its body line by line to `line`.
    static func control(_ request: String, paths: AIPaths, line: (String) -> Void) throws {
        try controlRequest(request, to: paths.controlSocket, server: "AI runtime (the ai service)").split(separator: "\n").forEach { line(String($0)) }
    }

    /// Signs a GGUF as a pack: OUT/NAME.gguf (a copy) beside OUT/NAME.json.
    static func pack(_ options: Options) throws {
        guard options.words.isEmpty else { throw UsageError(message: "usage: spirit \(usage)") }
        let gguf = try options.required("gguf"), name = try options.required("name"), out = try options.required("out")
        try ModelManifest.checkName(name)
        guard try Kernel.readHead(gguf, count: 4) == Array("GGUF".utf8) else { throw SpiritError("--gguf \(gguf) is not a GGUF file (it does not start with GGUF)") }
        let key = try SigningKey.read(try options.required("key"))
        // Reproducible: the build's SOURCE_DATE_EPOCH when make gives one.
        let epoch = options.named["build-time"] ?? getenv("SOURCE_DATE_EPOCH").map { String(cString: $0) }
        guard let buildTime = epoch.map({ Int64($0) }) ?? Int64(time(nil)), buildTime >= 0 else {
            throw UsageError(message: "--build-time (or SOURCE_DATE_EPOCH) takes whole seconds since 1970")
        }
        try Kernel.makeDirectory(out, parents: true)
        let target = out + "/" + ModelManifest.file(name)
        try Spawn.run("/bin/cp", ["cp", "--reflink=auto", gguf, target])
        let measured = try ImageCopy.measure(target)
        let manifest = try ModelManifest(name: name, size: measured.size, sha256: measured.sha256, license: try options.required("license"),
                                         source: try options.required("source"), buildTime: buildTime).signed(privateKey: key)
        try Kernel.writeFileAtomically(out + "/" + ModelManifest.manifestFile(name), manifest.json)
        try Kernel.writeFileAtomically(out + "/" + ModelShelf.index, name + "\n")
        Console.tool.info("model pack \(name): \(measured.size) bytes, SHA-256 \(measured.sha256.prefix(12)), signed, in \(out)")
    }
}
