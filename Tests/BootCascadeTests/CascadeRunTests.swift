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

    func manifest(signedWith privateKey: [UInt8]) throws -> Manifest {
        try Manifest(image: "rootfs.squashfs", size: 1, sha256: String(repeating: "ab", count: 32), version: "1", buildTime: 0)
            .signed(privateKey: privateKey)
    }

    func cascade(_ sources: [any BootSource], mode: BootMode = .auto) -> Cascade {
        let directory = "/tmp/spirit-cascade-test-\(getpid())"
        return Cascade(sources: sources, mode: mode, publicKey: .success(key.publicKey), console: Console(kmsgPath: nil, output: 2),
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
}
