import SpiritCore
import Testing
@testable import Upgrade

/// A block as `grub-editenv FILE create; grub-editenv FILE set slot_good=a`
/// writes it.
func grubenv(_ lines: String) -> [UInt8] {
    let text = GrubEnvironment.header + lines
    return Array(text.utf8) + Array(repeating: UInt8(ascii: "#"), count: GrubEnvironment.size - text.utf8.count)
}

struct GrubEnvironmentTests {
    @Test func readsAndWritesGrubsBlock() throws {
        var environment = try GrubEnvironment(parsing: grubenv("slot_good=a\nsaved_entry=spirit\n"), origin: "grubenv")
        #expect(environment["slot_good"] == "a")
        #expect(environment["saved_entry"] == "spirit")
        environment["slot_try"] = "b"
        environment["slot_good"] = nil
        let bytes = try environment.rendered(origin: "grubenv")
        #expect(bytes.count == 1024)
        #expect(bytes == grubenv("saved_entry=spirit\nslot_try=b\n"))
        #expect(try GrubEnvironment(parsing: bytes, origin: "grubenv") == environment)
    }

    @Test func refusesWhatIsNotABlock() {
        #expect(throws: SpiritError.self) { try GrubEnvironment(parsing: Array(grubenv("").prefix(1000)), origin: "grubenv") }
        var wrongHeader = grubenv("slot_good=a\n")
        wrongHeader[0] = UInt8(ascii: "X")
        #expect(throws: SpiritError.self) { try GrubEnvironment(parsing: wrongHeader, origin: "grubenv") }
        #expect(throws: SpiritError.self) { try GrubEnvironment(parsing: grubenv("no equals sign\n"), origin: "grubenv") }
        // More than 1024 bytes of variables cannot be written in place.
        let full = GrubEnvironment([("x", String(repeating: "y", count: 1010))])
        #expect(throws: SpiritError.self) { try full.rendered(origin: "grubenv") }
    }
}

struct SlotStateTests {
    @Test func verdictsOfEveryBoot() throws {
        let fresh = try SlotState(try GrubEnvironment(parsing: grubenv(""), origin: "e"), origin: "e")
        #expect(fresh == SlotState(good: .a))
        #expect(fresh.verdict(booted: .a) == .good)
        #expect(fresh.verdict(booted: .b) == .notChosen)
        // GRUB consumed the armed try of b: b's boot is the trial.
        let trying = SlotState(good: .a, trying: .b)
        #expect(trying.verdict(booted: .b) == .trial)
        // b's try never came to its health check: this boot is a again.
        #expect(trying.verdict(booted: .a) == .trialDidNotFinish(.b))
        #expect(SlotState(good: .a, armed: .b).nextBoot == .b)
        #expect(SlotState(good: .b, failed: .a).nextBoot == .b)
        #expect(throws: SpiritError.self) { try SlotState(try GrubEnvironment(parsing: grubenv("slot_good=c\n"), origin: "e"), origin: "e") }
    }
}

struct UpgradePlanTests {
    let medium = SlotMedium(device: "/dev/vda1", fstype: "ext4", directory: "")
    let release = ReleaseManifest(version: "0.2.0", buildTime: 1, files: [
        .init(path: "manifest.json", size: 300, sha256: String(repeating: "1", count: 64)),
        .init(path: "kernel", size: 8_000_000, sha256: String(repeating: "2", count: 64)),
        .init(path: "layers/vm.json", size: 400, sha256: String(repeating: "3", count: 64)),
        .init(path: "rootfs.squashfs", size: 60_000_000, sha256: String(repeating: "4", count: 64)),
        .init(path: "initramfs.zst", size: 9_000_000, sha256: String(repeating: "5", count: 64)),
        .init(path: "layers/vm.squashfs", size: 19_000_000, sha256: String(repeating: "6", count: 64)),
    ])

    func request(booted: Slot = .a, state: SlotState = SlotState(good: .a), running: String = "0.1.0",
                 allowDowngrade: Bool = false) -> UpgradePlan.Request {
        UpgradePlan.Request(release: release, releaseBytes: Array("{}".utf8), source: .url("http://10.0.2.2:8080/spirit/"),
                            booted: booted, state: state, runningVersion: running, allowDowngrade: allowDowngrade, time: 100)
    }

    @Test func writesTheOtherSlotWholeThenArmsIt() throws {
        let steps = try UpgradePlan.upgrade(request(), medium: medium)
        let m = "/run/spirit/upgrade-medium"
        let fetched = steps.compactMap { step -> String? in
            if case .fetch(let file, _, _) = step { return file.path }
            return nil
        }
        // What a manifest describes comes before it; the image manifest last.
        #expect(fetched == ["initramfs.zst", "kernel", "rootfs.squashfs", "layers/vm.squashfs", "layers/vm.json", "manifest.json"])
        let shell = steps.map(\.shell)
        #expect(shell.first == "mkdir -p \(m)")
        #expect(shell[1] == "mount -t ext4 -o nosuid,nodev,noexec /dev/vda1 \(m)")
        #expect(shell.contains("rm -rf \(m)/b.new"))
        // The room is measured (counting the other slot's old release)
        // before that release goes.
        let room = try #require(shell.firstIndex { $0.hasPrefix("[ $(($(stat -f -c '%a * %S' \(m)) + $(du -sb \(m)/b 2>/dev/null") })
        let freed = try #require(shell.firstIndex(of: "rm -rf \(m)/b"))
        #expect(room < freed && freed < shell.firstIndex(of: "mkdir -p \(m)/b.new")!)
        #expect(shell.contains { $0.hasPrefix("wget -q -O \(m)/b.new/kernel http://10.0.2.2:8080/spirit/kernel && echo '\(String(repeating: "2", count: 64))  \(m)/b.new/kernel' | sha256sum -c") })
        // The slot becomes b in one rename, and only then does GRUB hear of it.
        let swap = try #require(shell.firstIndex(of: "mv \(m)/b.new \(m)/b"))
        let arm = try #require(shell.firstIndex(of: "grub-editenv \(m)/boot/grub/grubenv set slot_try=b; grub-editenv \(m)/boot/grub/grubenv unset slot_failed"))
        let releaseWrite = try #require(shell.firstIndex { $0.hasPrefix("cat > \(m)/b.new/release.json") })
        let lastFetch = try #require(shell.lastIndex { $0.hasPrefix("wget") })
        #expect(lastFetch < releaseWrite && releaseWrite < swap && swap < arm)
        #expect(shell.last == "umount \(m)")
        guard case .record(let record, let logs) = steps[steps.count - 2] else { Issue.record("no record"); return }
        #expect(record.action == .upgrade && record.from.slot == .a && record.to.slot == .b && record.to.version == "0.2.0")
        #expect(logs == ["\(m)/upgrades.log", "/run/spirit/upgrades.log"])
        // Nothing before the arm touches GRUB's environment: b was not armed.
        #expect(shell[..<arm].allSatisfy { !$0.hasPrefix("grub-editenv") })
    }

    @Test func disarmsTheTargetBeforeWritingIt() throws {
        // b was armed by an earlier upgrade nobody rebooted for.
        let steps = try UpgradePlan.upgrade(request(state: SlotState(good: .a, armed: .b)), medium: medium)
        #expect(steps[3] == .editEnvironment("/run/spirit/upgrade-medium/boot/grub/grubenv", EnvironmentChange(unset: ["slot_try"])))
        // Booted from b (good), the upgrade goes to a.
        let fromB = try UpgradePlan.upgrade(request(booted: .b, state: SlotState(good: .b)), medium: medium)
        #expect(fromB.contains(.makeDirectory("/run/spirit/upgrade-medium/a.new")))
    }

    @Test func refusals() {
        #expect(throws: SpiritError.self) { try UpgradePlan.upgrade(request(running: "0.2.0"), medium: medium) }
        #expect(throws: SpiritError.self) { try UpgradePlan.upgrade(request(running: "0.3.0"), medium: medium) }
        #expect((try? UpgradePlan.upgrade(request(running: "0.3.0", allowDowngrade: true), medium: medium)) != nil)
        // A slot on its try writes nothing until it is marked good.
        #expect(throws: SpiritError.self) { try UpgradePlan.upgrade(request(booted: .b, state: SlotState(good: .a, trying: .b)), medium: medium) }
        #expect(throws: SpiritError.self) { try UpgradePlan.upgrade(request(booted: .b, state: SlotState(good: .a)), medium: medium) }
    }

    @Test func markGoodFailedTryAndRollbackEditOnlyTheEnvironment() {
        let env = "/run/spirit/upgrade-medium/boot/grub/grubenv"
        let good = UpgradePlan.markGood(booted: .b, version: "0.2.0", previous: (.a, "0.1.0"), time: 5, detail: "4 services up", medium: medium)
        #expect(good[2] == .editEnvironment(env, EnvironmentChange(set: [("slot_good", "b")], unset: ["slot_trying", "slot_failed"])))
        let failed = UpgradePlan.tryFailed(tried: (.b, "0.2.0"), good: (.a, "0.1.0"), time: 5, reason: "failed: broken", medium: medium)
        #expect(failed[2] == .editEnvironment(env, EnvironmentChange(set: [("slot_failed", "b")], unset: ["slot_trying"])))
        let back = UpgradePlan.rollback(booted: (.b, "0.2.0"), to: (.a, "0.1.0"), release: "ab", time: 5, medium: medium)
        #expect(back[2] == .editEnvironment(env, EnvironmentChange(set: [("slot_good", "a")], unset: ["slot_try", "slot_trying", "slot_failed"])))
        // Each applied to a block: what GRUB reads next.
        var block = GrubEnvironment([("slot_good", "a"), ("slot_trying", "b")])
        if case .editEnvironment(_, let change) = good[2] { block = change.applied(to: block) }
        #expect(try! SlotState(block, origin: "e") == SlotState(good: .b))
    }

    @Test func recordsReadBack() throws {
        let record = UpgradeRecord(time: 1_764_126_000, action: .tryFailed, from: (.a, "0.1.0"), to: (.b, "0.2.0"),
                                   detail: "failed: broken failed (it's down)")
        let back = try UpgradeRecord(json: record.json)
        #expect(back.action == .tryFailed && back.to.version == "0.2.0" && back.detail == "failed: broken failed (it’s down)")
        #expect(back.summary.hasPrefix("2025-11-26 03:00:00 UTC try-failed a 0.1.0 -> b 0.2.0: failed"))
        #expect(throws: SpiritError.self) { try UpgradeRecord(json: "{\"time\":1}") }
    }

    @Test func health() {
        func service(_ name: String, _ state: String, ready: Bool = true, why: String? = nil) -> ServiceHealth {
            ServiceHealth(name: name, state: state, ready: ready, enabled: true, why: why)
        }
        let up = [service("nodus", "running"), service("nexus", "stopped", why: "not applicable here: no display"),
                  service("upgrade", "running"), service("once", "exited", why: "last exited with status 0")]
        #expect(HealthVerdict.of(up, checker: "upgrade") == .healthy(up: 3))
        #expect(HealthVerdict.of(up + [service("vm", "starting", ready: false)], checker: "upgrade") == .waiting(["vm starting"]))
        #expect(HealthVerdict.of(up + [service("broken", "failed", why: "restarted 5 times in 60 s")], checker: "upgrade")
                == .failed(["broken failed (restarted 5 times in 60 s)"]))
        var off = service("off", "stopped")
        off.enabled = false
        #expect(HealthVerdict.of(up + [off], checker: "upgrade") == .healthy(up: 3))
    }
}
