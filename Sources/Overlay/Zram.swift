import SpiritCore

/// The compressed RAM disk that holds the writable layer.
public enum Zram {
    public static let maximumBytes: Int64 = 16 << 30

    /// min(50% of MemTotal, 16 GiB), as the design says; `crom.ram.limit`
    /// replaces the rule.
    public static func sizeBytes(memTotalKiB: Int64, ramLimitMiB: Int?) -> Int64 {
        if let ramLimitMiB { return Int64(ramLimitMiB) << 20 }
        return min(memTotalKiB * 1024 / 2, maximumBytes)
    }

    /// MemTotal from /proc/meminfo, in KiB.
    public static func memTotalKiB(meminfo: String) -> Int64? {
        meminfoKiB("MemTotal", meminfo)
    }

    /// MemAvailable from /proc/meminfo, in KiB.
    public static func memAvailableKiB(meminfo: String) -> Int64? {
        meminfoKiB("MemAvailable", meminfo)
    }

    static func meminfoKiB(_ field: String, _ meminfo: String) -> Int64? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.split(separator: " ").dropFirst().first.flatMap { Int64($0) }
        }
        return nil
    }

    /// zstd, else lz4, else lzo (lzo-rle is lzo's faster form).
    public static let preferredAlgorithms = ["zstd", "lz4", "lzo-rle", "lzo"]

    /// The algorithms to try, best first, of those the kernel lists in
    /// comp_algorithm (`lzo lzo-rle lz4 [zstd]`). The list names what zram
    /// knows; whether the crypto module is there shows only when one is set.
    public static func candidates(available: String) -> [String] {
        let names = available.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { $0.filter { $0 != "[" && $0 != "]" } }
        return preferredAlgorithms.filter { names.contains($0) }
    }

    /// A zram device with no disk size yet: zram0 when it is free, else a
    /// new one from hot_add. Returns its number.
    public static func freeDevice(sys: String = "/sys") throws -> Int {
        if let size = try? Kernel.readText(sys + "/block/zram0/disksize"), size.trimmed == "0" {
            return 0
        }
        let added = try Kernel.readText(sys + "/class/zram-control/hot_add").trimmed
        guard let number = Int(added) else { throw SpiritError("zram hot_add answered '\(added)', not a device number") }
        return number
    }

    /// Sets the best algorithm the kernel accepts (before the size, as the
    /// kernel requires) and the size of zram`number`; returns the algorithm.
    public static func configure(_ number: Int, available: String, bytes: Int64, sys: String = "/sys",
                                 refused: (String, SystemError) -> Void) throws -> String {
        let block = sys + "/block/zram\(number)"
        var chosen: String?
        for algorithm in candidates(available: available) {
            do {
                try Kernel.writeFile(block + "/comp_algorithm", algorithm)
                chosen = algorithm
                break
            } catch {
                refused(algorithm, error)
            }
        }
        guard let chosen else {
            throw SpiritError("zram\(number) accepts none of \(preferredAlgorithms.joined(separator: ", ")) (it lists: \(available.trimmed))")
        }
        try Kernel.writeFile(block + "/disksize", String(bytes))
        return chosen
    }
}
