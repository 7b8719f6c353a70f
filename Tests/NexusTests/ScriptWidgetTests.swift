@testable import Nexus
import Glibc
import SpiritCore
import Testing

@Suite struct ScriptWidgetTests {
    let engine = MuJSEngine()

    @Test func aScriptsWidgetGivesItsLines() {
        #expect(engine.lines(ofScript: "function widget() { return ['a', 'b' + (6 * 7)]; }", named: "w.js") == .success(["a", "b42"]))
        #expect(engine.lines(ofScript: "var n = 2; function widget() { return 'one\\ntwo ' + n; }", named: "w.js") == .success(["one", "two 2"]))
    }

    @Test func readGivesAFilesTextOrUndefined() throws {
        let path = "/tmp/spirit-script-\(Kernel.pid).txt"
        try Kernel.writeFile(path, "12.5 7.25\n")
        defer { Kernel.remove(path) }
        let script = "function widget() { return ['up ' + read('\(path)').split(' ')[0], String(read('/no/such/file'))]; }"
        #expect(engine.lines(ofScript: script, named: "w.js") == .success(["up 12.5", "undefined"]))
    }

    @Test func errorsAreSaidWithTheFileAndNeverThrown() {
        #expect(engine.lines(ofScript: "function widget( {", named: "bad.js")
                == .failure(ScriptError("bad.js: SyntaxError: bad.js:1: unexpected token: '{' (expected identifier)")))
        #expect(engine.lines(ofScript: "function widget() { return nope + 1; }", named: "r.js")
                == .failure(ScriptError("r.js: widget(): ReferenceError: 'nope' is not defined")))
        #expect(engine.lines(ofScript: "throw new Error('at load')", named: "t.js") == .failure(ScriptError("t.js: Error: at load")))
        #expect(engine.lines(ofScript: "var x = 1;", named: "n.js") == .failure(ScriptError("n.js: defines no function widget()")))
        #expect(engine.lines(ofScript: "function widget() { return 42; }", named: "k.js")
                == .failure(ScriptError("k.js: widget() returned neither a string nor an array of strings")))
    }

    @Test func theLayoutNamesTheScript() throws {
        let layout = try Layout.parse("""
            [hello]
            widget = "script"
            script = "hello.js"
            column = 0
            row = 0
            width = 4
            height = 2
            """, path: "nexus.toml")
        #expect(layout.widgets[0].script == "/etc/spirit/nexus/widgets/hello.js" && layout.widgets[0].title == "HELLO")
        #expect(throws: ConfigError.self) { try Layout.parse("[a]\nwidget = \"script\"\ncolumn = 0\nrow = 0\nwidth = 1\nheight = 1\n", path: "x") }
        #expect(throws: ConfigError.self) {
            try Layout.parse("[a]\nwidget = \"cpu\"\nscript = \"a.js\"\ncolumn = 0\nrow = 0\nwidth = 1\nheight = 1\n", path: "x")
        }
    }

    /// The runner, with a stand-in for `spirit nexus script` (a shell
    /// script): lines, a failure's own words, and a script stopped in time.
    @Test func theRunnerKeepsTheHUDOutOfAScriptsTrouble() throws {
        let fake = "/tmp/spirit-fake-\(Kernel.pid)"
        defer { Kernel.remove(fake) }
        var paths = ReadingPaths()
        paths.spirit = fake
        let readings = Readings(paths: paths)
        func run(_ body: String) throws -> WidgetContent {
            try Kernel.writeFile(fake, "#!/bin/sh\n" + body + "\n", mode: 0o755)
            return readings.runScript("/etc/spirit/nexus/widgets/x.js")
        }
        #expect(try run("echo one; echo two").lines == [TextLine("one"), TextLine("two")])
        #expect(try run("echo 'x.js: SyntaxError'; exit 1").lines == [TextLine("x.js: SyntaxError", .warning)])
        let start = Kernel.bootTimeMicros()
        #expect(try run("while :; do :; done").lines == [TextLine("/etc/spirit/nexus/widgets/x.js: stopped after 500 ms", .warning)])
        #expect(Kernel.bootTimeMicros() - start < 3_000_000)
    }
}

@Suite struct VMsWidgetTests {
    @Test func theVMManagersListBecomesALineAVM() {
        let answer = Array(#"{"vms":[{"name":"windows","state":"running","agent":"ready","memory-mib":4096,"saved":false},{"name":"testvm","state":"saved","agent":"none","memory-mib":512},{"state":"running"}]}"#.utf8) + [0x0A]
        let vms = VMSummary.parse(answer)
        #expect(vms == [VMSummary(name: "windows", state: "running", agent: "ready", memoryMiB: 4096),
                        VMSummary(name: "testvm", state: "saved", agent: "none", memoryMiB: 512)])
        let content = Widgets.vms(vms)
        #expect(content.lines.map(\.text) == ["windows  running  agent ready  4096 MiB", "testvm  saved  agent none  512 MiB"])
        #expect(content.lines.map(\.tone) == [.normal, .dim])
        #expect(Widgets.vms([]).lines.map(\.text) == ["no VMs defined"])
        #expect(Widgets.vms(nil).lines.map(\.text) == ["no VM manager here (the vm layer)"])
        #expect(VMSummary.parse(Array("not json".utf8)).isEmpty)
    }
}
