import SpiritCore

/// The model's half of `spirit ask`: a request the parser could not read
/// goes to the model with a JSON schema whose enums are the allowed tools
/// and the services that exist right now; llama-server turns the schema
/// into a grammar, so the answer cannot name another tool or a service
/// that is not there. The answer is still checked (AskIntent.refusal), and
/// anything that changes state is confirmed: a 135M model picks the wrong
/// verb often (research/ai-runtime.md 10: "restart nodus" came back as stop).
public enum AskSchema {
    public static func schema(services: [String]) -> String {
        let tools = AskTool.allCases.map { jsonString($0.rawValue) }.joined(separator: ",")
        let names = (services + [""]).map(jsonString).joined(separator: ",")
        return "{\"type\":\"object\",\"properties\":{\"tool\":{\"type\":\"string\",\"enum\":[\(tools)]},"
            + "\"service\":{\"type\":\"string\",\"enum\":[\(names)]}},\"required\":[\"tool\",\"service\"],\"additionalProperties\":false}"
    }

    static let system = """
        You turn a request about this computer into one action, as JSON. Tools: status (is a service running), logs (a \
        service's output), start, stop, restart (a service), memory (what uses memory), timeline (how long the boot took), \
        models (the AI models), none (anything else). service is one of the services or "".
        """

    static let examples: [(String, String)] = [
        ("is the network service ok", "{\"tool\":\"status\",\"service\":\"\"}"),
        ("please bring the HUD back", "{\"tool\":\"start\",\"service\":\"nexus\"}"),
        ("what's the weather like", "{\"tool\":\"none\",\"service\":\"\"}"),
    ]

    /// The body of a POST /v1/chat/completions: greedy (temperature 0),
    /// short, the system prompt and examples first so that llama-server's
    /// prompt cache keeps them between requests.
    public static func chatRequest(_ text: String, services: [String], maxTokens: Int = 40) -> String {
        var messages = ["{\"role\":\"system\",\"content\":\(jsonString(system + " Services: " + services.joined(separator: ", ") + "."))}"]
        for (question, answer) in examples {
            messages.append("{\"role\":\"user\",\"content\":\(jsonString(question))}")
            messages.append("{\"role\":\"assistant\",\"content\":\(jsonString(answer))}")
        }
        messages.append("{\"role\":\"user\",\"content\":\(jsonString(text))}")
        return "{\"messages\":[\(messages.joined(separator: ","))],\"temperature\":0,\"max_tokens\":\(maxTokens),\"stream\":false,"
            + "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"action\",\"schema\":\(schema(services: services))}}}"
    }

    /// The intent in a chat completion's answer, or why it is refused.
    public static func intent(fromCompletion body: [UInt8], services: [String]) -> Result<AskIntent, AskRefusal> {
        guard let document = try? JSONReader.parse(body) else { return .failure(AskRefusal("the AI runtime's answer is not JSON")) }
        return intent(fromCompletion: document, services: services)
    }

    public static func intent(fromCompletion document: JSONValue, services: [String]) -> Result<AskIntent, AskRefusal> {
        guard case .array(let choices)? = document["choices"], let content = choices.first?["message"]?["content"]?.string else {
            return .failure(AskRefusal("the AI runtime's answer is not a chat completion"))
        }
        return intent(fromContent: content, services: services)
    }

    public static func intent(fromContent content: String, services: [String]) -> Result<AskIntent, AskRefusal> {
        guard let object = try? JSONReader.parse(content), case .object = object else {
            return .failure(AskRefusal("the model's answer is not a JSON object: \(content.prefix(80))"))
        }
        guard case .object(let members) = object, Set(members.map(\.0)).isSubset(of: ["tool", "service"]) else {
            return .failure(AskRefusal("the model's answer has fields outside the schema: \(content.prefix(80))"))
        }
        guard let name = object["tool"]?.string, let tool = AskTool(rawValue: name) else {
            return .failure(AskRefusal("the model named no allowed tool: \(content.prefix(80))"))
        }
        let service = object["service"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        var intent = AskIntent(tool: tool, service: service)
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
