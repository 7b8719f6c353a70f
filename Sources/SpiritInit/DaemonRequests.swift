import Glibc
import SpiritCore

// What the commands of a running system share: the daemons' `--root` and
// their control sockets (stage 2 only, so not in the boot binary).

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
    do throws(ServiceSummary.Unread) {
        return try ServiceSummary.query(socket: socket)
    } catch {
        switch error {
        case .refused(_, let message): throw SpiritError("the supervisor did not answer status json: \(message)")
        case .broken(let why): throw why
        }
    }
}
