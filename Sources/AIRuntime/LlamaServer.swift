/// Which build of llama-server this CPU runs, and the command line it runs
/// with. llama.cpp cannot pick its SIMD code at run time in a static build
/// (GGML_CPU_ALL_VARIANTS needs shared libraries), so the ai layer carries
/// an x86-64-v3 build (AVX2, FMA, F16C, BMI2) and may carry a portable
/// x86-64-v2 one; the choice is made here from /proc/cpuinfo's flags, and
/// said, instead of dying of SIGILL (llama.cpp issues #8734, #6723).
public enum CPUVariant: String, Sendable, Equatable {
    case v3 = "x86-64-v3"
    case v2 = "x86-64-v2"

    public static let v3Flags = ["avx", "avx2", "fma", "f16c", "bmi2"]
    public static let v2Flags = ["sse4_2", "ssse3", "popcnt"]

    /// The binary's file name in /usr/libexec/spirit.
    public var binary: String { self == .v3 ? "llama-server" : "llama-server-v2" }

    /// The first `flags` line of /proc/cpuinfo, as a set.
    public static func flags(cpuinfo: String) -> Set<String> {
        for line in cpuinfo.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }

    /// The best variant the CPU runs among those installed, or why none.
    public static func choose(flags: Set<String>, installed: Set<CPUVariant>) -> Result<CPUVariant, ChoiceError> {
        let runs = { (variant: CPUVariant) in (variant == .v3 ? v3Flags : v2Flags).allSatisfy(flags.contains) }
        if installed.contains(.v3), runs(.v3) { return .success(.v3) }
        if installed.contains(.v2), runs(.v2) { return .success(.v2) }
        if installed.isEmpty { return .failure(ChoiceError(message: "no llama-server is installed (the ai layer brings it: spirit layer add ai)")) }
        let missing = v3Flags.filter { !flags.contains($0) }
        let v2Missing = v2Flags.filter { !flags.contains($0) }
        if !installed.contains(.v2) {
            return .failure(ChoiceError(message: "this CPU lacks \(missing.joined(separator: ", ")) for the x86-64-v3 llama-server, "
                                            + "and the ai layer carries no portable llama-server-v2"))
        }
        return .failure(ChoiceError(message: "this CPU lacks \((missing + v2Missing).joined(separator: ", ")): neither llama-server build runs on it"))
    }

    public struct ChoiceError: Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }
}

/// llama-server's settings for a RAM OS: the defaults are for a desktop with
/// memory to spare (four slots, a context of the model's full 8192 tokens, a
/// prompt cache that may grow to 8 GiB, a web UI), so each one is set.
public struct LlamaSettings: Sendable, Equatable {
    /// Tokens of context for the one slot.
    public var context = 2048
    public var threads: Int
    /// Host-RAM prompt cache in MiB (llama-server's default is 8192).
    public var cacheMiB = 0

    public init(threads: Int, context: Int = 2048, cacheMiB: Int = 0) {
        self.threads = max(1, threads)
        self.context = context
        self.cacheMiB = cacheMiB
    }

    /// The child's argv after the binary's path.
    public func arguments(model: String, alias: String, socket: String) -> [String] {
        ["-m", model, "--host", socket, "--alias", alias, "-c", String(context), "-np", "1", "-t", String(threads),
         "--cache-ram", String(cacheMiB), "--no-webui", "--metrics", "--no-warmup"]
    }
}
