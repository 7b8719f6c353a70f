import SpiritCore
import Testing

@Suite struct LayerManifestTests {
    let keys = SigningKey.generate()

    func layer(name: String = "vm", bases: [String] = ["0.1.0"]) throws -> LayerManifest {
        try LayerManifest(name: name, size: 19_599_360, sha256: String(repeating: "ab", count: 32), version: "0.1.0", buildTime: 1_795_649_590,
                          bases: bases).signed(privateKey: keys.privateKey)
    }

    @Test func roundTripsAndVerifies() throws {
        let signed = try layer()
        let parsed = try LayerManifest.parse(Array(signed.json.utf8))
        #expect(parsed == signed)
        #expect(parsed.image == "vm.squashfs")
        try parsed.check(publicKey: keys.publicKey, baseVersion: "0.1.0")
        try parsed.verifyImage(size: 19_599_360, sha256: String(repeating: "ab", count: 32))
    }

    @Test func theSignatureCoversTheBasesAndTheName() throws {
        var widened = try layer()
        widened.bases = ["*"]
        #expect(throws: ManifestError.self) { try widened.verifySignature(publicKey: keys.publicKey) }
        var renamed = try layer()
        renamed.name = "ai"
        #expect(throws: ManifestError.self) { try renamed.verifySignature(publicKey: keys.publicKey) }
        let stranger = SigningKey.generate()
        #expect(throws: ManifestError.self) { try layer().verifySignature(publicKey: stranger.publicKey) }
    }

    @Test func aLayerFitsTheBasesItNames() throws {
        #expect(try layer(bases: ["0.1.0"]).fits(baseVersion: "0.1.0"))
        #expect(try !layer(bases: ["0.1.0"]).fits(baseVersion: "0.1.1"))
        #expect(try layer(bases: ["0.1.*"]).fits(baseVersion: "0.1.7"))
        #expect(try !layer(bases: ["0.1.*"]).fits(baseVersion: "0.2.0"))
        #expect(try layer(bases: ["0.0.9", "*"]).fits(baseVersion: "5"))
        let error = #expect(throws: ManifestError.self) { try layer(bases: ["0.0.9"]).check(publicKey: keys.publicKey, baseVersion: "0.1.0") }
        #expect(error?.description.contains("fits system images 0.0.9, not 0.1.0") == true)
    }

    @Test func malformedManifestsSayWhichField() throws {
        let good = try layer().json
        let cases: [(String, String)] = [
            (good.replacing("\"vm.squashfs\"", with: "\"../vm.squashfs\""), "image"),
            (good.replacing("\"name\": \"vm\"", with: "\"name\": \"VM!\""), "not a layer name"),
            (good.replacing("[\"0.1.0\"]", with: "[]"), "fits no system image"),
            (good.replacing("crom-spirit-layer/1", with: "crom-spirit-manifest/1"), "format"),
            ("[1]", "not a JSON object"),
        ]
        for (text, words) in cases {
            let error = #expect(throws: ManifestError.self) { try LayerManifest.parse(Array(text.utf8)) }
            #expect(error?.description.contains(words) == true, "\(words): \(String(describing: error))")
        }
    }

    @Test func namesAreSafeForFilesMountsAndExports() {
        for name in ["vm", "ai", "a-b_c", "x9"] { #expect(throws: Never.self) { try LayerManifest.checkName(name) } }
        for name in ["", "-vm", "Vm", "a/b", "..", "a b", String(repeating: "a", count: 33)] {
            #expect(throws: ManifestError.self) { try LayerManifest.checkName(name) }
        }
    }

    @Test func selectionFromTheFlag() throws {
        #expect(try LayerSelection.parse("all") == .all)
        #expect(try LayerSelection.parse("none") == .none)
        #expect(try LayerSelection.parse("vm,ai,vm") == .named(["vm", "ai"]))
        #expect(throws: ManifestError.self) { try LayerSelection.parse("vm,,ai") }
        #expect(LayerSelection.all.chosen(offered: ["vm", "ai"]) == ["ai", "vm"])
        #expect(LayerSelection.named(["vm"]).chosen(offered: ["ai"]) == ["vm"])
        #expect(LayerSelection.none.chosen(offered: ["vm"]).isEmpty)
    }

    @Test func stateRoundTrips() throws {
        let state = LayerState(entries: [.init(try layer(), origin: "http://10.0.2.2:8080/layers/", stacking: .run, added: 1_795_650_000)])
        let parsed = try LayerState.parse(Array(state.json.utf8))
        #expect(parsed == state)
        #expect(parsed["vm"]?.stacking == .run)
        #expect(throws: SpiritError.self) { try LayerState.parse(Array("{\"layers\":[{\"name\":\"vm\"}]}".utf8)) }
    }
}
