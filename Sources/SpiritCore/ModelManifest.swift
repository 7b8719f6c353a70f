/// What describes a model pack: one GGUF file for the AI runtime
/// (llama-server), with its name, size, SHA-256, licence and where its
/// weights came from, signed with the same Ed25519 key as the system image.
/// A pack is data only (no code to check at run time), and it is not a
/// squashfs: a GGUF copied into tmpfs and mmapped by llama-server takes RAM
/// once, where a squashfs in RAM would hold it twice (compressed, then in
/// the page cache) for a 6% saving (research/ai-runtime.md 6.1). On every
/// medium it is `models/NAME.json` beside `models/NAME.gguf`.
public struct ModelManifest: Sendable, Equatable {
    public static let format = "crom-spirit-model/1"

    public var name: String
    public var size: Int64
    public var sha256: String
    /// The weights' licence (SPDX: `Apache-2.0`).
    public var license: String
    /// Where the weights came from, for a person to check.
    public var source: String
    public var buildTime: Int64
    /// Ed25519 over `signedText`, hex.
    public var signature: String?

    public init(name: String, size: Int64, sha256: String, license: String, source: String, buildTime: Int64, signature: String? = nil) {
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.license = license
        self.source = source
        self.buildTime = buildTime
        self.signature = signature
    }

    public var file: String { Self.file(name) }
    public static func file(_ name: String) -> String { name + ".gguf" }
    public static func manifestFile(_ name: String) -> String { name + ".json" }

    /// A model's name follows a layer's rules (it becomes a file name).
    public static func checkName(_ name: String) throws(ManifestError) {
        do {
            try LayerManifest.checkName(name)
        } catch {
            throw .malformed("\"\(name)\" is not a model name (lower-case letters, digits, - and _, at most 32, starting with a letter or digit)")
        }
    }

    public var signedText: String {
        "\(Self.format)\nname \(name)\nfile \(file)\nsize \(size)\nsha256 \(sha256)\nlicense \(license)\nsource \(source)\n"
            + "build_time \(buildTime)\n"
    }

    public var json: String {
        var members = [
            "  \"format\": \(jsonString(Self.format))",
            "  \"name\": \(jsonString(name))",
            "  \"file\": \(jsonString(file))",
            "  \"size\": \(size)",
            "  \"sha256\": \(jsonString(sha256))",
            "  \"license\": \(jsonString(license))",
            "  \"source\": \(jsonString(source))",
            "  \"build_time\": \(buildTime)",
        ]
        if let signature { members.append("  \"signature\": \(jsonString(signature))") }
        return "{\n" + members.joined(separator: ",\n") + "\n}\n"
    }

    public static func parse(_ bytes: [UInt8]) throws(ManifestError) -> ModelManifest {
        let fields = try ManifestFields(bytes, format: format)
        let name = try fields.text("name")
        try checkName(name)
        let file = try fields.text("file")
        guard file == Self.file(name) else { throw .malformed("the model \(name)'s file is \"\(file)\", not \(Self.file(name))") }
        return ModelManifest(name: name, size: try fields.integer("size"), sha256: try fields.sha256(), license: try fields.text("license"),
                             source: try fields.text("source"), buildTime: try fields.integer("build_time"),
                             signature: fields.document["signature"]?.string)
    }

    public func signed(privateKey: [UInt8]) throws(ManifestError) -> ModelManifest {
        var copy = self
        copy.signature = try ManifestSignature.sign(signedText, privateKey: privateKey)
        return copy
    }

    public func verifySignature(publicKey: [UInt8]) throws(ManifestError) {
        try ManifestSignature.verify(signedText, signature: signature, publicKey: publicKey)
    }
}

/// What a shelf holds (layers, model packs): a named file beside its signed
/// manifest, in a folder of its own on every medium. One protocol so that a
/// folder, an HTTP server and the copy into RAM serve both the same way.
public protocol ShelfItem: Sendable {
    /// The folder on a medium: `layers`, `models`.
    static var directory: String { get }
    /// For messages: `layer`, `model`.
    static var kind: String { get }
    static func checkName(_ name: String) throws(ManifestError)
    /// The data file's name for an item's name: `NAME.squashfs`, `NAME.gguf`.
    static func file(_ name: String) -> String
    static func manifestFile(_ name: String) -> String
    static func parse(_ bytes: [UInt8]) throws(ManifestError) -> Self
    var name: String { get }
    var size: Int64 { get }
    /// The data file's name beside the manifest.
    var file: String { get }
    var json: String { get }
    /// Checks what was measured of the data file against the manifest.
    func verifyFile(size: Int64, sha256: String) throws(ManifestError)
}

extension LayerManifest: ShelfItem {
    public static var directory: String { "layers" }
    public static var kind: String { "layer" }
    public var file: String { image }
    public static func file(_ name: String) -> String { imageFile(name) }
    public func verifyFile(size: Int64, sha256: String) throws(ManifestError) { try verifyImage(size: size, sha256: sha256) }
}

extension ModelManifest: ShelfItem {
    public static var directory: String { "models" }
    public static var kind: String { "model" }
    public func verifyFile(size: Int64, sha256: String) throws(ManifestError) {
        guard size == self.size else { throw .modelMismatch("\(file) is \(size) bytes, its manifest says \(self.size)") }
        guard sha256 == self.sha256 else { throw .modelMismatch("\(file)'s SHA-256 is \(sha256), its manifest says \(self.sha256)") }
    }
}
