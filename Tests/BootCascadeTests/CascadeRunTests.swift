import BootCascade
import Glibc
import Overlay
import SpiritCore
import Testing

/// The cascade with fake sources on real threads: signatures checked before
/// the engine hears of an image, refusals going on, forced modes, and every
/// unused image let go.
@Suite struct CascadeRunTests {
    final class Releases: @unchecked Sendable {
        let monitor = Monitor()
        private var names: [String] = []
        func add(_ name: String) { monitor.withLock { names.append(name) } }
        var all: [String] { monitor.withLock { names.sorted() } }

        /// The releases once they are `expected`, or after 5 s: a source
        /// that reports after the cascade chose (a loaded machine can delay
        /// its thread past the other's) is let go by its own thread.
        func settled(at expected: [String]) -> [String] {
            let deadline = Kernel.bootTimeMicros() + 5_000_000
            while all != expected && Kernel.bootTimeMicros() < deadline { Kernel.sleep(milliseconds: 10) }
            return all
        }
    }

    struct FakeSource: BootSource {
        let name: SourceName
        let timeoutMicros: Int64 = 5_000_000
        let delayMillis: Int
        let manifest: Manifest?
        let releases: Releases

        func locate(_ context: SourceContext) throws -> FoundImage {
            Kernel.sleep(milliseconds: delayMillis)
            guard let manifest else { throw SpiritError("nothing here") }
            let name = name
            let releases = releases
            return FoundImage(source: name, origin: "fake \(name)", manifest: manifest,
                              openImage: { throw SpiritError("not read in this test") }, release: { releases.add(name.rawValue) })
        }
    }

    let key = SigningKey.generate()
    let other = SigningKey.generate()

    func manifest(signedWith privateKey: [UInt8], version: String = "1") throws -> Manifest {
        try Manifest(image: "rootfs.squashfs", size: 1, sha256: String(repeating: "ab", count: 32), version: version, buildTime: 0)
            .signed(privateKey: privateKey)
    }

    func cascade(_ sources: [any BootSource], mode: BootMode = .auto, minimum: Version? = nil) -> Cascade {
        let directory = "/tmp/spirit-cascade-test-\(getpid())"
        return Cascade(sources: sources, mode: mode, trust: .success(ImageTrust(publicKey: key.publicKey, minimumVersion: minimum)), console: Console(kmsgPath: nil, output: 2),
                       devices: DeviceActivity(listening: false), timeline: Timeline(directory: directory, process: "test"))
    }

    @Test func aBadSignatureIsRefusedAndARefusedImageMovesOn() throws {
        let releases = Releases()
        let sources: [any BootSource] = [
            FakeSource(name: "parasite", delayMillis: 10, manifest: try manifest(signedWith: other.privateKey), releases: releases),
            FakeSource(name: "usb", delayMillis: 50, manifest: try manifest(signedWith: key.privateKey), releases: releases),
            FakeSource(name: "http", delayMillis: 0, manifest: try manifest(signedWith: key.privateKey), releases: releases),
        ]
        var used: [SourceName] = []
        let found = try cascade(sources).run { found in
            used.append(found.source)
            if found.source == "usb" { throw Cascade.Refusal("the image does not match its manifest") }
        }
        // usb was waited for although http was ready first; refused, then http.
        #expect(used == ["usb", "http"])
        #expect(found.source == "http")
        // The badly signed one was let go at once; usb by the refusal's caller.
        #expect(releases.all == ["parasite"])
    }

    @Test func aForcedSourceThatFailsIsTheRescueReason() throws {
        let releases = Releases()
        let sources: [any BootSource] = [
            FakeSource(name: "usb", delayMillis: 0, manifest: nil, releases: releases),
            FakeSource(name: "http", delayMillis: 0, manifest: try manifest(signedWith: key.privateKey), releases: releases),
        ]
        do {
            _ = try cascade(sources, mode: .usb).run { _ in Issue.record("nothing may be used") }
            Issue.record("the cascade did not fail")
        } catch let failure as Cascade.Failure {
            #expect(failure.reason == "crom.mode=usb allows only the usb source, and it found no usable image: nothing here")
            #expect(failure.sources.map(\.source) == ["usb"])
        }
    }

    @Test func unusedImagesAreLetGo() throws {
        let releases = Releases()
        let sources: [any BootSource] = [
            FakeSource(name: "parasite", delayMillis: 30, manifest: try manifest(signedWith: key.privateKey), releases: releases),
            FakeSource(name: "usb", delayMillis: 0, manifest: try manifest(signedWith: key.privateKey), releases: releases),
        ]
        let found = try cascade(sources).run { _ in }
        #expect(found.source == "parasite")
        #expect(releases.settled(at: ["usb"]) == ["usb"])
    }

    @Test func anImageBelowTheMinimumIsRefusedOnEverySource() throws {
        let releases = Releases()
        let minimum = try Version(parsing: "0.1.0")
        // The most preferred source offers a replayed old image: refused
        // before the engine hears of it, and the next source is used.
        let sources: [any BootSource] = [
            FakeSource(name: "parasite", delayMillis: 0, manifest: try manifest(signedWith: key.privateKey, version: "0.0.9"),
                       releases: releases),
            FakeSource(name: "usb", delayMillis: 20, manifest: try manifest(signedWith: key.privateKey, version: "0.1.0"),
                       releases: releases),
        ]
        let found = try cascade(sources, minimum: minimum).run { _ in }
        #expect(found.source == "usb")
        #expect(releases.all == ["parasite"])

        // Every source old: the rescue, with each source's reason naming both versions.
        var old: [any BootSource] = []
        for name: SourceName in [.parasite, .usb, .http, .nodus] {
            old.append(FakeSource(name: name, delayMillis: 0, manifest: try manifest(signedWith: key.privateKey, version: "0.0.9"),
                                  releases: releases))
        }
        do {
            _ = try cascade(old, minimum: minimum).run { _ in Issue.record("nothing may be used") }
            Issue.record("the cascade did not fail")
        } catch let failure as Cascade.Failure {
            #expect(failure.reason == "no system image found (tried parasite, usb, http, nodus)")
            #expect(failure.sources.map(\.source) == ["parasite", "usb", "http", "nodus"])
            for (source, reason) in failure.sources {
                #expect(reason == "fake \(source): refused: the image's version 0.0.9 is below this initramfs's minimum 0.1.0 "
                        + "(a replayed old image is refused)")
            }
        }
    }

    @Test func anInitramfsThatCannotCheckRefusesEveryImage() throws {
        let releases = Releases()
        let sources: [any BootSource] = [
            FakeSource(name: "usb", delayMillis: 0, manifest: try manifest(signedWith: key.privateKey), releases: releases),
        ]
        let broken = Cascade(sources: sources, mode: .auto,
                             trust: .failure(SpiritError("this initramfs cannot check any image: /etc/spirit/minimum-version …")),
                             console: Console(kmsgPath: nil, output: 2), devices: DeviceActivity(listening: false),
                             timeline: Timeline(directory: "/tmp/spirit-cascade-test-\(getpid())", process: "test"))
        do {
            _ = try broken.run { _ in Issue.record("nothing may be used") }
            Issue.record("the cascade did not fail")
        } catch let failure as Cascade.Failure {
            #expect(failure.sources.first { $0.source == .usb }?.reason
                    == "fake usb: refused: this initramfs cannot check any image: /etc/spirit/minimum-version …")
        }
        #expect(releases.all == ["usb"])
    }
}
