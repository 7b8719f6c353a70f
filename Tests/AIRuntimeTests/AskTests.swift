import AIRuntime
import SpiritCore
import Testing

struct AskParserTests {
    let services = ["modules", "nexus", "nodus", "upgrade", "vm", "ai", "sentinel"]

    @Test(arguments: [
        ("restart nodus", AskIntent(tool: .restart, service: "nodus")),
        ("please restart the nodus service", AskIntent(tool: .restart, service: "nodus")),
        ("stop nexus", AskIntent(tool: .stop, service: "nexus")),
        ("start the vm service", AskIntent(tool: .start, service: "vm")),
        ("show me the logs of modules", AskIntent(tool: .logs, service: "modules", lines: 20)),
        ("last 50 log lines of nodus", AskIntent(tool: .logs, service: "nodus", lines: 50)),
        ("what is using the most memory?", AskIntent(tool: .memory)),
        ("is nexus running?", AskIntent(tool: .status, service: "nexus")),
        ("how long did the boot take", AskIntent(tool: .timeline)),
        ("which services failed", AskIntent(tool: .status)),
        ("restart nodsu", AskIntent(tool: .restart, service: "nodus")),
        ("nexus", AskIntent(tool: .status, service: "nexus")),
        ("don't restart nodus", AskIntent(tool: .none, service: "nodus")),
    ])
    func clearRequestsMapToTheirExactAction(text: String, expected: AskIntent) {
        #expect(AskParser.parse(text, services: services) == expected, "\(text)")
    }

    @Test(arguments: ["what's the weather like", "restart", "restart nexus and nodus", "make it faster", "bounce it", "please reset the nodus"])
    func unclearRequestsGoToTheModel(text: String) {
        #expect(AskParser.parse(text, services: services) == nil, "\(text)")
    }

    @Test func theIntentIsCheckedAgainstTheLiveServices() {
        #expect(AskIntent(tool: .restart, service: "web").refusal(services: services)?.contains("there is no service web") == true)
        #expect(AskIntent(tool: .restart).refusal(services: services)?.contains("needs a service") == true)
        #expect(AskIntent(tool: .logs, service: "vm", lines: 500).refusal(services: services) != nil)
        #expect(AskIntent(tool: .memory).refusal(services: services) == nil)
        #expect(AskTool.restart.changesState && !AskTool.status.changesState && !AskTool.memory.changesState)
    }
}

struct AskGrammarTests {
    let services = ["nexus", "nodus"]

    @Test func theGrammarOffersTheToolsAndTheLiveServices() throws {
        #expect(AskGrammar.grammar(services: services) == """
            root ::= " " tool " " service
            tool ::= "status" | "logs" | "start" | "stop" | "restart" | "memory" | "timeline" | "models" | "none"
            service ::= "nexus" | "nodus" | "-"

            """)
        let request = try JSONReader.parse(AskGrammar.completionRequest("make the hud\ncome back", services: services))
        #expect(request["temperature"]?.integer == 0 && request["n_predict"]?.integer == 8)
        let prompt = request["prompt"]?.string ?? ""
        #expect(prompt.hasSuffix("sing a song => none -\nmake the hud come back =>"), "the examples end with the one that does nothing")
    }

    @Test func answersInsideTheGrammarAreTakenOthersRefused() {
        func completion(_ content: String) -> JSONValue { (try? JSONReader.parse("{\"content\":\(jsonString(content))}")) ?? .null }
        #expect(AskGrammar.intent(fromCompletion: completion(" restart nodus"), services: services) == .success(AskIntent(tool: .restart, service: "nodus")))
        #expect(AskGrammar.intent(fromCompletion: completion(" none -"), services: services) == .success(AskIntent(tool: .none)))
        #expect(AskGrammar.intent(fromCompletion: completion(" logs nexus"), services: services) == .success(AskIntent(tool: .logs, service: "nexus", lines: 20)))
        for bad in [" shell -", " restart web", "restart nodus now", " restart -", ""] {
            guard case .failure = AskGrammar.intent(fromCompletion: completion(bad), services: services) else {
                Issue.record("taken: \(bad)")
                continue
            }
        }
        guard case .failure = AskGrammar.intent(fromCompletion: .object([("error", .null)]), services: services) else {
            Issue.record("an error answer was taken")
            return
        }
    }
}

struct AskAnswersTests {
    @Test func memoryNamesTheLargestProcessAndServices() {
        let text = AskAnswers.memory(services: [("nexus", 12 << 20), ("nodus", 3 << 20), ("vm", 0)],
                                     processes: [.init(pid: 1, command: "spirit", rssKiB: 4000), .init(pid: 90, command: "llama-server", rssKiB: 190_000)],
                                     totalKiB: 1_000_000, availableKiB: 600_000)
        #expect(text.hasPrefix("The process using the most memory is llama-server (pid 90): 185 MiB resident."))
        #expect(text.contains("Services: nexus 12 MiB, nodus 3.0 MiB."))
        #expect(text.contains("Memory: 390 MiB in use of 976 MiB; 585 MiB available."))
    }

    @Test func statusSaysWhatIsInTrouble() {
        let rows: [(name: String, state: String, restarts: Int, why: String?)] = [
            ("nexus", "running", 0, nil), ("broken", "failed", 5, "crash loop"), ("nodus", "running", 2, nil)]
        #expect(AskAnswers.status(rows, only: nil) == "3 services: 1 failed, 2 running. In trouble: broken (crash loop).")
        #expect(AskAnswers.status(rows, only: "nodus") == "nodus is running, restarted 2 times.")
    }
}
