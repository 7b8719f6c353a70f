/// What describes a whole Spirit release, the set `spirit upgrade` writes
/// as a slot: every file of it (the kernel, the initramfs, the system image
/// and its manifest, the layers and theirs) with its size and SHA-256, and
/// the release's version, signed with the image's Ed25519 key. The image's
/// own manifest covers the image only; a kernel or an initramfs is code
/// that runs before any manifest is checked, so an upgrade must not write
/// one that nothing signed. `release.json` beside the files; `spirit image
/// release DIR` writes it (make stick, make netboot).
public struct ReleaseManifest: Sendable, Equatable {
    public static let format = "crom-spirit-release/1"
    public static let fileName = "release.json"
    /// Every release has these; the image is the one manifest.json names.
    public static let requiredFiles = ["kernel", "initramfs.zst", "manifest.json"]

    public struct File: Sendable, Equatable {
        /// Relative to the release's folder: `kernel`, `layers/vm.squashfs`.
        public var path: String
        public var size: Int64
        public var sha256: String

        public init(path: String, size: Int64, sha256: String) {
            self.path = path
            self.size = size
            self.sha256 = sha256
        }

        /// Checks what was measured of this file.
        public func verify(size: Int64, sha256: String) throws(ManifestError) {
            guard size == self.size else { throw .imageMismatch("\(path) is \(size) bytes, the release says \(self.size)") }
            guard sha256 == self.sha256 else { throw .imageMismatch("\(path)'s SHA-256 is \(sha256), the release says \(self.sha256)") }
        }
    }

    public var version: String
    public var buildTime: Int64
    /// Sorted by path (the order they are signed in).
    public var files: [File]
    public var signature: String?

    public init(version: String, buildTime: Int64, files: [File], signature: String? = nil) {
        self.version = version
        self.buildTime = buildTime
        self.files = files.sorted { $0.path < $1.path }
        self.signature = signature
    }

    public func file(_ path: String) -> File? { files.first { $0.path == path } }

    /// The bytes of every file together.
    public var totalSize: Int64 { files.reduce(0) { $0 + $1.size } }

    /// A file's path in a release: a plain name, or `layers/` and a plain
    /// name; lower-case letters, digits, `.`, `-` and `_` (it becomes a path
    /// on the medium and a URL).
    public static func checkPath(_ path: String) throws(ManifestError) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let plain = { (part: Substring) -> Bool in
            !part.isEmpty && part != "." && part != ".." && part.utf8.count <= 64 && part.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"): true
                default: false
                }
            }
        }
        let shaped = parts.count == 1 || (parts.count == 2 && parts[0] == "layers")
        guard shaped, parts.allSatisfy(plain), path != fileName else {
            throw .malformed("\"\(path)\" is not a release file's path (a plain name, or layers/ and a plain name)")
        }
    }

    /// The exact bytes the signature covers, one field a line.
    public var signedText: String {
        "\(Self.format)\nversion \(version)\nbuild_time \(buildTime)\n"
            + files.map { "file \($0.path) \($0.size) \($0.sha256)\n" }.joined()
    }

    public var json: String {
        var members = [
            "  \"format\": \(jsonString(Self.format))",
            "  \"version\": \(jsonString(version))",
            "  \"build_time\": \(buildTime)",
            "  \"files\": [\n" + files.map {
                "    {\"path\": \(jsonString($0.path)), \"size\": \($0.size), \"sha256\": \(jsonString($0.sha256))}"
            }.joined(separator: ",\n") + "\n  ]",
        ]
        if let signature { members.append("  \"signature\": \(jsonString(signature))") }
        return "{\n" + members.joined(separator: ",\n") + "\n}\n"
    }

    /// Reads a release manifest; every field and file entry is checked for
    /// presence and form, and the required files must be listed.
    public static func parse(_ bytes: [UInt8]) throws(ManifestError) -> ReleaseManifest {
        let fields = try ManifestFields(bytes, format: format)
        guard case .array(let list) = try fields.field("files") else { throw .malformed("the field \"files\" is not a list") }
        var files: [File] = []
        for entry in list {
            let file = try ManifestFields(object: entry, what: "a file entry")
            let path = try file.text("path")
            try checkPath(path)
            guard !files.contains(where: { $0.path == path }) else { throw .malformed("the file \(path) is listed twice") }
            files.append(File(path: path, size: try file.integer("size"), sha256: try file.sha256()))
        }
        for required in requiredFiles where !files.contains(where: { $0.path == required }) {
            throw .malformed("the release lists no \(required)")
        }
        return ReleaseManifest(version: try fields.text("version"), buildTime: try fields.integer("build_time"), files: files,
                               signature: fields.document["signature"]?.string)
    }

    public func signed(privateKey: [UInt8]) throws(ManifestError) -> ReleaseManifest {
        var copy = self
        copy.signature = try ManifestSignature.sign(signedText, privateKey: privateKey)
        return copy
    }

    public func verifySignature(publicKey: [UInt8]) throws(ManifestError) {
        do throws(ManifestError) {
            try ManifestSignature.verify(signedText, signature: signature, publicKey: publicKey)
        } catch .badSignature {
            throw .badSignature("the release is not signed with this system's key (/etc/spirit/signing.pub)")
        }
    }

    /// Checks what was measured of one of the release's files.
    public func verifyFile(_ path: String, size: Int64, sha256: String) throws(ManifestError) {
        guard let file = file(path) else { throw .malformed("the release lists no \(path)") }
        try file.verify(size: size, sha256: sha256)
    }
}
