import AIRuntime
import Glibc
import Net
import Nexus
import SpiritCommands
import SpiritCore

/// `spirit ask "…" [--yes] [--json]`: a question or a request about this
/// machine in plain words. The deterministic parser reads the common ones;
/// the rest go to the AI runtime under a grammar of the allowed tools and
/// the live services. Anything that changes state is confirmed first
/// (unless --yes), and every action is logged with the words that asked
/// for it (/run/log/ask.jsonl).
enum AskCommand {
    static let usage = "ask \"QUESTION OR REQUEST\" | --listen FILE.wav [--yes] [--json] [--dry-run] [--speak | --speak-to FILE.wav]"

    static func run(_ arguments: [String]) -> Int32 {
        var rest = arguments[...]
        var words: [String] = []
        var flags = Set<String>()
        var listen: String?, speakTo: String?
        while let word = rest.popFirst() {
            switch word {
            case "--yes", "--json", "--dry-run", "--speak": flags.insert(word)
            case "--listen", "--speak-to":
                guard let value = rest.popFirst() else { return Usage.fail("\(word) needs a FILE.wav; usage: spirit \(usage)") }
                if word == "--listen" { listen = value } else { speakTo = value }
            default:
                guard !word.hasPrefix("--") else { return Usage.fail("unknown option \(word); usage: spirit \(usage)") }
                words.append(word)
            }
        }
        guard words.isEmpty != (listen == nil) else { return Usage.fail("usage: spirit \(usage)") }
        let yes = flags.contains("--yes"), json = flags.contains("--json"), dryRun = flags.contains("--dry-run")
        let speak = flags.contains("--speak") || speakTo != nil
        // SPIRIT_AI_ROOT: the AI runtime's and the supervisor's files under a
        // test directory (host tests).
        let paths = AIPaths(root: getenv("SPIRIT_AI_ROOT").map { String(cString: $0) } ?? "")
        let supervisor = paths.root + RunFiles.controlSocket
        var code: Int32 = 0
        let status = exitStatus {
            let started = Kernel.bootTimeMicros()
            let services = try supervisedServices(socket: supervisor)
            let names = services.map(\.name)
            let text = try listen.map { try hear($0, services: names) } ?? words.joined(separator: " ")
            var routedBy = "parser"
            let intent: AskIntent
            if let parsed = AskParser.parse(text, services: names) {
                intent = parsed
            } else {
                routedBy = "model"
                intent = try askModel(text, services: names)
            }
            let routed = Kernel.bootTimeMicros() - started
            let refusal = intent.refusal(services: names)
            if json || dryRun {
                print("{\"tool\":\(jsonString(intent.tool.rawValue)),\"service\":\(intent.service.map(jsonString) ?? "null"),"
                      + "\"routed_by\":\(jsonString(routedBy)),\"routed_ms\":\(formatMilliseconds(routed))"
                      + (refusal.map { ",\"refused\":\(jsonString($0))" } ?? "") + "}")
            }
            // --dry-run: what would be done, and nothing done.
            if dryRun { return }
            if let refusal { throw SpiritError(refusal) }
            var confirmed = !intent.tool.changesState
            if intent.tool.changesState {
                confirmed = yes || confirm("\(intent.tool.rawValue) \(intent.service ?? "")? [y/N] ")
                if !confirmed {
                    print("Nothing was done.")
                    code = 1
                }
            }
            let result = confirmed ? try perform(intent, services: services, paths: paths, supervisor: supervisor) : "not confirmed"
            if speak { try say(confirmed ? result : "Nothing was done.", to: speakTo) }
            if intent.tool.changesState || routedBy == "model" {
                log(paths: paths, text: text, intent: intent, routedBy: routedBy, confirmed: confirmed, result: result)
            }
        }
        return status != 0 ? status : code
    }

    /// A spoken request, decoded by PocketSphinx against the grammar of
    /// what `spirit ask` knows (VoiceCommands).
    static func hear(_ file: String, services: [String]) throws -> String {
        let recogniser = "/usr/bin/pocketsphinx_continuous", model = "/usr/share/pocketsphinx/model/en-us"
        guard Kernel.exists(recogniser), Kernel.exists(model + "/cmudict-en-us.dict") else {
            throw SpiritError("--listen needs Debian's pocketsphinx and its en-us model (the ai layer carries them): no \(recogniser) here")
        }
        let format: WAVFormat
        do {
            format = try WAVFormat.parse(try Kernel.readHead(file, count: 256))
        } catch {
            throw SpiritError("--listen \(file): \(error)")
        }
        let words = VoiceCommands.words(services: services)
        let dictionary = VoiceCommands.dictionary(words: words, cmudict: try Kernel.readText(model + "/cmudict-en-us.dict"))
        let directory = "/run/spirit/ask"
        try Kernel.makeDirectory(directory, parents: true)
        try Kernel.writeFile(directory + "/requests.gram", VoiceCommands.grammar(services: services.filter { !dictionary.missing.contains($0) }))
        try Kernel.writeFile(directory + "/requests.dict", dictionary.text)
        let run = try Spawn.capture(recogniser, ["pocketsphinx_continuous", "-infile", file, "-samprate", String(format.sampleRate),
                                                 "-nfft", String(format.fftSize), "-jsgf", directory + "/requests.gram",
                                                 "-dict", directory + "/requests.dict", "-logfn", "/dev/null"], milliseconds: 60_000)
        guard run.status == .exited(0), !run.timedOut else {
            throw SpiritError("pocketsphinx \(run.timedOut ? "took more than 60 s" : run.status?.description ?? "ended") on \(file): \(run.text.prefix(200))")
        }
        let text = VoiceCommands.transcript(run.text)
        guard !text.isEmpty else { throw SpiritError("nothing in \(file) was heard as a request (try: restart SERVICE, what is using the most memory)") }
        FileHandleless.writeError("heard: \(text)\n")
        return text
    }

    /// The answer spoken by espeak-ng, or written to a WAV file.
    static func say(_ text: String, to file: String?) throws {
        let speaker = "/usr/bin/espeak-ng"
        guard Kernel.exists(speaker) else { throw SpiritError("--speak needs Debian's espeak-ng (the ai layer carries it): no \(speaker) here") }
        let run = try Spawn.capture(speaker, ["espeak-ng"] + (file.map { ["-w", $0] } ?? []) + [String(text.prefix(2000))], milliseconds: 120_000)
        guard run.status == .exited(0) else { throw SpiritError("espeak-ng \(run.status?.description ?? "ended"): \(run.text.prefix(200))") }
    }

    static func confirm(_ question: String) -> Bool {
        FileHandleless.writeError(question)
        var line = [UInt8]()
        var byte: [UInt8] = [0]
        while (try? byte.withUnsafeMutableBytes { raw throws(SystemError) in try Kernel.read(0, into: raw, "the answer") }) == 1, byte[0] != 10 {
            line.append(byte[0])
        }
        return ["y", "yes"].contains(String(decoding: line, as: UTF8.self).trimmed.lowercased())
    }

    /// The model's reading, through the AI runtime's API.
    static func askModel(_ text: String, services: [String]) throws -> AskIntent {
        let answer: JSONValue
        do {
            answer = try AIAPI.post("/completion", body: AskGrammar.completionRequest(text, services: services))
        } catch {
            throw SpiritError("I could not read \"\(text)\" by myself, and the model could not help: \(error). "
                              + "Try words like: status, restart SERVICE, logs SERVICE, memory, timeline")
        }
        switch AskGrammar.intent(fromCompletion: answer, services: services) {
        case .success(let intent): return intent
        case .failure(let refusal): throw SpiritError("\(refusal); nothing was done")
        }
    }

    static func perform(_ intent: AskIntent, services: [ServiceSummary], paths: AIPaths, supervisor: String) throws -> String {
        let rows = services.map { (name: $0.name, state: $0.state, restarts: $0.restarts, why: $0.why) }
        let answer: String
        switch intent.tool {
        case .status:
            answer = AskAnswers.status(rows, only: intent.service)
        case .memory:
            answer = memoryAnswer(services: services.map(\.name))
        case .logs:
            answer = try controlRequest("logs \(intent.service!) \(intent.lines ?? 20)", to: supervisor, server: "supervisor").trimmed
        case .start, .stop, .restart:
            let name = intent.service!
            _ = try controlRequest("\(intent.tool.rawValue) \(name)", to: supervisor, server: "supervisor")
            // Said once it has settled (running, stopped, failed), within 10 s.
            let deadline = Kernel.bootTimeMicros() + 10_000_000
            var after = (try? supervisedServices(socket: supervisor))?.first { $0.name == name }
            while let state = after?.state, ["stopping", "starting", "waiting", "backoff"].contains(state), Kernel.bootTimeMicros() < deadline {
                Kernel.sleep(milliseconds: 100)
                after = (try? supervisedServices(socket: supervisor))?.first { $0.name == name }
            }
            answer = "\(intent.tool.rawValue) \(name): done" + (after.map { "; it is \($0.state) now" } ?? "") + "."
        case .timeline:
            // The boot timeline's table, as `spirit timeline` prints it.
            guard TimelineCommand.run([]) == 0 else { throw SpiritError("the boot timeline could not be read") }
            return "timeline shown"
        case .models:
            let models = ModelStore(paths: paths, console: Console.tool).list()
            answer = models.isEmpty ? "No model is here (spirit ai pull adds one)."
                : "Models: " + models.map { "\($0.name) (\($0.size >> 20) MiB, \($0.license))" }.joined(separator: ", ") + "."
        case .none:
            answer = "That is not something I can do here. I can tell the status of services, show their logs, start, stop or restart them, "
                + "and say what uses memory."
        }
        print(answer)
        return answer
    }

    static func memoryAnswer(services: [String]) -> String {
        let cgroups = services.map { name -> (name: String, bytes: Int64) in
            let text = (try? Kernel.readText("/sys/fs/cgroup/spirit/\(name)/memory.current")) ?? ""
            return (name, Int64(text.trimmed) ?? 0)
        }
        var processes: [AskAnswers.ProcessMemory] = []
        for entry in Kernel.directoryEntries("/proc") {
            guard let pid = Int(entry.name), let status = try? Kernel.readText("/proc/\(pid)/status") else { continue }
            var name = "?", rss: Int64 = 0
            for line in status.split(separator: "\n") {
                if line.hasPrefix("Name:") { name = String(line.dropFirst(5)).trimmed }
                if line.hasPrefix("VmRSS:") { rss = Int64(line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0 }
            }
            if rss > 0 { processes.append(.init(pid: pid, command: name, rssKiB: rss)) }
        }
        let memory = (try? Kernel.readText("/proc/meminfo")).flatMap { try? MemoryInfo.parse($0) }
        return AskAnswers.memory(services: cgroups, processes: processes, totalKiB: memory.map { Int64($0.total >> 10) },
                                 availableKiB: memory.map { Int64($0.available >> 10) })
    }

    static func log(paths: AIPaths, text: String, intent: AskIntent, routedBy: String, confirmed: Bool, result: String) {
        let line = "{\"time\":\(jsonString(utcText(Int64(time(nil))))),\"prompt\":\(jsonString(text)),\"tool\":\(jsonString(intent.tool.rawValue)),"
            + "\"service\":\(intent.service.map(jsonString) ?? "null"),\"routed_by\":\(jsonString(routedBy)),\"confirmed\":\(confirmed),"
            + "\"result\":\(jsonString(String(result.prefix(400))))}\n"
        if let slash = paths.askLog.lastIndex(of: "/") { try? Kernel.makeDirectory(String(paths.askLog[..<slash]), parents: true) }
        try? Kernel.writeFile(paths.askLog, line, append: true)
        // The journal holds the actions (what changed the machine), not the questions.
        guard intent.tool.changesState else { return }
        JournalFile(directory: paths.root + "/run/log", process: "ask")
            .append("ask.action", [("tool", intent.tool.rawValue), ("service", intent.service ?? ""), ("prompt", text),
                                   ("routed_by", routedBy), ("confirmed", "\(confirmed)"), ("result", String(result.prefix(400)))])
    }
}
