import BootCascade
import Glibc
import Net
import Overlay
import SpiritCore

/// `spirit image …`: the host side of the manifest contract, used by
/// `make rootfs` and by anyone checking an image by hand.
enum ImageCommand {
    static func run(_ arguments: [String]) -> Int32 {
        let console = Console.tool
        guard let verb = arguments.first else {
            return Usage.fail("image needs keygen, manifest, release, verify, fetch or check-version")
        }
        if verb == "check-version" { return checkVersion(Array(arguments.dropFirst()), console: console) }
        return exitStatus {
            let options = try Options(Array(arguments.dropFirst()))
            switch verb {
            case "keygen": try keygen(options)
            case "manifest": try manifest(options)
            case "release": try release(options)
            case "verify": try verify(options, console: console)
            case "fetch": try fetch(options, console: console)
            default: throw UsageError(message: "unknown image command '\(verb)'")
            }
        }
    }

    static func keygen(_ options: Options) throws {
        guard options.words.count == 1, let path = options.words.first else { throw UsageError(message: "keygen takes one KEY path") }
        guard !Kernel.exists(path) else { throw SpiritError("\(path) exists; remove it first to make a new key") }
        let (privateKey, publicKey) = SigningKey.generate()
        try Kernel.writeFile(path, Hex.encode(privateKey) + "\n", mode: 0o600)
        try Kernel.writeFile(path + ".pub", Hex.encode(publicKey) + "\n")
        print("spirit: wrote \(path) and \(path).pub")
    }

    static func manifest(_ options: Options) throws {
        let imagePath = try options.required("image")
        let key = try SigningKey.read(try options.required("key"))
        let buildTime = options.named["build-time"].map { Int64($0) } ?? Int64(time(nil))
        guard let buildTime, buildTime >= 0 else { throw UsageError(message: "--build-time takes whole seconds since 1970") }
        // The block list lets a boot from several Nodus peers check each
        // block and name a peer that sends a bad one (BlockHashes).
        let blockSize = options.named["block-size"].map { Int($0) } ?? BlockHashes.defaultBlockSize
        guard let blockSize, blockSize == 0 || Manifest.Blocks.isValid(blockSize: blockSize) else {
            throw UsageError(message: "--block-size takes 0 (no block list) or a power of two from 4096 to 16777216")
        }
        let measured = try ImageCopy.measure(imagePath)
        let name = String(imagePath.split(separator: "/").last ?? "")
        var blocks: Manifest.Blocks?
        if blockSize > 0 {
            blocks = Manifest.Blocks(blockSize: blockSize, sha256: try ImageCopy.blockHashes(imagePath, blockSize: blockSize).listSHA256)
        }
        let manifest = try Manifest(image: name, size: measured.size, sha256: measured.sha256,
                                    version: try version(options), buildTime: buildTime, blocks: blocks).signed(privateKey: key)
        if let out = options.named["out"] {
            try Kernel.writeFileAtomically(out, manifest.json)
        } else {
            print(manifest.json, terminator: "")
        }
    }

    /// `image release DIR --key KEY`: DIR/release.json, signed, listing the
    /// kernel, the initramfs, the image and its manifest, and every layer in
    /// DIR/layers/ with its manifest: the set `spirit upgrade` writes as a
    /// slot. The release's version is the image manifest's.
    static func release(_ options: Options) throws {
        guard options.words.count == 1, let directory = options.words.first else { throw UsageError(message: "release takes one DIR") }
        let key = try SigningKey.read(try options.required("key"))
        let manifest = try Manifest.parse(try Kernel.readFile(directory + "/" + MediaFiles.manifest))
        var paths = ReleaseManifest.requiredFiles + [manifest.image]
        let layers = directory + "/" + LayerShelf.directory
        if Kernel.exists(layers) {
            let names = Kernel.directoryEntries(layers).map(\.name).filter { $0.hasSuffix(".squashfs") || $0.hasSuffix(".json") }
            paths += names.sorted().map { LayerShelf.directory + "/" + $0 }
        }
        var files: [ReleaseManifest.File] = []
        for path in paths {
            try ReleaseManifest.checkPath(path)
            guard Kernel.exists(directory + "/" + path) else { throw SpiritError("\(directory) has no \(path)") }
            let measured = try ImageCopy.measure(directory + "/" + path)
            files.append(.init(path: path, size: measured.size, sha256: measured.sha256))
        }
        let release = try ReleaseManifest(version: manifest.version, buildTime: manifest.buildTime, files: files).signed(privateKey: key)
        try Kernel.writeFileAtomically(directory + "/" + ReleaseManifest.fileName, release.json)
        print("spirit: \(directory)/\(ReleaseManifest.fileName): release \(release.version), \(files.count) files, \(release.totalSize >> 20) MiB")
    }

    /// --version, checked: an image whose version cannot be read would be
    /// refused by every initramfs with a minimum (anti-rollback).
    static func version(_ options: Options) throws -> String {
        let text = try options.required("version")
        do {
            _ = try Version(parsing: text)
        } catch {
            throw UsageError(message: "--version: \(error)")
        }
        return text
    }

    /// `check-version V`: whether V is a version as manifests and the
    /// initramfs's minimum take it (for the build scripts: MIN_VERSION).
    /// Prints it and exits 0, or says what is wrong and exits 1.
    static func checkVersion(_ arguments: [String], console: Console) -> Int32 {
        guard arguments.count == 1, let text = arguments.first else { return Usage.fail("check-version takes one VERSION") }
        do {
            print(try Version(parsing: text))
            return 0
        } catch {
            console.error("\(error)")
            return 1
        }
    }

    static func verify(_ options: Options, console: Console) throws {
        let manifest = try Manifest.parse(try Kernel.readFile(try options.required("manifest")))
        try manifest.verifySignature(publicKey: try SigningKey.read(try options.required("public-key")))
        let measured = try ImageCopy.measure(try options.required("image"), expectedSize: manifest.size)
        try manifest.verifyImage(size: measured.size, sha256: measured.sha256)
        console.info("\(manifest.image) \(manifest.version): signature and SHA-256 \(manifest.sha256.prefix(12)) match")
    }

    /// The HTTP source's download on the host: the manifest under a base
    /// URL, its signature checked, then the image streamed to a file while
    /// hashed (resumed with Range after a broken connection), exactly as
    /// the boot copies it into RAM. A mismatch removes the file.
    static func fetch(_ options: Options, console: Console) throws {
        let base = try HTTPURL.parse(try options.required("url"))
        let publicKey = try SigningKey.read(try options.required("public-key"))
        let out = try options.required("out")
        let found = try HTTPSource.fetchManifest(base: base, idleMillis: 10_000, console: console)
        try found.manifest.verifySignature(publicKey: publicKey)
        var stream = try found.openImage()
        defer { stream.close() }
        do {
            let measured = try ImageCopy.copy(from: &stream, to: out, expectedSize: found.manifest.size)
            try found.manifest.verifyImage(size: measured.size, sha256: measured.sha256)
        } catch {
            Kernel.remove(out)
            throw error
        }
        console.info("\(out): \(found.manifest.image) \(found.manifest.version) from \(base), signature and SHA-256 "
                     + "\(found.manifest.sha256.prefix(12)) match")
    }
}
