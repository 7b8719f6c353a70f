import BootCascade
import Glibc
import Net
import Nodus
import Overlay
import SpiritCore
import Testing

/// A folder of model packs and layers as `spirit nodus serve` finds it in
/// RAM, in a temporary directory; packs signed with a key made here.
final class PackFolder {
    let path: String
    let keys = SigningKey.generate()

    init() {
        var template = Array("/tmp/spirit-nodus-shelf-XXXXXX".utf8CString)
        path = String(cString: mkdtemp(&template)!)
    }

    deinit { _ = system("rm -rf '\(path)'") }

    /// NAME.gguf and its signed NAME.json.
    @discardableResult
    func pack(_ name: String, _ bytes: [UInt8]) throws -> ModelManifest {
        try write(ModelManifest.file(name), bytes)
        let measured = try ImageCopy.measure(path + "/" + ModelManifest.file(name))
        let manifest = try ModelManifest(name: name, size: measured.size, sha256: measured.sha256, license: "MIT", source: "a test",
                                         buildTime: 1).signed(privateKey: keys.privateKey)
        try write(ModelManifest.manifestFile(name), Array(manifest.json.utf8))
        return manifest
    }

    func write(_ file: String, _ bytes: [UInt8]) throws {
        try Kernel.writeFile(path + "/" + file, bytes: bytes)
    }
}

/// Plays the peer: its exports by name, each the bytes of a file, as
/// `spirit nodus serve` would hand them out; what was asked is recorded.
final class FakePeer: @unchecked Sendable {
    var files: [String: String] = [:]
    var asked: [String] = []

    init(_ exports: [NBDExport]) {
        for export in exports { for name in export.names { files[name] = export.path } }
    }

    var exports: NodusPeerExports {
        NodusPeerExports(
            origin: "nodus peer 192.0.2.7:10809",
            readSmall: { export in
                self.asked.append(export)
                return try self.files[export].map { try Kernel.readFile($0) }
            },
            open: { export, size in
                self.asked.append(export)
                guard let path = self.files[export] else { throw SpiritError("no export \(export)") }
                #expect(try Kernel.status(path).size == size)
                return try FileImageStream(path: path)
            })
    }
}

/// What `body` threw, as said to a user; nil if it did not throw.
func failure(_ body: () throws -> some Any) -> String? {
    do {
        _ = try body()
        return nil
    } catch {
        return "\(error)"
    }
}

struct NodusShelfTests {
    let gguf = Array("GGUF".utf8) + (0..<4096).map { UInt8($0 % 251) }

    @Test func exportNamesFollowTheItemsFolderAndKind() {
        #expect(NodusExports.layers == "layers")
        #expect(NodusExports.models == "models")
        #expect(NodusExports.item(LayerManifest.self, "vm") == "layer/vm")
        #expect(NodusExports.itemManifest(LayerManifest.self, "vm") == "layer/vm.json")
        #expect(NodusExports.item(ModelManifest.self, "smollm2-135m") == "model/smollm2-135m")
        #expect(NodusExports.itemManifest(ModelManifest.self, "smollm2-135m") == "model/smollm2-135m.json")
    }

    @Test func aFolderIsServedAndABadPackIsLeftOutByName() throws {
        let folder = PackFolder()
        try folder.pack("tiny", gguf)
        try folder.pack("tampered", gguf)
        var changed = gguf
        changed[100] ^= 1
        try folder.write("tampered.gguf", changed)
        try folder.write("orphan.gguf", gguf)
        try folder.write("Bad Name.json", Array("{}".utf8))
        let other = try folder.pack("renamed", gguf)
        var impostor = other
        impostor.name = "tiny"
        try folder.write("renamed.json", Array(try impostor.signed(privateKey: folder.keys.privateKey).json.utf8))
        try folder.write("index", Array("stale\n".utf8))

        let served = try NodusServedShelf(ModelManifest.self, directory: folder.path)
        #expect(served.names == ["tiny"])
        #expect(served.exports.map(\.names) == [["model/tiny"], ["model/tiny.json"], ["models"]])
        #expect(try Kernel.readText(folder.path + "/index") == "tiny\n")
        let refused = Dictionary(uniqueKeysWithValues: served.refused.map { ($0.name, $0.reason) })
        #expect(refused.keys.sorted() == ["Bad Name", "orphan", "renamed", "tampered"])
        #expect(refused["orphan"] == "orphan.gguf has no manifest (orphan.json)")
        #expect(refused["tampered"]?.contains("tampered.gguf's SHA-256 is") == true)
        #expect(refused["renamed"] == "its manifest names the model tiny")
        #expect(refused["Bad Name"]?.contains("is not a model name") == true)
    }

    @Test func anEmptyOrMissingFolderServesNothingAndWritesNothing() throws {
        let served = try NodusServedShelf(ModelManifest.self, directory: "/nonexistent/models")
        #expect(served.exports.isEmpty && served.names.isEmpty && served.refused.isEmpty)
        let folder = PackFolder()
        _ = try NodusServedShelf(LayerManifest.self, directory: folder.path)
        #expect(!Kernel.exists(folder.path + "/index"))
    }

    /// What the server exports, read back through the client's shelf and
    /// copied as the boot and `spirit ai pull` copy it: byte-exact, checked.
    @Test func aPeersPacksArePulledThroughTheShelf() throws {
        let folder = PackFolder()
        let manifest = try folder.pack("tiny", gguf)
        let peer = FakePeer(try NodusServedShelf(ModelManifest.self, directory: folder.path).exports)
        let shelf = ModelShelf.nodus(peer.exports)
        #expect(shelf.origin == "nodus peer 192.0.2.7:10809")
        #expect(try shelf.names() == ["tiny"])
        let got = try shelf.manifest("tiny")
        #expect(got == manifest)
        try got.verifySignature(publicKey: folder.keys.publicKey)

        let into = PackFolder()
        try RootAssembler.copyItem(got, from: { try shelf.open(got) }, into: into.path, console: Console(kmsgPath: nil, output: 2))
        #expect(try Kernel.readFile(into.path + "/tiny.gguf") == gguf)
        #expect(try ModelManifest.parse(try Kernel.readFile(into.path + "/tiny.json")) == manifest)
        #expect(peer.asked == ["models", "model/tiny.json", "model/tiny"])
    }

    @Test func aPeerWithoutTheItemSaysSo() throws {
        let peer = FakePeer([])
        let shelf = ModelShelf.nodus(peer.exports)
        #expect(try shelf.names() == [])
        #expect(failure { try shelf.manifest("tiny") } == "the nodus peer 192.0.2.7:10809 serves no model tiny")
        #expect(throws: ManifestError.self) { try shelf.manifest("../etc") }
        #expect(peer.asked == ["models", "model/tiny.json"])
        // The same peer's layers are asked for under their own names.
        #expect(try LayerShelf.nodus(peer.exports).names() == [])
        #expect(peer.asked.last == "layers")
    }

    @Test func aBrokenManifestNamesThePeerAndThePack() throws {
        let folder = PackFolder()
        try folder.write("list", Array("tiny\n\n  spare \n".utf8))
        try folder.write("tiny.json", Array("{\"format\": \"crom-spirit-layer/1\"}".utf8))
        let peer = FakePeer([])
        peer.files = ["models": folder.path + "/list", "model/tiny.json": folder.path + "/tiny.json"]
        let shelf = ModelShelf.nodus(peer.exports)
        #expect(try shelf.names() == ["tiny", "spare"])
        #expect(failure { try shelf.manifest("tiny") }?.hasPrefix("nodus peer 192.0.2.7:10809, model tiny: ") == true)
    }

    @Test func fromTakesPeersURLsAndFolders() throws {
        let folders: Set<String> = ["/media", "/media/models", "/packs/models", "/bare"]
        func parse(_ text: String) throws -> ShelfLocation {
            try ShelfLocation.parse(text, directory: "models", exists: { folders.contains($0) })
        }
        #expect(try parse("peer") == .peer)
        #expect(try parse("nodus://192.0.2.7") == .nodus(try SocketAddress(host: "192.0.2.7", port: BootConfig.defaultNBDPort)))
        #expect(try parse("nodus://192.0.2.7:1234") == .nodus(try SocketAddress(host: "192.0.2.7", port: 1234)))
        #expect(try parse("http://boot.lan/spirit/models/") == .http(HTTPURL(host: "boot.lan", port: 80, target: "/spirit/")))
        #expect(try parse("http://boot.lan/spirit/models") == .http(HTTPURL(host: "boot.lan", port: 80, target: "/spirit/")))
        #expect(try parse("http://boot.lan:8080/spirit") == .http(HTTPURL(host: "boot.lan", port: 8080, target: "/spirit")))
        #expect(try parse("/media/") == .folder("/media"))
        #expect(try parse("/packs/models") == .folder("/packs"))
        #expect(failure { try parse("/bare") } == "--from /bare: no models/ folder in it")
        #expect(failure { try parse("/nowhere") } == "--from /nowhere: no such directory (expected a URL, a directory, peer or nodus://ADDR)")
        #expect(throws: SpiritError.self) { try parse("nodus://192.0.2.7:x") }
        // A layer's --from looks for layers/ in the same places.
        #expect(try ShelfLocation.parse("http://boot.lan/layers", directory: "layers", exists: { _ in false })
                    == .http(HTTPURL(host: "boot.lan", port: 80, target: "/")))
    }
}

/// A shelf over several peers serving the same image: the first that
/// answers gives the item, so a peer gone during the copy takes nothing with it.
@Suite struct NodusShelfPeersTests {
    @Test func theFirstPeerThatAnswersGivesTheItemAndNoneAnsweringIsTheFirstError() throws {
        let gone = NodusPeerExports(origin: "gone", readSmall: { _ in throw SpiritError("connection refused") },
                                   open: { _, _ in throw SpiritError("connection refused") })
        let here = NodusPeerExports(origin: "here", readSmall: { name in name == "models" ? Array("a\n".utf8) : nil },
                                    open: { _, _ in throw SpiritError("not in this test") })
        #expect(try NodusPeerExports.firstAnswer([gone, here]) { try $0.readSmall("models") } == Array("a\n".utf8))
        // "No such export" from a peer that answers is an answer.
        #expect(try NodusPeerExports.firstAnswer([gone, here]) { try $0.readSmall("layers") } == nil)
        #expect(throws: SpiritError.self) { try NodusPeerExports.firstAnswer([gone, gone]) { try $0.readSmall("models") } }
    }
}
