import Testing
@testable import Nodus

@Suite struct DiscoveryTests {
    let offer = Discovery.Offer(host: "10.0.2.15", port: 10809, protocolVersion: 1, sha256: String(repeating: "ab", count: 32),
                                imageVersion: "0.1.0", buildTime: 1_700_000_000, size: 44_040_192)

    @Test func bareSeekGetsTheSeedAnswer() {
        let seek = Discovery.parseSeek(Array("CROM_SPIRIT_SEEK".utf8))
        #expect(seek == .bare)
        #expect(Discovery.parseSeek(Array("CROM_SPIRIT_SEEK\n".utf8)) == .bare)
        let answer = Discovery.answer(to: .bare, offer: offer)!
        #expect(String(decoding: answer, as: UTF8.self) == "CROM_SPIRIT_HERE:10.0.2.15:10809")
        // A seeker reading only the seed format finds the peer.
        let parsed = Discovery.parseAnswer(answer)
        #expect(parsed == Discovery.Offer(host: "10.0.2.15", port: 10809))
    }

    @Test func extendedSeekGetsTheImageDetailsWithinItsOwnSize() {
        let datagram = Discovery.seekDatagram(extended: true)
        #expect(datagram.count == Discovery.extendedSeekSize)
        let seek = Discovery.parseSeek(datagram)
        #expect(seek == .extended(version: 1, size: Discovery.extendedSeekSize))
        let answer = Discovery.answer(to: seek!, offer: offer)!
        #expect(answer.count <= datagram.count)
        #expect(String(decoding: answer, as: UTF8.self).hasPrefix("CROM_SPIRIT_HERE:10.0.2.15:10809\nv=1\n"))
        #expect(Discovery.parseAnswer(answer) == offer)
        // A short "extended" seek cannot buy a long answer: it gets the bare one.
        let short = Discovery.parseSeek(Array("CROM_SPIRIT_SEEK\nv=1".utf8))!
        #expect(Discovery.answer(to: short, offer: offer).map { String(decoding: $0, as: UTF8.self) } == "CROM_SPIRIT_HERE:10.0.2.15:10809")
    }

    @Test func malformedDatagramsAreNotSeeksOrAnswers() {
        for text in ["", "CROM_SPIRIT_SEEKX", "crom_spirit_seek", "HELLO", "CROM_SPIRIT_SEEK\u{1}", "CROM_SPIRIT_HERE:1.2.3.4:80"] {
            #expect(Discovery.parseSeek(Array(text.utf8)) == nil, "\(text)")
        }
        #expect(Discovery.parseSeek([UInt8](repeating: 65, count: Discovery.maxDatagram + 1)) == nil)
        for text in ["CROM_SPIRIT_HERE:1.2.3.4", "CROM_SPIRIT_HERE::80", "CROM_SPIRIT_HERE:1.2.3.4:0", "CROM_SPIRIT_HERE:1.2.3.4:99999",
                     "CROM_SPIRIT_HERE:host name:80", "CROM_SPIRIT_SEEK", "CROM_SPIRIT_HERE:1.2.3.4:80x"] {
            #expect(Discovery.parseAnswer(Array(text.utf8)) == nil, "\(text)")
        }
        // A bad SHA-256 is left out rather than trusted.
        let answer = "CROM_SPIRIT_HERE:1.2.3.4:80\nv=1\nsha256=xyz\nversion=2"
        #expect(Discovery.parseAnswer(Array(answer.utf8))?.sha256 == nil)
        #expect(Discovery.parseAnswer(Array(answer.utf8))?.imageVersion == "2")
    }

    @Test func theNewestNamedImageIsChosen() {
        var older = offer
        older.host = "10.0.0.1"
        older.buildTime = 1
        let bare = Discovery.Offer(host: "10.0.0.2", port: 10809)
        var newer = offer
        newer.host = "10.0.0.3"
        newer.buildTime = 2_000_000_000
        #expect(Discovery.choose([bare, older, newer, offer])?.host == "10.0.0.3")
        #expect(Discovery.choose([bare])?.host == "10.0.0.2")
        #expect(Discovery.ranked([bare, older, newer]).map(\.host) == ["10.0.0.3", "10.0.0.1", "10.0.0.2"])
        #expect(Discovery.choose([]) == nil)
    }

    @Test func answersAreRateLimitedPerSource() {
        var limiter = RateLimiter(burst: 3, perSecond: 1, maxSources: 4)
        let allowed = (0..<10).filter { _ in limiter.allow(1, nowMicros: 0) }.count
        #expect(allowed == 3)
        let other = limiter.allow(2, nowMicros: 0)
        #expect(other) // another source has its own bucket
        let tooSoon = limiter.allow(1, nowMicros: 500_000)
        #expect(!tooSoon)
        let refilled = limiter.allow(1, nowMicros: 1_000_000)
        #expect(refilled)
        for source in UInt32(10)..<20 { _ = limiter.allow(source, nowMicros: Int64(source) * 1_000_000) }
        #expect(limiter.sources <= 4)
    }
}

/// When a seeker sends and stops (DiscoveryWindow), on a clock in microseconds.
@Suite struct DiscoveryWindowTests {
    @Test func withoutQuietTheWholeWindowIsHeardAndSeeksGoOutEvenly() {
        var window = DiscoveryWindow(start: 0, windowMillis: 1500, attempts: 3)
        #expect(sends(&window, 0))
        #expect(!sends(&window, 0))
        #expect(window.wake(10) == 500_000)
        window.newPeer(20)
        #expect(window.closesAt == 1_500_000)
        #expect(sends(&window, 500_000))
        #expect(sends(&window, 1_000_000))
        #expect(!sends(&window, 1_200_000))
        #expect(window.wake(1_200_000) == 1_500_000)
        #expect(window.wake(1_500_000) == nil)
    }

    @Test func withQuietTheWindowClosesOneRoundAfterTheLastNewPeer() {
        var window = DiscoveryWindow(start: 0, windowMillis: 1500, attempts: 3, quietMillis: 250)
        #expect(sends(&window, 0))
        // No answer: the whole window, as before.
        #expect(window.closesAt == 1_500_000)
        // A peer at 5 ms: the round at 500 ms still goes out, then 250 ms.
        window.newPeer(5_000)
        #expect(window.closesAt == 750_000)
        #expect(window.wake(10_000) == 500_000)
        #expect(sends(&window, 500_000))
        #expect(window.wake(500_100) == 750_000)
        // A second peer answering that round: the round at 1000 ms, then 250 ms.
        window.newPeer(502_000)
        #expect(window.closesAt == 1_250_000)
        #expect(sends(&window, 1_000_000))
        #expect(window.wake(1_250_000) == nil)
        // After the last round: 250 ms after the answer, never past the end.
        window.newPeer(1_100_000)
        #expect(window.closesAt == 1_350_000)
        window.newPeer(1_400_000)
        #expect(window.closesAt == 1_500_000)
    }
}

private func sends(_ window: inout DiscoveryWindow, _ now: Int64) -> Bool { window.sendsNow(now) }
