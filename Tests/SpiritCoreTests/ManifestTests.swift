import SpiritCore
import Testing

/// A fixed key pair for tests only: it signs nothing that boots.
enum TestOnlyKey {
    static let privateKey = Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!
    static let otherPrivateKey = Hex.decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")!
}

@Suite struct ManifestTests {
    let image = Array("a squashfs image, or so we pretend".utf8)

    func manifest(for bytes: [UInt8]) throws -> Manifest {
        try Manifest(image: "rootfs.squashfs", size: Int64(bytes.count), sha256: sha256Hex(bytes), version: "0.1.0",
                     buildTime: 1_795_355_103).signed(privateKey: TestOnlyKey.privateKey)
    }

    var publicKey: [UInt8] { try! SigningKey.publicKey(forPrivateKey: TestOnlyKey.privateKey) }

    @Test func ed25519MatchesRFC8032() throws {
        // RFC 8032, 7.1, TEST 1: the public key of this private key.
        #expect(Hex.encode(try SigningKey.publicKey(forPrivateKey: TestOnlyKey.privateKey))
                == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    }

    @Test func goodManifestRoundTripsAndVerifies() throws {
        let signed = try manifest(for: image)
        let parsed = try Manifest.parse(Array(signed.json.utf8))
        #expect(parsed == signed)
        try parsed.verifySignature(publicKey: publicKey)
        try parsed.verifyImage(size: Int64(image.count), sha256: sha256Hex(image))
    }

    @Test func oneFlippedByteInTheImageIsRefused() throws {
        let signed = try manifest(for: image)
        var tampered = image
        tampered[7] ^= 0x01
        #expect(throws: ManifestError.self) {
            try signed.verifyImage(size: Int64(tampered.count), sha256: sha256Hex(tampered))
        }
        do {
            try signed.verifyImage(size: Int64(tampered.count), sha256: sha256Hex(tampered))
        } catch {
            #expect("\(error)".hasPrefix("the image does not match its manifest: the image's SHA-256 is "))
        }
    }

    @Test func aChangedFieldBreaksTheSignature() throws {
        var signed = try manifest(for: image)
        signed.version = "9.9.9"
        #expect(throws: ManifestError.badSignature("the signature does not match the manifest and the key in this initramfs")) {
            try signed.verifySignature(publicKey: publicKey)
        }
    }

    @Test func wrongKeyIsRefused() throws {
        let signed = try manifest(for: image)
        let other = try SigningKey.publicKey(forPrivateKey: TestOnlyKey.otherPrivateKey)
        #expect(throws: ManifestError.self) { try signed.verifySignature(publicKey: other) }
    }

    @Test func unsignedIsRefused() throws {
        var signed = try manifest(for: image)
        signed.signature = nil
        #expect(throws: ManifestError.unsigned) { try signed.verifySignature(publicKey: publicKey) }
    }

    @Test func truncatedIsMalformed() throws {
        let json = Array(try manifest(for: image).json.utf8)
        for length in [0, 1, json.count / 2, json.count - 3] {
            #expect(throws: ManifestError.self) { try Manifest.parse(Array(json[..<length])) }
        }
    }

    @Test(arguments: ["format", "image", "size", "sha256", "version", "build_time"])
    func missingFieldIsNamed(_ field: String) throws {
        let json = try manifest(for: image).json
        let kept = json.split(separator: "\n").filter { !$0.contains("\"\(field)\":") }.joined(separator: "\n")
            .replacingTrailingComma()
        do {
            _ = try Manifest.parse(Array(kept.utf8))
            Issue.record("a manifest without \(field) was accepted")
        } catch {
            #expect(error == .malformed("the field \"\(field)\" is missing"), "\(error)")
        }
    }

    @Test(arguments: [
        (#""image": "../etc/passwd""#, "not a plain file name"),
        (#""size": -4"#, "is not a whole number"),
        (#""size": "12""#, "is not a whole number"),
        (#""sha256": "ABC""#, "64 lower-case hex digits"),
        (#""format": "other/2""#, "is not crom-spirit-manifest/1"),
    ])
    func badFieldsAreMalformed(_ replacement: String, _ message: String) throws {
        let name = String(replacement.split(separator: ":")[0])
        let json = try manifest(for: image).json.split(separator: "\n").map { line in
            line.trimmingPrefixSpaces.hasPrefix(name) ? "  " + replacement + (line.hasSuffix(",") ? "," : "") : String(line)
        }.joined(separator: "\n")
        do {
            _ = try Manifest.parse(Array(json.utf8))
            Issue.record("accepted: \(replacement)")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    Hex.encode(SHA256Digest.of(bytes))
}

extension Substring {
    var trimmingPrefixSpaces: Substring { drop { $0 == " " } }
}

extension String {
    /// Removes a comma left before a closing brace by a deleted line.
    func replacingTrailingComma() -> String {
        var lines = split(separator: "\n").map(String.init)
        if let close = lines.lastIndex(of: "}"), close > 0, lines[close - 1].hasSuffix(",") {
            lines[close - 1].removeLast()
        }
        return lines.joined(separator: "\n")
    }
}
