import SpiritCore
import Testing
@testable import Nodus

@Suite struct PeerSelectionTests {
    static let key = Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!
    static let otherKey = Hex.decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")!
    let trust = ImageTrust(publicKey: try! SigningKey.publicKey(forPrivateKey: key), minimumVersion: try! Version(parsing: "0.2.0"))

    func manifest(_ version: String, sha: Character = "a", built: Int64 = 100, key: [UInt8] = key) -> Manifest {
        try! Manifest(image: "rootfs.squashfs", size: 1000, sha256: String(repeating: sha, count: 64), version: version,
                      buildTime: built).signed(privateKey: key)
    }

    func peer(_ last: Int, _ manifest: Manifest?) -> PeerSelection.Candidate {
        let offer = Discovery.Offer(host: "10.0.0.\(last)", port: 10809)
        return PeerSelection.Candidate(offer: offer, manifest: manifest.map { .success($0) } ?? .failure(SpiritError("connection refused")))
    }

    @Test func theNewestTrustedVersionWinsAndEveryOtherIsSaid() throws {
        let candidates = [
            peer(1, manifest("0.2.0")),
            peer(2, manifest("9.9.9", sha: "f", key: Self.otherKey)), // a rogue: signed with another key
            peer(3, manifest("0.3.0", sha: "b")),
            peer(4, manifest("0.1.0", sha: "c")), // signed, but below the initramfs's minimum (a replay)
            peer(5, nil),
            peer(6, manifest("0.3.0", sha: "b")), // the same image as peer 3
        ]
        let (choice, skipped) = PeerSelection.choose(candidates, trust: trust)
        let chosen = try #require(choice)
        #expect(chosen.manifest.version == "0.3.0")
        #expect(chosen.peers.map(\.host) == ["10.0.0.3", "10.0.0.6"])
        let reasons = Dictionary(uniqueKeysWithValues: skipped.map { ($0.offer.host, $0.reason) })
        #expect(reasons.keys.sorted() == ["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5"])
        #expect(reasons["10.0.0.1"] == "version 0.2.0 is older than the chosen 0.3.0")
        #expect(reasons["10.0.0.2"]?.contains("signature") == true)
        #expect(reasons["10.0.0.4"]?.contains("below this initramfs's minimum 0.2.0") == true)
        #expect(reasons["10.0.0.5"] == "connection refused")
        #expect(chosen.lines.first == "chose peer 10.0.0.3:10809: version 0.3.0, image bbbbbbbbbbbb, the newest trusted "
            + "(and 1 more peer(s) serving the same image: 10.0.0.6:10809)")
        #expect(chosen.lines.count == 5)
    }

    @Test func versionsCompareAsVersionsThenByBuildTime() {
        #expect(PeerSelection.isNewer(manifest("0.10.0"), than: manifest("0.9.0")))
        #expect(PeerSelection.isNewer(manifest("0.2.0"), than: manifest("0.2.0-rc.1")))
        #expect(PeerSelection.isNewer(manifest("0.2.0", built: 200), than: manifest("0.2.0", built: 100)))
        #expect(!PeerSelection.isNewer(manifest("0.2.0"), than: manifest("0.2.0")))
        // A newer build of the same version is chosen; the other is named as another build.
        let (choice, skipped) = PeerSelection.choose([peer(1, manifest("0.2.0", built: 100)), peer(2, manifest("0.2.0", sha: "d", built: 200))],
                                                     trust: trust)
        #expect(choice?.peers.map(\.host) == ["10.0.0.2"])
        #expect(skipped.first?.reason.hasPrefix("another build of version 0.2.0") == true)
    }

    @Test func aPeerWhoseManifestIsNotTheImageItAnnouncedIsSkipped() {
        var offer = Discovery.Offer(host: "10.0.0.7", port: 10809)
        offer.sha256 = String(repeating: "e", count: 64)
        let (choice, skipped) = PeerSelection.choose([PeerSelection.Candidate(offer: offer, manifest: .success(manifest("0.2.0")))], trust: trust)
        #expect(choice == nil)
        #expect(skipped.first?.reason.hasPrefix("it announced image eeeeeeeeeeee") == true)
    }

    @Test func withoutTrustTheFirstNewestIsChosen() {
        let (choice, _) = PeerSelection.choose([peer(1, manifest("0.1.0", key: Self.otherKey)), peer(2, manifest("0.1.0", key: Self.otherKey))],
                                               trust: nil)
        #expect(choice?.peers.map(\.host) == ["10.0.0.1", "10.0.0.2"])
    }

    @Test func discoveryAnswersNameTheLayersWhenTheyFit() {
        let offer = Discovery.Offer(host: "10.0.2.15", port: 10809, protocolVersion: 1, sha256: String(repeating: "ab", count: 32),
                                    imageVersion: "0.1.0", buildTime: 1_700_000_000, size: 44_040_192, layers: ["devtools", "gpu"])
        let seek = Discovery.parseSeek(Discovery.seekDatagram(extended: true))!
        let answer = Discovery.answer(to: seek, offer: offer)!
        #expect(answer.count <= Discovery.extendedSeekSize)
        #expect(Discovery.parseAnswer(answer) == offer)
        // Layers that would not fit are left out; the image's details stay.
        var many = offer
        many.layers = (0..<40).map { "layer\($0)" }
        let parsed = Discovery.parseAnswer(Discovery.answer(to: seek, offer: many)!)
        #expect(parsed?.sha256 == offer.sha256)
        #expect(parsed?.layers == nil)
    }
}
