import SpiritCore

/// The model's half of `spirit ask`: a request the parser could not read
/// goes to the model as a few-shot completion ("request => tool service")
/// under a GBNF grammar whose alternatives are the allowed tools and the
/// services that exist right now, so the answer cannot name another tool or
/// a service that is not there. It is still checked (AskIntent.refusal),
/// and anything that changes state is confirmed.
///
/// Why this shape, measured with SmolLM2-135M on this machine: as a chat
/// with JSON examples it answered "none" for every request (it copies the
/// last example's answer); as a completion of plain lines it maps some
/// paraphrases right ("please reset the nodus" → restart nodus, "wake up
/// the vm manager" → start vm). The examples end with a "none" one, so that
/// what it copies when it cannot tell is the answer that does nothing.
public enum AskGrammar {
    /// `-` stands for "no service" (a grammar alternative cannot be empty).
    public static let noService = "-"

    public static func grammar(services: [String]) -> String {
        "root ::= \" \" tool \" \" service\n"
            + "tool ::= " + AskTool.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " | ") + "\n"
            + "service ::= " + (services + [noService]).map { "\"\($0)\"" }.joined(separator: " | ") + "\n"
    }

    static let examples: [(String, AskTool, String)] = [
        ("reset the vm", .restart, "vm"), ("check on nodus", .status, "nodus"), ("end the modules", .stop, "modules"),
        ("how much ram is used", .memory, noService), ("bring nexus back", .start, "nexus"), ("show what nexus printed", .logs, "nexus"),
        ("sing a song", .none, noService),
    ]

    /// The prompt: the same prefix every time (llama-server's prompt cache
    /// keeps it), then the request. Line breaks in the request are spaces.
    public static func prompt(_ text: String) -> String {
        "Requests to a computer, each turned into one action.\n"
            + examples.map { "\($0.0) => \($0.1.rawValue) \($0.2)\n" }.joined()
            + text.split(whereSeparator: \.isNewline).joined(separator: " ") + " =>"
    }

    /// The body of a POST /completion: greedy (temperature 0), a few tokens.
    public static func completionRequest(_ text: String, services: [String]) -> String {
        "{\"prompt\":\(jsonString(prompt(text))),\"temperature\":0,\"n_predict\":8,\"cache_prompt\":true,"
            + "\"grammar\":\(jsonString(grammar(services: services)))}"
    }

    /// The intent in a /completion answer (`{"content":" restart nodus",…}`),
    /// or why it is refused.
    public static func intent(fromCompletion document: JSONValue, services: [String]) -> Result<AskIntent, AskRefusal> {
        guard let content = document["content"]?.string else { return .failure(AskRefusal("the AI runtime's answer has no content")) }
        return intent(fromContent: content, services: services)
    }

    public static func intent(fromContent content: String, services: [String]) -> Result<AskIntent, AskRefusal> {
        let words = content.split(separator: " ").map(String.init)
        guard words.count == 2, let tool = AskTool(rawValue: words[0]) else {
            return .failure(AskRefusal("the model's answer is not a tool and a service: \(content.prefix(80))"))
        }
        var intent = AskIntent(tool: tool, service: words[1] == noService ? nil : words[1])
        if tool == .logs { intent.lines = 20 }
        if let refusal = intent.refusal(services: services) { return .failure(AskRefusal("the model's answer: \(refusal)")) }
        return .success(intent)
    }
}

public struct AskRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
