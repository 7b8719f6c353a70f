import SpiritCore
import Testing

/// The reader itself is tested through the service files (SupervisorTests);
/// these cover what Nexus added: table headers with their lines, and typed reads.
@Suite struct ConfigFileTests {
    @Test func tablesKeepTheirOrderAndLines() throws {
        let file = try ConfigFile.parse("mode = \"dashboard\"\n\n[cpu]\ncolumn = 0\n# a comment\n[memory]\nrefresh-ms = 500\n", path: "nexus.toml")
        #expect(file.tables.map(\.name) == ["cpu", "memory"] && file.tables.map(\.line) == [3, 6])
        #expect(file.entries.map(\.key) == ["mode", "cpu.column", "memory.refresh-ms"])
    }

    @Test func typedReadsNameTheLineAndTheField() throws {
        let file = try ConfigFile.parse("a = 1\nb = \"x\"\nc = true\nd = [\"p\"]\n", path: "f.toml")
        #expect(try file.integer("a", in: 0...5) == 1)
        #expect(try file.string("b")?.value == "x")
        #expect(try file.bool("c") == true)
        #expect(try file.strings("d") == ["p"])
        #expect(try file.integer("missing", in: 0...1) == nil)
        #expect(throws: ConfigError(path: "f.toml", line: 1, field: "a", "1 is out of range (2–5)")) { try file.integer("a", in: 2...5) }
        #expect(throws: ConfigError(path: "f.toml", line: 2, field: "b", "expected an integer, found a string")) { try file.integer("b", in: 0...5) }
        #expect(throws: ConfigError(path: "f.toml", line: 1, field: "a", "expected true or false, found an integer")) { try file.bool("a") }
        #expect(throws: ConfigError(path: "f.toml", line: 3, field: "c", "expected a string, found a boolean")) { try file.string("c") }
        #expect(throws: ConfigError(path: "f.toml", line: 1, field: "a", "expected an array of strings, found an integer")) { try file.strings("a") }
    }
}
