import BootCascade
import SpiritCore
import Testing

/// The engine alone: fake sources are names with timeouts, the clock is a
/// number, the candidates are strings.
@Suite struct CascadeEngineTests {
    typealias Engine = CascadeEngine<String>
    let all: [(name: SourceName, timeoutMicros: Int64)] = [("parasite", 2_000_000), ("usb", 12_000_000), ("http", 10_000_000)]

    func committed(_ decision: Engine.Decision) -> String? {
        if case .commit(let name, let candidate) = decision { return "\(name):\(candidate)" }
        return nil
    }

    func waitsUntil(_ decision: Engine.Decision) -> Int64? {
        if case .wait(let until) = decision { return until }
        return nil
    }

    func rescue(_ decision: Engine.Decision) -> String? {
        if case .rescue(let reason) = decision { return reason }
        return nil
    }

    @Test func autoRunsEverySourceAndListsTheOneThisBuildLacks() {
        let engine = Engine(mode: .auto, available: all, now: 0)
        #expect(engine.namesToStart == ["parasite", "usb", "http"])
        #expect(engine.reasons.map(\.source) == ["nodus"])
        #expect(engine.reasons.first?.reason == "this build has no nodus source")
    }

    @Test func waitsForAMorePreferredSourceWhileItCanStillSucceed() {
        var engine = Engine(mode: .auto, available: all, now: 0)
        // HTTP is ready first; parasite and usb are still looking.
        engine.report("http", .success("image-from-http"))
        #expect(waitsUntil(engine.decide(now: 1_000_000)) == 2_000_000)
        // Parasite gives up: now usb is the one waited for, until its deadline.
        engine.report("parasite", .failure(SpiritError("no NTFS partition")))
        #expect(waitsUntil(engine.decide(now: 1_500_000)) == 12_000_000)
        // Usb never answers: at its deadline it fails and http is used.
        #expect(committed(engine.decide(now: 12_000_000)) == "http:image-from-http")
        #expect(engine.reasons.map(\.source) == ["parasite", "usb", "nodus"])
        #expect(engine.reasons[1].reason == "found nothing within 12 s")
    }

    @Test func commitsAtOnceToTheMostPreferredReadySource() {
        var engine = Engine(mode: .auto, available: all, now: 0)
        engine.report("usb", .success("stick"))
        engine.report("parasite", .success("windows"))
        #expect(committed(engine.decide(now: 10)) == "parasite:windows")
        #expect(engine.readyCandidates(except: "parasite") == ["stick"])
    }

    @Test func aRefusedImageMovesTheCascadeOn() {
        var engine = Engine(mode: .auto, available: all, now: 0)
        engine.report("parasite", .failure(SpiritError("none")))
        engine.report("usb", .success("tampered"))
        engine.report("http", .success("good"))
        #expect(committed(engine.decide(now: 1)) == "usb:tampered")
        engine.refuse("usb", reason: "the image does not match its manifest")
        #expect(committed(engine.decide(now: 2)) == "http:good")
        engine.refuse("http", reason: "short body")
        let reason = rescue(engine.decide(now: 3))
        #expect(reason == "no system image found (tried parasite, usb, http, nodus)")
        #expect(engine.reasons.map(\.reason) == ["none", "the image does not match its manifest", "short body",
                                                 "this build has no nodus source"])
    }

    @Test func aForcedModeRunsOneSourceAndNeverFallsThrough() {
        var engine = Engine(mode: .usb, available: all, now: 0)
        #expect(engine.namesToStart == ["usb"])
        #expect(engine.forced == "usb")
        // Another source's report is ignored: it is not running.
        engine.report("http", .success("other"))
        #expect(waitsUntil(engine.decide(now: 5)) == 12_000_000)
        engine.report("usb", .failure(SpiritError("no block device labelled CROM_SPIRIT appeared")))
        #expect(rescue(engine.decide(now: 6)) == "crom.mode=usb allows only the usb source, and it found no usable image: "
            + "no block device labelled CROM_SPIRIT appeared")
    }

    @Test func aForcedSourceThisBuildLacksGoesToRescueAtOnce() {
        var engine = Engine(mode: .nodus, available: all, now: 0)
        #expect(engine.namesToStart.isEmpty)
        #expect(rescue(engine.decide(now: 0)) == "crom.mode=nodus: this build has no nodus source")
        #expect(engine.reasons.map(\.reason) == ["this build has no nodus source"])
    }

    @Test func rescueModeStartsNothing() {
        var engine = Engine(mode: .rescue, available: all, now: 0)
        #expect(engine.namesToStart.isEmpty)
        #expect(rescue(engine.decide(now: 0)) == "crom.mode=rescue asks for the rescue shell")
    }

    @Test func theFirstReportStands() {
        var engine = Engine(mode: .auto, available: all, now: 0)
        engine.report("parasite", .failure(SpiritError("first")))
        engine.report("parasite", .success("late"))
        #expect(engine.reasons.first?.reason == "first")
    }

    @Test func aFourthSourceSlotsIntoItsPlace() {
        var engine = Engine(mode: .auto, available: all + [("nodus", 10_000_000)], now: 0)
        #expect(engine.namesToStart == ["parasite", "usb", "http", "nodus"])
        engine.report("nodus", .success("peer"))
        engine.report("http", .failure(SpiritError("404")))
        engine.report("usb", .failure(SpiritError("none")))
        #expect(waitsUntil(engine.decide(now: 1)) == 2_000_000)
        #expect(committed(engine.decide(now: 2_000_000)) == "nodus:peer")
        #expect(engine.reasons.first?.reason == "found nothing within 2 s")
    }
}
