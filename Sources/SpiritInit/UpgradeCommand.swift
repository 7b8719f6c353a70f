import BootCascade
import Glibc
import Net
import Nexus
import Overlay
import SpiritCommands
import SpiritCore
import Upgrade

/// `spirit upgrade …`: A/B upgrades of a stick made by `make stick` (see
/// the Upgrade target for the slots, the plans and their runner). This file
/// reads the arguments, finds the medium again, and checks the services for
/// a slot's try.
enum UpgradeCommand {
    static let usage = "upgrade [--from URL|DIR] [--dry-run] [--allow-downgrade] | upgrade status | upgrade rollback [--dry-run] | upgrade confirm [--deadline S]"
    /// The service that runs `confirm` (rootfs/services/upgrade.toml).
    static let service = "upgrade"
    /// Every upgrade written, rollback and verdict on a try goes here.
    static let journal = JournalFile(process: "upgrade")

    static func run(_ arguments: [String]) -> Int32 {
        let verbs = ["status", "rollback", "confirm"]
        let verb = arguments.first.flatMap { verbs.contains($0) ? $0 : nil }
        var rest = verb == nil ? arguments : Array(arguments.dropFirst())
        let dryRun = rest.contains("--dry-run"), allowDowngrade = rest.contains("--allow-downgrade")
        rest.removeAll { $0 == "--dry-run" || $0 == "--allow-downgrade" }
        let console = Console.tool
        var code: Int32 = 0
        let status = exitStatus {
            let options = try Options(rest)
            guard options.words.isEmpty, Set(options.named.keys).isSubset(of: ["from", "deadline"]) else {
                throw UsageError(message: "unexpected arguments: \(usage)")
            }
            if verb == "confirm" {
                code = try confirm(options, console: console)
                return
            }
            let context = try SlotContext.current()
            switch verb {
            case "status": print(try context.read().status(context), terminator: "")
            case "rollback":
                let view = try context.read()
                let now = Int64(time(nil))
                if view.state.verdict(booted: context.booted) == .trial {
                    // On a try: give it up; the next boot is the good slot.
                    let good = view.state.good
                    try perform(UpgradePlan.tryFailed(tried: (context.booted, context.version), good: (good, view.version(good)), time: now,
                                                      reason: "given up by hand (spirit upgrade rollback)", medium: context.medium),
                                dryRun: dryRun, console: console)
                    if !dryRun {
                        console.info("upgrade: the try of slot \(context.booted.rawValue) is given up; the next boot is slot \(good.rawValue) (\(view.version(good)))")
                        journal.append("upgrade.rollback", [("from_slot", context.booted.rawValue), ("from_version", context.version),
                                                            ("to_slot", good.rawValue), ("to_version", view.version(good)),
                                                            ("reason", "the try given up by hand")])
                    }
                    return
                }
                // Otherwise the slot that is not the good one becomes it.
                let other = view.state.good.other
                guard let release = view.releases[other] ?? nil else { throw SpiritError("slot \(other.rawValue) holds no release to go back to") }
                try context.checkWhole(other, release)
                let steps = UpgradePlan.rollback(booted: (view.state.good, view.version(view.state.good)), to: (other, release.version),
                                                 release: view.releaseHashes[other] ?? "", time: now, medium: context.medium)
                try perform(steps, dryRun: dryRun, console: console)
                if !dryRun {
                    console.info("upgrade: slot \(other.rawValue) (\(release.version)) is the good slot now; it boots next")
                    journal.append("upgrade.rollback", [("from_slot", view.state.good.rawValue), ("from_version", view.version(view.state.good)),
                                                        ("to_slot", other.rawValue), ("to_version", release.version),
                                                        ("release_sha256", view.releaseHashes[other] ?? ""), ("reason", "asked by hand")])
                }
            default:
                let started = Kernel.bootTimeMicros()
                let source = try UpgradeSource.parse(options.named["from"] ?? BootConfig.current().httpURL)
                let bytes = try source.read(ReleaseManifest.fileName)
                let release: ReleaseManifest
                do {
                    release = try ReleaseManifest.parse(bytes)
                    try release.verifySignature(publicKey: try SigningKey.read(InitramfsFiles.signingPublicKey))
                } catch {
                    throw SpiritError("\(source.location(ReleaseManifest.fileName)): \(error); nothing was written")
                }
                let request = UpgradePlan.Request(release: release, releaseBytes: bytes, source: source, booted: context.booted,
                                                  state: try context.read().state, runningVersion: context.version,
                                                  allowDowngrade: allowDowngrade, time: Int64(time(nil)))
                let steps = try UpgradePlan.upgrade(request, medium: context.medium)
                if !dryRun { console.info("upgrade: \(context.version) to \(release.version) from \(source): \(release.files.count) files, \(release.totalSize >> 20) MiB into slot \(context.booted.other.rawValue)") }
                try perform(steps, dryRun: dryRun, console: console)
                if !dryRun {
                    journal.append("upgrade.armed", [("from_version", context.version), ("to_version", release.version),
                                                     ("slot", context.booted.other.rawValue), ("source", "\(source)"),
                                                     ("release_sha256", Hex.encode(SHA256Digest.of(bytes))), ("signature", "checked")])
                    console.info("upgrade: slot \(context.booted.other.rawValue) holds \(release.version), armed for one try "
                                 + "(written in \(formatMilliseconds(Kernel.bootTimeMicros() - started)) ms); reboot to start it: it is kept "
                                 + "once its services are up, else the next boot is back on slot \(context.booted.rawValue) (\(context.version))")
                }
            }
        }
        return status == 0 ? code : status
    }

    static func perform(_ steps: [UpgradeStep], dryRun: Bool, console: Console) throws {
        if dryRun {
            for step in steps { print(step.shell) }
        } else {
            try UpgradeRunner(console: console).run(steps)
        }
    }

    /// The upgrade service's check at boot: a slot's try is marked good once
    /// every enabled service is up, or recorded as failed (and the next
    /// boot is back on the good slot). Not applicable on any other boot.
    static func confirm(_ options: Options, console: Console) throws -> Int32 {
        guard let deadline = Int64(options.named["deadline"] ?? "90"), deadline > 0 else {
            throw UsageError(message: "--deadline takes whole seconds")
        }
        let context: SlotContext
        do {
            context = try SlotContext.current()
        } catch {
            print("upgrade: nothing to confirm: \(error)")
            return 64
        }
        let view = try context.read()
        let good = (view.state.good, view.version(view.state.good))
        let now = Int64(time(nil))
        switch view.state.verdict(booted: context.booted) {
        case .good, .notChosen:
            print("upgrade: slot \(context.booted.rawValue) (\(context.version)) is not on a try; nothing to confirm")
            return 64
        case .trialDidNotFinish(let tried):
            let reason = "its boot never reached the health check (the kernel, the initramfs or stage 2 failed, or the power was cut)"
            try UpgradeRunner(console: console).run(UpgradePlan.tryFailed(tried: (tried, view.version(tried)), good: good, time: now,
                                                                          reason: reason, medium: context.medium))
            announce(.warning, "upgrade: the try of slot \(tried.rawValue) (\(view.version(tried))) failed: \(reason); this is slot \(context.booted.rawValue) (\(context.version)) again")
            journal.append("upgrade.try-failed", [("slot", tried.rawValue), ("version", view.version(tried)), ("reason", reason),
                                                  ("now", "slot \(context.booted.rawValue) (\(context.version))")])
            return 0
        case .trial:
            let started = Kernel.bootTimeMicros()
            var verdict = HealthVerdict.waiting([])
            while Kernel.bootTimeMicros() - started < deadline * 1_000_000 {
                verdict = HealthVerdict.of(try services(), checker: service)
                if case .waiting = verdict { Kernel.sleep(milliseconds: 500) } else { break }
            }
            let tried = (context.booted, context.version)
            switch verdict {
            case .healthy(let up):
                let detail = "\(up) services up \(formatMilliseconds(Kernel.bootTimeMicros())) ms after the kernel started"
                try UpgradeRunner(console: console).run(UpgradePlan.markGood(booted: context.booted, version: context.version, previous: good,
                                                                              time: Int64(time(nil)), detail: detail, medium: context.medium))
                announce(.info, "upgrade: slot \(context.booted.rawValue) (\(context.version)) marked good: \(detail)")
                journal.append("upgrade.good", [("slot", context.booted.rawValue), ("version", context.version), ("detail", detail)])
                return 0
            case .failed(let names), .waiting(let names):
                let reason = (verdict == .failed(names) ? "failed: " : "not up within \(deadline) s: ") + names.joined(separator: ", ")
                try UpgradeRunner(console: console).run(UpgradePlan.tryFailed(tried: tried, good: good, time: Int64(time(nil)),
                                                                              reason: reason, medium: context.medium))
                journal.append("upgrade.try-failed", [("slot", context.booted.rawValue), ("version", context.version), ("reason", reason),
                                                      ("next", "slot \(good.0.rawValue) (\(good.1))")])
                announce(.error, "upgrade: the try of slot \(context.booted.rawValue) (\(context.version)) failed its health check: \(reason); "
                              + "the next boot is back on slot \(good.0.rawValue) (\(good.1))")
                return 1
            }
        }
    }

    /// A verdict of the upgrade service, in its log and on the console,
    /// where the person at the machine sees what became of the upgrade.
    static func announce(_ level: LogLevel, _ message: String) {
        Console.tool.log(level, message)
        try? Kernel.writeFile("/dev/console", LogFormat.consoleLines(level, message).map { $0 + "\n" }.joined(), append: true)
    }

    /// The supervisor's services, as the health check reads them.
    static func services() throws -> [ServiceHealth] {
        try supervisedServices().map {
            ServiceHealth(name: $0.name, state: $0.state, ready: $0.ready, enabled: $0.enabled, why: $0.why)
        }
    }
}
