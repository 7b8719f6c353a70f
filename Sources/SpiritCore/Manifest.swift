import Crypto

/// What describes a system image, built by `make rootfs` and checked by
/// every boot source before the image is used: its file name, size,
/// SHA-256, version and build time, signed with Ed25519. Defined once,
/// here, for the image builder and the init (STYLE.md, lesson 7).
public struct Manifest: Sendable, Equatable {
    public static let format = "crom-spirit-manifest/1"

    public var image: String
    public var size: Int64
    public var sha256: String
    public var version: String
    public var buildTime: Int64
    /// Ed25519 over `signedText`, hex.
    public var signature: String?
    /// The SHA-256 of the image's block list (BlockHashes), signed on its
    /// own; nil in a manifest built before block lists.
    public var blocks: Blocks?

    /// The block list's size and hash, with a signature of their own
    /// (`blocks_signature`) rather than in `signedText`: an initramfs that
    /// predates block lists still checks the image's signature over the
    /// same text as before, and ignores these members.
    public struct Blocks: Sendable, Equatable {
        public static let format = "crom-spirit-blocks/1"
        public var blockSize: Int
        /// SHA-256 of the digests back to back, hex.
        public var sha256: String
        public var signature: String?

        public init(blockSize: Int, sha256: String, signature: String? = nil) {
            self.blockSize = blockSize
            self.sha256 = sha256
            self.signature = signature
        }

        /// 4 KiB to 16 MiB, a power of two.
        public static func isValid(blockSize: Int) -> Bool {
            blockSize >= 4096 && blockSize <= 16 << 20 && blockSize & (blockSize - 1) == 0
        }
    }

    public init(image: String, size: Int64, sha256: String, version: String, buildTime: Int64, signature: String? = nil,
                blocks: Blocks? = nil) {
        self.image = image
        self.size = size
        self.sha256 = sha256
        self.version = version
        self.buildTime = buildTime
        self.signature = signature
        self.blocks = blocks
    }

    /// What `blocks_signature` covers: the list's hash bound to this image.
    public var blocksSignedText: String? {
        guard let blocks else { return nil }
        return "\(Blocks.format)\nimage_sha256 \(sha256)\nsize \(size)\nblock_size \(blocks.blockSize)\nblocks_sha256 \(blocks.sha256)\n"
    }

    /// The exact bytes the signature covers: one field a line, in a fixed
    /// order, so that JSON's freedom (spacing, member order) cannot change
    /// what was signed.
    public var signedText: String {
        "\(Self.format)\nimage \(image)\nsize \(size)\nsha256 \(sha256)\nversion \(version)\nbuild_time \(buildTime)\n"
    }

    public var json: String {
        var members = [
            "  \"format\": \(jsonString(Self.format))",
            "  \"image\": \(jsonString(image))",
            "  \"size\": \(size)",
            "  \"sha256\": \(jsonString(sha256))",
            "  \"version\": \(jsonString(version))",
            "  \"build_time\": \(buildTime)",
        ]
        if let signature { members.append("  \"signature\": \(jsonString(signature))") }
        if let blocks {
            members.append("  \"block_size\": \(blocks.blockSize)")
            members.append("  \"blocks_sha256\": \(jsonString(blocks.sha256))")
            if let signature = blocks.signature { members.append("  \"blocks_signature\": \(jsonString(signature))") }
        }
        return "{\n" + members.joined(separator: ",\n") + "\n}\n"
    }

    /// Reads a manifest; every field is checked for presence and form.
    public static func parse(_ bytes: [UInt8]) throws(ManifestError) -> Manifest {
        let fields = try ManifestFields(bytes, format: format)
        let image = try fields.text("image")
        guard !image.contains("/"), image != "..", image != "." else {
            throw .malformed("the image name \"\(image)\" is not a plain file name")
        }
        let sha = try fields.sha256()
        var blocks: Blocks?
        if fields.document["block_size"] != nil || fields.document["blocks_sha256"] != nil {
            let blockSize = try fields.integer("block_size")
            guard blockSize <= Int64(Int.max), Blocks.isValid(blockSize: Int(blockSize)) else {
                throw .malformed("the field \"block_size\" is not a power of two from 4096 to 16 MiB")
            }
            blocks = Blocks(blockSize: Int(blockSize), sha256: try fields.sha256("blocks_sha256"),
                            signature: fields.document["blocks_signature"]?.string)
        }
        return Manifest(image: image, size: try fields.integer("size"), sha256: sha, version: try fields.text("version"),
                        buildTime: try fields.integer("build_time"), signature: fields.document["signature"]?.string, blocks: blocks)
    }

    /// Signs the manifest with a raw 32-byte Ed25519 private key.
    public func signed(privateKey: [UInt8]) throws(ManifestError) -> Manifest {
        var copy = self
        copy.signature = try ManifestSignature.sign(signedText, privateKey: privateKey)
        if let text = blocksSignedText { copy.blocks?.signature = try ManifestSignature.sign(text, privateKey: privateKey) }
        return copy
    }

    /// Checks the signature with a raw 32-byte Ed25519 public key, and the
    /// block list's when there is one: a manifest whose block members were
    /// changed is refused whole, not used without them.
    public func verifySignature(publicKey: [UInt8]) throws(ManifestError) {
        try ManifestSignature.verify(signedText, signature: signature, publicKey: publicKey)
        if let text = blocksSignedText {
            do {
                try ManifestSignature.verify(text, signature: blocks?.signature, publicKey: publicKey)
            } catch {
                throw .badSignature("its block list (blocks_signature): \(error)")
            }
        }
    }

    /// Anti-rollback: the image's version must be at least the minimum
    /// of the initramfs (nil: no minimum), so that an old image, signed
    /// with the right key but replayed for a vulnerability it has, does not
    /// boot. A version that cannot be read cannot be shown to be recent
    /// enough: refused as well.
    public func verifyVersion(minimum: Version?) throws(ManifestError) {
        guard let minimum else { return }
        let ours: Version
        do throws(VersionError) {
            ours = try Version(parsing: version)
        } catch {
            throw .unreadableVersion(version: version, minimum: minimum.description, reason: error.reason)
        }
        guard ours >= minimum else { throw .belowMinimum(version: version, minimum: minimum.description) }
    }

    /// Checks what was measured of an image against the manifest.
    public func verifyImage(size: Int64, sha256: String) throws(ManifestError) {
        guard size == self.size else { throw .imageMismatch("the image is \(size) bytes, the manifest says \(self.size)") }
        guard sha256 == self.sha256 else { throw .imageMismatch("the image's SHA-256 is \(sha256), the manifest says \(self.sha256)") }
    }
}

public enum ManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformed(String)
    case unsigned
    case badSignature(String)
    case badKey(String)
    case imageMismatch(String)
    case layerMismatch(String)
    case modelMismatch(String)
    case belowMinimum(version: String, minimum: String)
    case unreadableVersion(version: String, minimum: String, reason: String)

    public var description: String {
        switch self {
        case .malformed(let why): "the manifest is malformed: \(why)"
        case .unsigned: "the manifest has no signature"
        case .badSignature(let why): "the manifest's signature is not valid: \(why)"
        case .badKey(let why): "bad key: \(why)"
        case .imageMismatch(let why): "the image does not match its manifest: \(why)"
        case .layerMismatch(let why): "the layer does not match its manifest: \(why)"
        case .modelMismatch(let why): "the model does not match its manifest: \(why)"
        case .belowMinimum(let version, let minimum):
            "the image's version \(version) is below this initramfs's minimum \(minimum) (a replayed old image is refused)"
        case .unreadableVersion(let version, let minimum, let reason):
            "the image's version \"\(version)\" is not a version (\(reason)), so it cannot be shown to be at least "
                + "this initramfs's minimum \(minimum)"
        }
    }
}

/// A manifest's JSON members, each read with a message naming it: shared
/// by the system image's manifest and the layers'.
struct ManifestFields {
    let document: JSONValue

    init(_ bytes: [UInt8], format: String) throws(ManifestError) {
        do {
            document = try JSONReader.parse(bytes)
        } catch {
            throw .malformed("not JSON: \(error)")
        }
        guard case .object = document else { throw .malformed("not a JSON object") }
        let found = try text("format")
        guard found == format else { throw .malformed("format \"\(found)\" is not \(format)") }
    }

    /// The members of an object inside a manifest (a release's file entry).
    init(object: JSONValue, what: String) throws(ManifestError) {
        guard case .object = object else { throw .malformed("\(what) is not a JSON object") }
        document = object
    }

    func field(_ name: String) throws(ManifestError) -> JSONValue {
        guard let value = document[name] else { throw .malformed("the field \"\(name)\" is missing") }
        return value
    }

    /// A non-empty string on one line.
    func text(_ name: String) throws(ManifestError) -> String {
        guard let value = try field(name).string, !value.isEmpty, !value.contains("\n") else {
            throw .malformed("the field \"\(name)\" is not a non-empty string on one line")
        }
        return value
    }

    func integer(_ name: String) throws(ManifestError) -> Int64 {
        guard let value = try field(name).integer, value >= 0 else { throw .malformed("the field \"\(name)\" is not a whole number") }
        return value
    }

    func sha256(_ name: String = "sha256") throws(ManifestError) -> String {
        let sha = try text(name)
        guard sha.utf8.count == 64, Hex.decode(sha) != nil, sha == sha.lowercased() else {
            throw .malformed("the field \"\(name)\" is not 64 lower-case hex digits")
        }
        return sha
    }
}

/// Ed25519 over a manifest's signed text, shared by the system image's
/// manifest and the layers' (one key, one contract).
enum ManifestSignature {
    static func sign(_ text: String, privateKey: [UInt8]) throws(ManifestError) -> String {
        let key: Curve25519.Signing.PrivateKey
        do {
            key = try Curve25519.Signing.PrivateKey(rawRepresentation: privateKey)
        } catch {
            throw .badKey("the private key is not 32 raw bytes of Ed25519")
        }
        do {
            return Hex.encode(try key.signature(for: Array(text.utf8)))
        } catch {
            throw .badKey("unable to sign: \(error)")
        }
    }

    static func verify(_ text: String, signature: String?, publicKey: [UInt8]) throws(ManifestError) {
        guard let signature else { throw .unsigned }
        guard let bytes = Hex.decode(signature), bytes.count == 64 else { throw .badSignature("the signature is not 64 bytes of hex") }
        let key: Curve25519.Signing.PublicKey
        do {
            key = try Curve25519.Signing.PublicKey(rawRepresentation: publicKey)
        } catch {
            throw .badKey("the public key is not 32 raw bytes of Ed25519")
        }
        guard key.isValidSignature(bytes, for: Array(text.utf8)) else {
            throw .badSignature("the signature does not match the manifest and the key in this initramfs")
        }
    }
}

/// SHA-256 of a stream fed in pieces (a VM's saved state, hashed as it is
/// read, without holding it in memory).
public struct SHA256Stream: Sendable {
    var hasher = SHA256()
    public init() {}
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
    public func hex() -> String { Hex.encode(Array(hasher.finalize())) }
}

/// SHA-256 of bytes in memory (images are hashed while copied, by ImageCopy).
public enum SHA256Digest {
    public static func of(_ bytes: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: bytes))
    }
}

/// Ed25519 keys as Spirit stores them: 32 raw bytes, hex, one line.
public enum SigningKey {
    public static func generate() -> (privateKey: [UInt8], publicKey: [UInt8]) {
        let key = Curve25519.Signing.PrivateKey()
        return (Array(key.rawRepresentation), Array(key.publicKey.rawRepresentation))
    }

    public static func publicKey(forPrivateKey privateKey: [UInt8]) throws(ManifestError) -> [UInt8] {
        do {
            return Array(try Curve25519.Signing.PrivateKey(rawRepresentation: privateKey).publicKey.rawRepresentation)
        } catch {
            throw .badKey("the private key is not 32 raw bytes of Ed25519")
        }
    }

    /// Reads a key file: hex, surrounding white space ignored.
    public static func read(_ path: String) throws -> [UInt8] {
        let text = try Kernel.readText(path).filter { !$0.isWhitespace }
        guard let bytes = Hex.decode(text), bytes.count == 32 else {
            throw SpiritError("\(path) is not a key: expected 64 hex digits (32 bytes)")
        }
        return bytes
    }
}
