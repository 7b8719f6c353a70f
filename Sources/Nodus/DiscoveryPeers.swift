import Glibc
import SpiritCore
import Synchronization
import SystemPackage

/// Answers seeks on the discovery port with the address of the interface
/// each one came in on (IP_PKTINFO), so that a peer with several networks
/// gives each seeker an address it can reach.
public final class DiscoveryResponder: Sendable {
    let socket: Socket
    /// What is offered; `host` is filled in per seek (empty: from IP_PKTINFO).
    let offer: Discovery.Offer
    let console: Console
    let limiter = Mutex(RateLimiter())
    let counters = Mutex(Counters())

    public struct Counters: Sendable, Equatable {
        public var answered = 0
        public var malformed = 0
        public var rateLimited = 0
    }

    public init(port: Int, offer: Discovery.Offer, console: Console) throws(SystemError) {
        socket = try Socket.bindUDP(SocketAddress(ipv4: 0, port: port), broadcast: true)
        do {
            try socket.enablePacketInfo()
        } catch {
            socket.close()
            throw error
        }
        self.offer = offer
        self.console = console
    }

    public var snapshot: Counters { counters.withLock { $0 } }

    /// Answers until the socket fails; returns why. Counters are reported
    /// on the log when they change, at most every `reportSeconds`.
    public func serve(reportSeconds: Int64 = 10) -> SystemError {
        var buffer = [UInt8](repeating: 0, count: Discovery.maxDatagram + 1)
        var reported = Counters()
        var reportedAt: Int64 = 0
        while true {
            do {
                let received = try buffer.withMutableBytes { raw throws(SystemError) in try socket.receiveDatagram(into: raw) }
                answer(Array(buffer[0..<received.count]), from: received.from, local: received.local, now: Kernel.bootTimeMicros())
            } catch {
                guard error.errno == .messageTooLong else { return error }
                counters.withLock { $0.malformed += 1 }
            }
            let now = Kernel.bootTimeMicros()
            let current = snapshot
            if current != reported, now - reportedAt >= reportSeconds * 1_000_000 {
                console.info("nodus: discovery: \(current.answered) answered, \(current.malformed) malformed dropped, "
                    + "\(current.rateLimited) rate-limited")
                reported = current
                reportedAt = now
            }
        }
    }

    func answer(_ datagram: [UInt8], from sender: SocketAddress, local: UInt32, now: Int64) {
        guard let seek = Discovery.parseSeek(datagram) else {
            counters.withLock { $0.malformed += 1 }
            return
        }
        guard limiter.withLock({ $0.allow(sender.ipv4, nowMicros: now) }) else {
            counters.withLock { $0.rateLimited += 1 }
            return
        }
        var offer = self.offer
        if offer.host.isEmpty {
            guard local != 0 else { return } // no address to give: a seek on an interface without IPv4
            offer.host = SocketAddress(ipv4: local, port: 0).host
        }
        guard let answer = Discovery.answer(to: seek, offer: offer) else { return }
        do {
            try socket.send(answer, to: sender)
            counters.withLock { $0.answered += 1 }
        } catch {
            console.debug("nodus: discovery: \(error)")
        }
    }
}

/// Looks for peers: seeks sent to the broadcast address of every interface
/// that is up (or to given addresses), answers gathered for a window.
public enum DiscoverySeeker {
    /// The broadcast address of each IPv4 interface that is up and not the
    /// loopback, from getifaddrs(3).
    public static func broadcastTargets(port: Int = Discovery.port) -> [(interface: String, address: SocketAddress)] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var targets: [(String, SocketAddress)] = []
        var entry = list
        while let current = entry?.pointee {
            defer { entry = current.ifa_next }
            let flags = Int32(bitPattern: current.ifa_flags)
            guard flags & Int32(IFF_UP) != 0, flags & Int32(IFF_BROADCAST) != 0, flags & Int32(IFF_LOOPBACK) == 0,
                  let address = current.ifa_addr, Int32(address.pointee.sa_family) == AF_INET, let netmask = current.ifa_netmask
            else { continue }
            func ipv4(_ pointer: UnsafeMutablePointer<sockaddr>) -> UInt32 {
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            }
            // An address added without `broadcast` (as udhcpc scripts do)
            // has none: getifaddrs then gives 0.0.0.0 or the address itself.
            // The directed broadcast is the address with every host bit set.
            var broadcast = current.ifa_ifu.ifu_broadaddr.map(ipv4) ?? 0
            if broadcast == 0 || broadcast == ipv4(address) { broadcast = ipv4(address) | ~ipv4(netmask) }
            targets.append((String(cString: current.ifa_name), SocketAddress(ipv4: broadcast, port: port)))
        }
        return targets
    }

    /// Sends the seeks (bare and extended) to every target, `attempts`
    /// times spread over the window, and returns each peer once (its
    /// extended answer when it gave one), in the order they answered. With
    /// `quietMilliseconds`, the window ends that long after the last new
    /// peer answered (see DiscoveryWindow).
    public static func seek(targets: [SocketAddress], windowMilliseconds: Int, attempts: Int = 3,
                            quietMilliseconds: Int? = nil) throws(SystemError) -> [Discovery.Offer] {
        let socket = try Socket.bindUDP(SocketAddress(ipv4: 0, port: 0), broadcast: true)
        defer { socket.close() }
        var window = DiscoveryWindow(start: Kernel.bootTimeMicros(), windowMillis: windowMilliseconds, attempts: attempts,
                                     quietMillis: quietMilliseconds)
        var offers: [Discovery.Offer] = []
        var buffer = [UInt8](repeating: 0, count: Discovery.maxDatagram + 1)
        while true {
            let now = Kernel.bootTimeMicros()
            if window.sendsNow(now) {
                for target in targets {
                    for extended in [false, true] {
                        do {
                            try socket.send(Discovery.seekDatagram(extended: extended), to: target)
                        } catch {
                            // A target without a route: the others may still answer.
                            if window.sent == 1 && !extended { Console.tool.debug("\(error)") }
                        }
                    }
                }
                continue
            }
            guard let wake = window.wake(now) else { break }
            guard try socket.waitReadable(milliseconds: Int(max(1, (wake - now + 999) / 1000))) else { continue }
            let n = (try? buffer.withMutableBytes { raw throws(SystemError) in try socket.readIfReady(into: raw) }) ?? nil
            guard let n, n > 0, let offer = Discovery.parseAnswer(Array(buffer[0..<n])) else { continue }
            if let index = offers.firstIndex(where: { $0.host == offer.host && $0.port == offer.port }) {
                if offers[index].protocolVersion == nil { offers[index] = offer }
            } else {
                offers.append(offer)
                window.newPeer(Kernel.bootTimeMicros())
            }
        }
        return offers
    }
}

/// When a seeker sends and when it stops listening (CLOCK_BOOTTIME
/// microseconds), with no I/O. Seeks go out `attempts` times evenly over
/// the window. Without `quietMillis` the window is listened to whole
/// (`spirit nodus seek`, which lists every peer); with it, once a peer
/// answered, the window stays open for one more round of seeks (for a peer
/// whose first answer was lost) and then that long: peers on one LAN answer
/// within milliseconds of each other, so a boot that heard one does not
/// wait out the rest of a window sized for a peer that answers late or
/// not at all.
public struct DiscoveryWindow: Sendable {
    public let start: Int64
    public let end: Int64
    let spacing: Int64
    let attempts: Int
    let quietMicros: Int64?
    public private(set) var sent = 0
    public private(set) var lastNewPeer: Int64?

    public init(start: Int64, windowMillis: Int, attempts: Int, quietMillis: Int? = nil) {
        self.start = start
        end = start + Int64(windowMillis) * 1000
        self.attempts = max(1, attempts)
        spacing = Int64(windowMillis) * 1000 / Int64(max(1, attempts))
        quietMicros = quietMillis.map { Int64($0) * 1000 }
    }

    /// When listening stops: the window's end, or sooner once a peer
    /// answered: `quiet` after the first round of seeks due at or after
    /// the last new peer's answer (after the answer itself once every round
    /// went out).
    public var closesAt: Int64 {
        guard let lastNewPeer, let quietMicros else { return end }
        let round = spacing > 0 ? (lastNewPeer - start + spacing - 1) / spacing : Int64(attempts)
        let nextRound = round < Int64(attempts) ? start + round * spacing : lastNewPeer
        return min(end, max(lastNewPeer, nextRound) + quietMicros)
    }

    /// Whether a round of seeks is due at `now` (counted as sent).
    public mutating func sendsNow(_ now: Int64) -> Bool {
        guard sent < attempts, now < closesAt, now >= start + Int64(sent) * spacing else { return false }
        sent += 1
        return true
    }

    /// Until when to wait for an answer at `now`: the next round of seeks
    /// or the window's close; nil once it has closed.
    public func wake(_ now: Int64) -> Int64? {
        guard now < closesAt else { return nil }
        return sent < attempts ? min(start + Int64(sent) * spacing, closesAt) : closesAt
    }

    public mutating func newPeer(_ now: Int64) { lastNewPeer = now }
}
