/// What describes an add-on layer (`vm`: QEMU and its firmware; `ai`:
/// llama-server): a squashfs of a `/usr` tree that stacks over the system
/// image, with its name, file, size, SHA-256, version, build time and the
/// system image versions it fits, signed with the same Ed25519 key as the
/// image's manifest. On every medium it is `layers/NAME.json` beside
/// `layers/NAME.squashfs`; `make layer NAME=…` writes both.
public struct LayerManifest: Sendable, Equatable {
    public static let format = "crom-spirit-layer/1"
    /// A layer's tree holds only this directory (as systemd-sysext's
    /// extensions do): what it adds to a running system is merged there.
    public static let prefix = "usr"

    public var name: String
    public var size: Int64
    public var sha256: String
    public var version: String
    public var buildTime: Int64
    /// The system image versions the layer fits: a version, a prefix
    /// ending in `*` (`0.1.*`), or `*` for any.
    public var bases: [String]
    /// Ed25519 over `signedText`, hex.
    public var signature: String?

    public init(name: String, size: Int64, sha256: String, version: String, buildTime: Int64, bases: [String],
                signature: String? = nil) {
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.version = version
        self.buildTime = buildTime
        self.bases = bases
        self.signature = signature
    }

    /// The squashfs's file name beside the manifest.
    public var image: String { Self.imageFile(name) }
    public static func imageFile(_ name: String) -> String { name + ".squashfs" }
    public static func manifestFile(_ name: String) -> String { name + ".json" }

    /// A layer's name: a letter or digit, then letters, digits, `-` or `_`,
    /// at most 32 (it becomes a file name, a mount point and an NBD export).
    public static func checkName(_ name: String) throws(ManifestError) {
        let bytes = Array(name.utf8)
        func allowed(_ byte: UInt8, first: Bool) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
            case UInt8(ascii: "-"), UInt8(ascii: "_"): !first
            default: false
            }
        }
        guard !bytes.isEmpty, bytes.count <= 32, bytes.enumerated().allSatisfy({ allowed($1, first: $0 == 0) }) else {
            throw .malformed("\"\(name)\" is not a layer name (lower-case letters, digits, - and _, at most 32, starting with a letter or digit)")
        }
    }

    /// The exact bytes the signature covers, one field a line.
    public var signedText: String {
        "\(Self.format)\nname \(name)\nimage \(image)\nsize \(size)\nsha256 \(sha256)\nversion \(version)\n"
            + "build_time \(buildTime)\nbases \(bases.joined(separator: " "))\n"
    }

    public var json: String {
        var members = [
            "  \"format\": \(jsonString(Self.format))",
            "  \"name\": \(jsonString(name))",
            "  \"image\": \(jsonString(image))",
            "  \"size\": \(size)",
            "  \"sha256\": \(jsonString(sha256))",
            "  \"version\": \(jsonString(version))",
            "  \"build_time\": \(buildTime)",
            "  \"bases\": [" + bases.map(jsonString).joined(separator: ", ") + "]",
        ]
        if let signature { members.append("  \"signature\": \(jsonString(signature))") }
        return "{\n" + members.joined(separator: ",\n") + "\n}\n"
    }

    /// Reads a layer manifest; every field is checked for presence and form.
    public static func parse(_ bytes: [UInt8]) throws(ManifestError) -> LayerManifest {
        let fields = try ManifestFields(bytes, format: format)
        let name = try fields.text("name")
        try checkName(name)
        let image = try fields.text("image")
        guard image == imageFile(name) else { throw .malformed("the layer \(name)'s image is \"\(image)\", not \(imageFile(name))") }
        let sha = try fields.sha256()
        guard case .array(let list) = try fields.field("bases") else { throw .malformed("the field \"bases\" is not a list") }
        var bases: [String] = []
        for entry in list {
            guard let base = entry.string, !base.isEmpty, !base.contains(" "), !base.contains("\n") else {
                throw .malformed("the field \"bases\" holds something that is not a version")
            }
            bases.append(base)
        }
        guard !bases.isEmpty else { throw .malformed("the field \"bases\" is empty: the layer fits no system image") }
        return LayerManifest(name: name, size: try fields.integer("size"), sha256: sha, version: try fields.text("version"),
                             buildTime: try fields.integer("build_time"), bases: bases, signature: fields.document["signature"]?.string)
    }

    public func signed(privateKey: [UInt8]) throws(ManifestError) -> LayerManifest {
        var copy = self
        copy.signature = try ManifestSignature.sign(signedText, privateKey: privateKey)
        return copy
    }

    public func verifySignature(publicKey: [UInt8]) throws(ManifestError) {
        try ManifestSignature.verify(signedText, signature: signature, publicKey: publicKey)
    }

    /// Whether the layer fits a system image of `baseVersion`.
    public func fits(baseVersion: String) -> Bool {
        bases.contains { base in
            base.hasSuffix("*") ? baseVersion.hasPrefix(String(base.dropLast())) : base == baseVersion
        }
    }

    /// Everything a layer must pass before its bytes are read: its
    /// signature, and that it fits the system image it would stack over.
    public func check(publicKey: [UInt8], baseVersion: String) throws(ManifestError) {
        try verifySignature(publicKey: publicKey)
        guard fits(baseVersion: baseVersion) else {
            throw .malformed("the layer \(name) \(version) fits system images \(bases.joined(separator: ", ")), not \(baseVersion), the one running")
        }
    }

    /// Checks what was measured of the squashfs against the manifest.
    public func verifyImage(size: Int64, sha256: String) throws(ManifestError) {
        guard size == self.size else { throw .layerMismatch("\(image) is \(size) bytes, its manifest says \(self.size)") }
        guard sha256 == self.sha256 else { throw .layerMismatch("\(image)'s SHA-256 is \(sha256), its manifest says \(self.sha256)") }
    }
}

/// `crom.layers=`: which of the layers a boot medium carries are stacked
/// over the image at boot. The default is every layer the medium has
/// (`all`): putting a layer on a medium is asking for it.
public enum LayerSelection: Sendable, Equatable, CustomStringConvertible {
    case all
    case none
    case named([String])

    /// Reads the flag's value; a bad name is an error naming it.
    public static func parse(_ value: String) throws(ManifestError) -> LayerSelection {
        switch value {
        case "all", "": return .all
        case "none": return LayerSelection.none
        default:
            var names: [String] = []
            for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                let name = String(part)
                try LayerManifest.checkName(name)
                if !names.contains(name) { names.append(name) }
            }
            return .named(names)
        }
    }

    public var description: String {
        switch self {
        case .all: "all"
        case .none: "none"
        case .named(let names): names.joined(separator: ",")
        }
    }

    /// The layers to stack, in the order they stack (the first is the
    /// topmost), from the names a medium offers. Named layers keep the
    /// flag's order and are stacked even when the medium's list lacks them
    /// (the source then says they are missing); `all` takes the medium's
    /// layers sorted by name.
    public func chosen(offered: [String]) -> [String] {
        switch self {
        case .all: offered.sorted()
        case .none: []
        case .named(let names): names
        }
    }
}
