import Glibc

/// One thread's event loop: poll(2) over the descriptors it watches, up to
/// the next deadline, then each ready descriptor's handler. The supervisor
/// runs on it, and so does every daemon: their signals (SignalQueue), their
/// control socket (ControlChannel), their pipes and their peers.
public final class EventLoop {
    struct Watch {
        var fd: CInt
        var token: Int
        var handler: (CInt) -> Void
    }

    var watches: [Watch] = []
    var nextToken = 0

    public init() {}

    /// Calls `handler` whenever `fd` is readable or hung up, until `unwatch`.
    /// Watching a descriptor again replaces its handler.
    public func watch(_ fd: CInt, _ handler: @escaping (CInt) -> Void) {
        unwatch(fd)
        nextToken += 1
        watches.append(Watch(fd: fd, token: nextToken, handler: handler))
    }

    public func unwatch(_ fd: CInt) {
        watches.removeAll { $0.fd == fd }
    }

    public func isWatching(_ fd: CInt) -> Bool { watches.contains { $0.fd == fd } }

    /// Waits until a watched descriptor is ready or `milliseconds` have
    /// passed (nil: no deadline), then runs the ready ones' handlers in the
    /// order they were watched. A handler may watch and unwatch: one whose
    /// descriptor was unwatched (or replaced) meanwhile is not called.
    public func runOnce(milliseconds: Int?) throws(SystemError) {
        var descriptors = watches.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        let snapshot = watches.map { ($0.fd, $0.token) }
        try Kernel.poll(&descriptors, milliseconds: milliseconds)
        for (index, ready) in descriptors.enumerated() where ready.revents != 0 {
            let (fd, token) = snapshot[index]
            guard let watch = watches.first(where: { $0.fd == fd && $0.token == token }) else { continue }
            watch.handler(fd)
        }
    }
}
