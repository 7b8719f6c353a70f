import SpiritCore
import Testing

struct ReleaseManifestTests {
    let keys = SigningKey.generate()
    let sha = String(repeating: "ab", count: 32)

    func release() -> ReleaseManifest {
        ReleaseManifest(version: "0.2.0", buildTime: 7, files: [
            .init(path: "rootfs.squashfs", size: 60, sha256: sha), .init(path: "kernel", size: 8, sha256: sha),
            .init(path: "initramfs.zst", size: 9, sha256: sha), .init(path: "manifest.json", size: 3, sha256: sha),
            .init(path: "layers/vm.squashfs", size: 19, sha256: sha),
        ])
    }

    @Test func signedParsedAndVerified() throws {
        let signed = try release().signed(privateKey: keys.privateKey)
        let back = try ReleaseManifest.parse(Array(signed.json.utf8))
        #expect(back == signed)
        #expect(back.files.map(\.path) == ["initramfs.zst", "kernel", "layers/vm.squashfs", "manifest.json", "rootfs.squashfs"])
        #expect(back.totalSize == 99)
        try back.verifySignature(publicKey: keys.publicKey)
        try back.verifyFile("kernel", size: 8, sha256: sha)
        #expect(throws: ManifestError.self) { try back.verifyFile("kernel", size: 9, sha256: sha) }
        #expect(throws: ManifestError.self) { try back.verifyFile("kernel", size: 8, sha256: String(repeating: "cd", count: 32)) }
    }

    @Test func anotherKeyOrAChangedFileIsRefused() throws {
        let signed = try release().signed(privateKey: keys.privateKey)
        #expect(throws: ManifestError.badSignature("the release is not signed with this system's key (/etc/spirit/signing.pub)")) {
            try signed.verifySignature(publicKey: SigningKey.generate().publicKey)
        }
        var changed = signed
        changed.files[0].size += 1
        #expect(throws: ManifestError.self) { try changed.verifySignature(publicKey: keys.publicKey) }
        #expect(throws: ManifestError.unsigned) { try release().verifySignature(publicKey: keys.publicKey) }
    }

    @Test func badEntriesAreNamed() throws {
        let json = try release().signed(privateKey: keys.privateKey).json
        for (from, to, said) in [
            ("\"kernel\"", "\"../kernel\"", "\"../kernel\" is not a release file's path"),
            ("\"layers/vm.squashfs\"", "\"etc/vm.squashfs\"", "\"etc/vm.squashfs\" is not a release file's path"),
            ("\"kernel\"", "\"initramfs.zst\"", "the file initramfs.zst is listed twice"),
            ("\"manifest.json\"", "\"other.json\"", "the release lists no manifest.json"),
            ("crom-spirit-release/1", "crom-spirit-manifest/1", "is not crom-spirit-release/1"),
        ] {
            do {
                _ = try ReleaseManifest.parse(Array(json.replacing(from, with: to).utf8))
                Issue.record("\(to) was taken")
            } catch {
                #expect("\(error)".contains(said), "\(error)")
            }
        }
    }
}
