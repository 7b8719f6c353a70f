import Crypto
import _CryptoExtras
import SpiritCore

/// Why an archive is not used. Its text is what the console says after
/// `spirit: persist: ignored <file>: `.
public enum PersistError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated(String)
    case damaged(String)
    case notAnArchive(String)
    case needsPassphrase
    case wrongPassphrase

    public var description: String {
        switch self {
        case .truncated(let why): "truncated: \(why)"
        case .damaged(let why): "damaged: \(why)"
        case .notAnArchive(let why): "not a Spirit persistence archive: \(why)"
        case .needsPassphrase: "encrypted: it needs its passphrase, which the boot does not ask for (spirit persist restore --passphrase-file FILE)"
        case .wrongPassphrase: "the passphrase does not open it (wrong passphrase)"
        }
    }
}

/// The persistence file on the boot medium (`spirit.persist`): a ustar
/// archive (TarCodec), or its encryption, followed by one 512-byte trailer
/// block of text:
///
///     SPIRIT-PERSIST 1 cipher=none size=10240 time=1764115200 sha256=<64 hex>\n
///     SPIRIT-PERSIST 1 cipher=chacha20-poly1305 kdf=scrypt n=32768 r=8 p=1 salt=<hex> size=… time=… sha256=…\n
///
/// then NULs. The SHA-256 covers the archive and the trailer's text up to
/// and including `sha256=`: a flipped bit anywhere, a cut file or a
/// trailer from another archive is found before anything is used. GNU tar
/// stops at the archive's two end blocks, so `tar tvf spirit.persist`
/// lists a plain one; `tail -c 512 spirit.persist` shows the trailer.
/// The checksum finds damage, not tampering: whoever holds the medium can
/// write a new archive with a right checksum (an encrypted one is
/// authenticated by the passphrase through ChaCha20-Poly1305).
public enum PersistArchive {
    public static let fileName = "spirit.persist"
    static let magic = "SPIRIT-PERSIST 1 "
    static let trailerSize = 512

    /// scrypt's cost: 2^15 × 8 × 128 bytes = 32 MiB and about 0.1 s here,
    /// as OWASP suggests for interactive use. An archive may ask for more,
    /// up to the bounds below (an archive cannot make the boot spend GiBs).
    public struct KDFParameters: Sendable, Equatable {
        public var n = 1 << 15
        public var r = 8
        public var p = 1
        public init() {}
        public init(n: Int, r: Int, p: Int) { self.n = n; self.r = r; self.p = p }
        var acceptable: Bool { n >= 2 && n <= 1 << 20 && n & (n - 1) == 0 && (1...32).contains(r) && (1...16).contains(p) && n * r <= 1 << 23 }
    }

    /// What the trailer says.
    public struct Trailer: Sendable, Equatable {
        public var encrypted: Bool
        public var kdf: KDFParameters
        public var salt: [UInt8]
        public var size: Int
        public var time: Int64
        public var sha256: String
    }

    /// The file for `entries`: the tar archive, encrypted when a passphrase
    /// is given (a new random salt and nonce each time), and its trailer.
    public static func seal(_ entries: [PersistEntry], time: Int64, passphrase: [UInt8]? = nil,
                            kdf: KDFParameters = KDFParameters()) throws -> [UInt8] {
        let tar = TarCodec.encode(entries)
        var fields = ""
        var payload = tar
        if let passphrase {
            let salt = (0..<16).map { _ in UInt8.random(in: 0...255) }
            fields = "cipher=chacha20-poly1305 kdf=scrypt n=\(kdf.n) r=\(kdf.r) p=\(kdf.p) salt=\(Hex.encode(salt)) "
            let key = try deriveKey(passphrase, salt: salt, kdf)
            let head = magic + fields + "size=\(tar.count + 28) time=\(time)"
            payload = Array(try ChaChaPoly.seal(tar, using: key, authenticating: Array(head.utf8)).combined)
        } else {
            fields = "cipher=none "
        }
        let head = magic + fields + "size=\(payload.count) time=\(time)"
        var hasher = SHA256()
        hasher.update(data: payload)
        hasher.update(data: Array((head + " sha256=").utf8))
        let line = head + " sha256=" + Hex.encode(hasher.finalize()) + "\n"
        var trailer = Array(line.utf8)
        precondition(trailer.count <= trailerSize, "the persistence trailer outgrew its block")
        trailer += [UInt8](repeating: 0, count: trailerSize - trailer.count)
        return payload + trailer
    }

    /// The trailer of a file, checked against the whole file: its size and
    /// SHA-256. Needs no passphrase.
    public static func check(_ file: [UInt8]) throws(PersistError) -> Trailer {
        guard file.count >= trailerSize else {
            throw .truncated("\(file.count) bytes, less than the \(trailerSize)-byte trailer")
        }
        let block = file[(file.count - trailerSize)...]
        guard block.starts(with: magic.utf8), let newline = block.firstIndex(of: UInt8(ascii: "\n")),
              block[(newline + 1)...].allSatisfy({ $0 == 0 }) else {
            throw .notAnArchive("no SPIRIT-PERSIST trailer in its last 512 bytes (cut short, or not written by spirit persist commit)")
        }
        let line = String(decoding: block[..<newline], as: UTF8.self)
        var fields: [String: String] = [:]
        for word in line.dropFirst(magic.count).split(separator: " ") {
            guard let equals = word.firstIndex(of: "=") else { throw .damaged("a bad trailer field '\(word)'") }
            fields[String(word[..<equals])] = String(word[word.index(after: equals)...])
        }
        guard let sizeText = fields["size"], let size = Int(sizeText), let timeText = fields["time"], let time = Int64(timeText),
              let sha = fields["sha256"], sha.count == 64, line.hasSuffix(" sha256=" + sha) else {
            throw .damaged("the trailer lacks its size, time or sha256")
        }
        let payloadSize = file.count - trailerSize
        guard size == payloadSize else {
            throw size > payloadSize ? .truncated("the trailer says \(size) bytes of archive, the file holds \(payloadSize)")
                                     : .damaged("the trailer says \(size) bytes of archive, the file holds \(payloadSize)")
        }
        var hasher = SHA256()
        hasher.update(data: file[..<payloadSize])
        hasher.update(data: Array(line.utf8.dropLast(64)))
        guard Hex.encode(hasher.finalize()) == sha else {
            throw .damaged("its SHA-256 does not match the one in its trailer")
        }
        var trailer = Trailer(encrypted: false, kdf: KDFParameters(), salt: [], size: size, time: time, sha256: sha)
        switch fields["cipher"] {
        case "none": break
        case "chacha20-poly1305":
            guard fields["kdf"] == "scrypt", let n = fields["n"].flatMap({ Int($0) }), let r = fields["r"].flatMap({ Int($0) }),
                  let p = fields["p"].flatMap({ Int($0) }), let salt = fields["salt"].flatMap(Hex.decode), salt.count >= 8 else {
                throw .notAnArchive("an encrypted archive whose trailer does not say its key derivation")
            }
            trailer.encrypted = true
            trailer.kdf = KDFParameters(n: n, r: r, p: p)
            trailer.salt = salt
            guard trailer.kdf.acceptable else { throw .notAnArchive("scrypt parameters out of bounds (n=\(n) r=\(r) p=\(p))") }
        case let other:
            throw .notAnArchive("an unknown cipher '\(other ?? "")'")
        }
        return trailer
    }

    /// The entries of a file, after the whole file is checked; an
    /// encrypted one needs its passphrase.
    public static func open(_ file: [UInt8], passphrase: [UInt8]? = nil) throws(PersistError) -> (Trailer, [PersistEntry]) {
        let trailer = try check(file)
        var tar = Array(file[..<trailer.size])
        if trailer.encrypted {
            guard let passphrase else { throw .needsPassphrase }
            let line = String(decoding: file[(file.count - trailerSize)...].prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            let head = String(decoding: line.utf8.dropLast(64 + " sha256=".utf8.count), as: UTF8.self)
            do {
                let key = try deriveKey(passphrase, salt: trailer.salt, trailer.kdf)
                tar = Array(try ChaChaPoly.open(try ChaChaPoly.SealedBox(combined: tar), using: key, authenticating: Array(head.utf8)))
            } catch {
                throw .wrongPassphrase
            }
        }
        return (trailer, try TarCodec.decode(tar))
    }

    static func deriveKey(_ passphrase: [UInt8], salt: [UInt8], _ kdf: KDFParameters) throws -> SymmetricKey {
        try KDF.Scrypt.deriveKey(from: passphrase, salt: salt, outputByteCount: 32, rounds: kdf.n, blockSize: kdf.r,
                                 parallelism: kdf.p)
    }
}
