import CMuJS
import SpiritCore

/// A widget's script failed: its reason, as the widget shows it.
public struct ScriptError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What runs a scripted widget: the script is evaluated, then its
/// `widget()` is called and returns the widget's lines (an array of
/// strings, or one string with line breaks). mujs today, behind this so
/// the engine can change.
public protocol ScriptEngine {
    func lines(ofScript source: String, named name: String) -> Result<[String], ScriptError>
}

/// mujs (Debian's libmujs.a, ES5), one fresh interpreter a run. Scripts
/// get one function of Spirit's: `read(path)`, a file's text (undefined
/// when it cannot be read), for /proc, /sys and /run/spirit. Every value
/// is read back with js_trystring, which cannot raise a JavaScript error
/// into Swift frames.
public struct MuJSEngine: ScriptEngine {
    public init() {}

    public func lines(ofScript source: String, named name: String) -> Result<[String], ScriptError> {
        guard let state = js_newstate(nil, nil, Int32(JS_STRICT)) else { return .failure(ScriptError("\(name): no memory for the script engine")) }
        defer { js_freestate(state) }
        js_newcfunction(state, { state in
            let path = String(cString: js_trystring(state, 1, ""))
            if let text = try? Kernel.readText(path) { js_pushstring(state, text) } else { js_pushundefined(state) }
        }, "read", 1)
        js_setglobal(state, "read")

        func failure(_ what: String) -> Result<[String], ScriptError> {
            let message = String(cString: js_trystring(state, -1, "an error that cannot be shown"))
            return .failure(ScriptError("\(name): \(what)\(message)"))
        }
        if js_ploadstring(state, name, source) != 0 { return failure("") }
        js_pushundefined(state)
        if js_pcall(state, 0) != 0 { return failure("") }
        js_pop(state, 1)
        js_getglobal(state, "widget")
        guard js_iscallable(state, -1) != 0 else { return .failure(ScriptError("\(name): defines no function widget()")) }
        js_pushundefined(state)
        if js_pcall(state, 0) != 0 { return failure("widget(): ") }
        if js_isarray(state, -1) != 0 {
            var lines: [String] = []
            for index in 0..<js_getlength(state, -1) {
                js_getindex(state, -1, index)
                lines.append(String(cString: js_trystring(state, -1, "?")))
                js_pop(state, 1)
            }
            return .success(lines)
        }
        if js_isstring(state, -1) != 0 {
            return .success(String(cString: js_trystring(state, -1, "")).split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        }
        return .failure(ScriptError("\(name): widget() returned neither a string nor an array of strings"))
    }
}
