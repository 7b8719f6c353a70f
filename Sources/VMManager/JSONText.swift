import SpiritCore

/// JSON text from a `JSONValue` (SpiritCore reads JSON; the VM manager also
/// writes it: QMP and agent commands, `vm list --json`, state records).
extension JSONValue {
    public var text: String {
        switch self {
        case .null: "null"
        case .bool(let flag): flag ? "true" : "false"
        case .number(_, let text): text
        case .string(let string): jsonString(string)
        case .array(let items): "[" + items.map(\.text).joined(separator: ", ") + "]"
        case .object(let members): "{" + members.map { jsonString($0.0) + ": " + $0.1.text }.joined(separator: ", ") + "}"
        }
    }

    public static func int<T: BinaryInteger>(_ value: T) -> JSONValue { .number(Double(value), text: String(value)) }
}
