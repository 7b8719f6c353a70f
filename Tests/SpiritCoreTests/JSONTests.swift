import SpiritCore
import Testing

@Suite struct JSONTests {
    @Test func parsesEveryKind() throws {
        let value = try JSONReader.parse(#" {"a": [1, -2.5e3, true, false, null], "b": {"c": "d\n\u00e9\ud83d\ude00"}} "#)
        #expect(value["a"] == .array([.number(1, text: "1"), .number(-2500, text: "-2.5e3"), .bool(true), .bool(false), .null]))
        #expect(value["b"]?["c"]?.string == "d\né😀")
    }

    @Test(arguments: ["", "{", "{\"a\"}", "[1,]", "01", "\"\\x\"", "\"a", "{} x", "\"\u{01}\"", "\"\\ud800\"", "-", "1."])
    func rejects(_ text: String) {
        #expect(throws: JSONError.self) { try JSONReader.parse(text) }
    }

    @Test func refusesDeepNesting() {
        #expect(throws: JSONError.self) { try JSONReader.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)) }
    }

    @Test func hex() {
        #expect(Hex.encode([0x00, 0xAB, 0xFF]) == "00abff")
        #expect(Hex.decode("00abFF") == [0x00, 0xAB, 0xFF])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}
