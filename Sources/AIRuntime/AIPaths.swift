import SpiritCore

/// Every path the AI runtime uses, under one injectable root (`""` on a
/// Spirit machine; a test directory in host tests; STYLE.md, lesson 4).
public struct AIPaths: Sendable, Equatable {
    public var root: String

    public init(root: String = "") {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    /// The model packs copied into RAM (tmpfs): NAME.gguf beside NAME.json,
    /// each checked against its signed manifest on the way in.
    public var models: String { root + "/run/spirit/models" }
    /// The daemon's control socket (`spirit ai status|load|unload`).
    public var controlSocket: String { root + "/run/spirit/ai.sock" }
    /// The daemon's run directory: llama-server's socket and log.
    public var run: String { root + "/run/spirit/ai" }
    public var llamaSocket: String { run + "/llama.sock" }
    public var llamaLog: String { run + "/llama-server.log" }
    /// Where the ai layer puts llama-server: the x86-64-v3 build (AVX2), and
    /// the portable x86-64-v2 one when the layer carries it.
    public var serverBinaries: String { root + "/usr/libexec/spirit" }
    /// Every action `spirit ask` took, with the words that asked for it.
    public var askLog: String { root + "/run/log/ask.jsonl" }
    public var cpuinfo: String { root + "/proc/cpuinfo" }
    public var meminfo: String { root + "/proc/meminfo" }

    public func model(_ name: String) -> String { models + "/" + ModelManifest.file(name) }
    public func modelManifest(_ name: String) -> String { models + "/" + ModelManifest.manifestFile(name) }
}
