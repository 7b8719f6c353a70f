import Overlay
import SpiritCore

/// `spirit boot-plan --manifest FILE --mem-total SIZE [--upper zram|tmpfs]
/// [--ram-limit MiB] [--algorithms "lzo lz4 zstd"] [--zram N]`: the stage-1
/// RAM-root plan and PID 1's switch_root as the shell commands they stand
/// for, on any machine and without root; then what a failure after the last
/// step would undo. A boot with crom.debug=1 prints the same plan, made from
/// the machine's own figures.
enum BootPlanCommand {
    static let usage = "boot-plan --manifest FILE --mem-total SIZE (e.g. 2G, 512M) [--upper zram|tmpfs] [--ram-limit MiB] "
        + "[--algorithms \"lzo lzo-rle lz4 zstd\"] [--zram N]"

    static func run(_ arguments: [String]) -> Int32 {
        exitStatus {
            let options = try Options(arguments)
            guard options.words.isEmpty else { throw UsageError(message: "unexpected '\(options.words[0])'; \(usage)") }
            let path = try options.required("manifest")
            guard let memTotal = parseSize(try options.required("mem-total")) else {
                throw UsageError(message: "--mem-total \(options.named["mem-total"] ?? ""): expected a size such as 2G, 512M or 1048576K")
            }
            let upper = try options.named["upper"].map { text throws(UsageError) in
                guard let upper = UpperLayer(rawValue: text) else { throw UsageError(message: "--upper \(text): expected zram or tmpfs") }
                return upper
            } ?? .zram
            let ramLimit = try options.named["ram-limit"].map { text throws(UsageError) in
                guard let mib = Int(text), mib > 0 else { throw UsageError(message: "--ram-limit \(text): expected MiB, a whole number above 0") }
                return mib
            }
            let zram = try options.named["zram"].map { text throws(UsageError) in
                guard let number = Int(text), number >= 0 else { throw UsageError(message: "--zram \(text): expected a device number") }
                return number
            } ?? 0
            let manifest = try Manifest.parse(try Kernel.readFile(path))
            let inputs = RootPlan.Inputs(manifest: manifest, memTotalKiB: memTotal >> 10,
                                         algorithmsOffered: options.named["algorithms"] ?? Zram.preferredAlgorithms.reversed().joined(separator: " "),
                                         upper: upper, ramLimitMiB: ramLimit, zramNumber: zram)
            let stageOne = try RootPlan().stageOne(inputs)
            let switchRoot = RootPlan.switchRoot(newRoot: RootLayout().sysroot, initPath: "/sbin/init", arguments: ["--switched-root"])
            print("# Spirit's stage-1 plan for \(manifest.image) (\(manifest.version)), MemTotal \(memTotal >> 20) MiB")
            print(stageOne.shell)
            print("# the worker, then PID 1 (from `cd /sysroot` on), once /sysroot is built")
            print(switchRoot.shell)
            print("# a failure undoes what was done, in this order:")
            print(stageOne.undoShell.split(separator: "\n").map { "#   " + $0 }.joined(separator: "\n"))
        }
    }

    /// `2G`, `512M`, `1048576K` or bytes.
    static func parseSize(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        if let last = text.uppercased().last, let unit = units[last] {
            return Int64(text.dropLast()).flatMap { $0 > 0 ? $0 * unit : nil }
        }
        return Int64(text).flatMap { $0 > 0 ? $0 : nil }
    }
}
