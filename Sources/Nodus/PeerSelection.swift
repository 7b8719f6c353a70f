import SpiritCore

/// Which peer a booting Spirit boots from, when several answered: the pure
/// core of NodusSource's choice. Each peer's manifest (read from its
/// `manifest` export) is checked against the initramfs's trust (its
/// signature, its version not below the minimum); of the peers it trusts,
/// the newest image wins (the highest version, then the latest build, then
/// the first to answer). Every peer serving that same image (the same
/// SHA-256) is kept as a source of its blocks; every other peer is
/// skipped with its reason, for the console.
public enum PeerSelection {
    /// A peer that answered, and its manifest or why it could not be read.
    public struct Candidate: Sendable {
        public var offer: Discovery.Offer
        public var manifest: Result<Manifest, SpiritError>

        public init(offer: Discovery.Offer, manifest: Result<Manifest, SpiritError>) {
            self.offer = offer
            self.manifest = manifest
        }
    }

    public struct Choice: Sendable {
        public var manifest: Manifest
        /// The peers serving the chosen image, the first chosen.
        public var peers: [Discovery.Offer]
        /// Everyone else, with why.
        public var skipped: [(offer: Discovery.Offer, reason: String)]

        /// The console's account: who was chosen and why the others were not.
        public var lines: [String] {
            let others = peers.count > 1 ? " (and \(peers.count - 1) more peer(s) serving the same image: "
                + peers.dropFirst().map { "\($0.host):\($0.port)" }.joined(separator: ", ") + ")" : ""
            return ["chose peer \(peers[0].host):\(peers[0].port): version \(manifest.version), image \(manifest.sha256.prefix(12)), "
                + "the newest trusted" + others]
                + skipped.map { "skipped peer \($0.offer.host):\($0.offer.port): \($0.reason)" }
        }
    }

    /// nil when no peer has an image this initramfs trusts (every
    /// candidate is in `skipped` of the error the caller builds).
    public static func choose(_ candidates: [Candidate], trust: ImageTrust?) -> (choice: Choice?, skipped: [(offer: Discovery.Offer, reason: String)]) {
        var skipped: [(offer: Discovery.Offer, reason: String)] = []
        var trusted: [(offer: Discovery.Offer, manifest: Manifest, order: Int)] = []
        for (order, candidate) in candidates.enumerated() {
            switch candidate.manifest {
            case .failure(let error):
                skipped.append((candidate.offer, "\(error)"))
            case .success(let manifest):
                do {
                    try trust?.check(manifest)
                } catch {
                    skipped.append((candidate.offer, "\(error)"))
                    continue
                }
                if let announced = candidate.offer.sha256, announced != manifest.sha256 {
                    skipped.append((candidate.offer, "it announced image \(announced.prefix(12)) but its manifest is for "
                        + "\(manifest.sha256.prefix(12))"))
                    continue
                }
                trusted.append((candidate.offer, manifest, order))
            }
        }
        guard let best = trusted.min(by: { isNewer($0.manifest, than: $1.manifest) || (!isNewer($1.manifest, than: $0.manifest) && $0.order < $1.order) })
        else { return (nil, skipped) }
        var peers: [Discovery.Offer] = [best.offer]
        for entry in trusted where entry.order != best.order {
            if entry.manifest.sha256 == best.manifest.sha256 && entry.manifest.size == best.manifest.size {
                peers.append(entry.offer)
            } else if entry.manifest.version == best.manifest.version {
                skipped.append((entry.offer, "another build of version \(entry.manifest.version) (image \(entry.manifest.sha256.prefix(12)), "
                    + "built \(entry.manifest.buildTime)); the chosen one was built \(best.manifest.buildTime)"))
            } else {
                skipped.append((entry.offer, "version \(entry.manifest.version) is older than the chosen \(best.manifest.version)"))
            }
        }
        return (Choice(manifest: best.manifest, peers: peers, skipped: skipped), skipped)
    }

    /// Whether `a` is a newer image than `b`: by version (a version that
    /// cannot be read counts below any that can), then by build time.
    public static func isNewer(_ a: Manifest, than b: Manifest) -> Bool {
        let va = try? Version(parsing: a.version)
        let vb = try? Version(parsing: b.version)
        switch (va, vb) {
        case let (x?, y?) where x != y: return x > y
        case (.some, nil): return true
        case (nil, .some): return false
        default: return a.buildTime > b.buildTime
        }
    }
}
