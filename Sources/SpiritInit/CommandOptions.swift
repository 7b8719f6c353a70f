import Glibc
import Nexus
import SpiritCore

/// A command's wrong use: said with the usage line, exit status 100.
struct UsageError: Error { var message: String }

/// A daemon command's leading `--root DIR` (else the environment variable
/// `variable`, else ""): the tree every path of the daemon hangs under.
/// Removes it from `words`.
func rootOption(_ words: inout [String], variable: String) -> String {
    if words.first == "--root", words.count >= 2 {
        defer { words.removeFirst(2) }
        return words[1]
    }
    return getenv(variable).map { String(cString: $0) } ?? ""
}

/// A command's `--name value` pairs and bare words, the one way Spirit's
/// commands read their arguments.
struct Options {
    var named: [String: String] = [:]
    var words: [String] = []

    init(_ arguments: [String]) throws(UsageError) {
        var rest = arguments[...]
        while let word = rest.popFirst() {
            if word.hasPrefix("--") {
                guard let value = rest.popFirst() else { throw UsageError(message: "\(word) needs a value") }
                named[String(word.dropFirst(2))] = value
            } else {
                words.append(word)
            }
        }
    }

    func required(_ name: String) throws(UsageError) -> String {
        guard let value = named[name] else { throw UsageError(message: "--\(name) is required") }
        return value
    }
}

/// Runs a command's body with the exit status contract: 0, 100 for a usage
/// error (said with the usage line), 111 for a failure (said as an error).
func exitStatus(_ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch let error as UsageError {
        return Usage.fail(error.message)
    } catch {
        Console.tool.error("\(error)")
        return 111
    }
}

/// One request to a daemon's control socket: its body, or its error as
/// thrown (`spirit ai status|load|unload`, `spirit ask`'s actions).
func controlRequest(_ request: String, to socket: String, server: String) throws -> String {
    var body: [UInt8] = []
    let head = ControlChannel.send(request, to: socket, server: server) { body += $0; return true }
    if case .error(_, let message) = head { throw SpiritError(message) }
    return String(decoding: body, as: UTF8.self)
}

/// The supervisor's services (`status json` on its control socket), for the
/// commands that act on them: `spirit layer add` restarts the ones that were
/// not applicable, the upgrade service's health check counts them.
func supervisedServices(socket: String = RunFiles.controlSocket) throws -> [ServiceSummary] {
    var body: [UInt8] = []
    let head = ControlChannel.send("status json", to: socket, server: "supervisor") { body += $0; return true }
    guard head == .ok else { throw SpiritError("the supervisor did not answer status json: \(head)") }
    return try ServiceSummary.parse(String(decoding: body, as: UTF8.self))
}
