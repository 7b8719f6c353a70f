/// What an initramfs trusts an image's manifest by: the Ed25519 key it must
/// be signed with and, for anti-rollback, the lowest version it may have.
/// Every boot source and `spirit-fetch` check a manifest with `check`, so
/// that all of them refuse the same images for the same reasons.
public struct ImageTrust: Sendable, Equatable {
    public var publicKey: [UInt8]
    /// nil: this initramfs has no minimum, and any version is accepted.
    public var minimumVersion: Version?

    public init(publicKey: [UInt8], minimumVersion: Version?) {
        self.publicKey = publicKey
        self.minimumVersion = minimumVersion
    }

    /// The signature first (an unsigned version says nothing), then the
    /// version against the minimum.
    public func check(_ manifest: Manifest) throws(ManifestError) {
        try manifest.verifySignature(publicKey: publicKey)
        try manifest.verifyVersion(minimum: minimumVersion)
    }

    /// The minimum from its file's text: one version, white space around
    /// it ignored. Nothing else is accepted, not even an empty file: the
    /// build writes this file (MIN_VERSION, checked there) or leaves it out.
    public static func minimumVersion(fileText: String) throws(VersionError) -> Version {
        try Version(parsing: fileText.trimmed)
    }

    /// The key and the minimum baked into the initramfs. A missing minimum
    /// file is no minimum; an unreadable or malformed one is an error, as an
    /// unreadable key is: the boot refuses every image and says why, rather
    /// than booting images older than the builder meant to allow.
    public static func read(publicKey keyPath: String = InitramfsFiles.signingPublicKey,
                            minimumVersion minimumPath: String = InitramfsFiles.minimumVersion) throws -> ImageTrust {
        let key = try SigningKey.read(keyPath)
        // A file that is not there is no minimum; any other failure to read it is an error.
        guard Kernel.exists(minimumPath) else { return ImageTrust(publicKey: key, minimumVersion: nil) }
        let text = try Kernel.readText(minimumPath)
        do {
            return ImageTrust(publicKey: key, minimumVersion: try minimumVersion(fileText: text))
        } catch {
            throw SpiritError("\(minimumPath) does not hold a minimum version: \(error)")
        }
    }

    /// What this trust means, for a debug line and `spirit-diag`.
    public var minimumDescription: String {
        minimumVersion.map { "images below version \($0) are refused" }
            ?? "no minimum version in this initramfs (\(InitramfsFiles.minimumVersion)): images of any version are accepted"
    }
}
