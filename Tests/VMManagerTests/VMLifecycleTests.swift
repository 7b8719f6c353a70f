import SpiritCore
import Testing
import VMManager

/// The state machine on a fake clock (milliseconds passed by hand).
@Suite struct VMLifecycleTests {
    @Test func startThenStopThroughTheAgentThenACPIThenQuitThenKill() throws {
        var vm = VMLifecycle(name: "testvm")
        #expect(try vm.handle(.start(hasSavedState: false), now: 0) == [.launch(incoming: false)])
        #expect(vm.state == .starting)
        #expect(try vm.handle(.launched(running: true), now: 900) == [])
        #expect(vm.state == .running)
        #expect(try vm.handle(.stop(force: false, agentReady: true), now: 1000) == [.agentShutdown])
        #expect(vm.state == .stopping && vm.stopStep == .agent)
        #expect(vm.tick(now: 30_999) == [])
        #expect(vm.tick(now: 31_000) == [.acpiPowerdown])
        #expect(vm.tick(now: 60_999) == [])
        #expect(vm.tick(now: 61_000) == [.quit])
        #expect(vm.tick(now: 66_000) == [.kill])
        #expect(vm.tick(now: 99_000) == [])
        #expect(try vm.handle(.exited(.signaled(9)), now: 66_010) == [])
        #expect(vm.state == .stopped && vm.reason == "QEMU was killed by SIGKILL (Killed)")
    }

    @Test func withoutAnAgentTheStopBeginsWithACPI() throws {
        var vm = VMLifecycle(name: "v", state: .running, deadlines: StopDeadlines(agentMilliseconds: 10, acpiMilliseconds: 20, quitMilliseconds: 30))
        #expect(try vm.handle(.stop(force: false, agentReady: false), now: 0) == [.acpiPowerdown])
        #expect(vm.tick(now: 20) == [.quit])
        #expect(try vm.handle(.exited(.exited(0)), now: 25) == [])
        #expect(vm.state == .stopped)
    }

    @Test func forceGoesToQuitAndSoDoesAPausedGuest() throws {
        var vm = VMLifecycle(name: "v", state: .running)
        #expect(try vm.handle(.stop(force: true, agentReady: true), now: 0) == [.quit])
        var paused = VMLifecycle(name: "v", state: .paused)
        #expect(try paused.handle(.stop(force: false, agentReady: true), now: 0) == [.quit])
    }

    @Test func aGuestThatPowersOffIsStoppedAndAQEMUThatDiesHasFailed() throws {
        var vm = VMLifecycle(name: "v", state: .running)
        _ = try vm.handle(.exited(.exited(0)), now: 5)
        #expect(vm.state == .stopped)
        var other = VMLifecycle(name: "v", state: .running)
        _ = try other.handle(.exited(.signaled(11)), now: 5)
        #expect(other.state == .failed && other.reason == "QEMU was killed by SIGSEGV (Segmentation fault)")
        var adopted = VMLifecycle(name: "v", state: .running)
        _ = try adopted.handle(.exited(nil), now: 5)
        #expect(adopted.state == .stopped && adopted.reason == "QEMU ended (adopted: its exit status is unknown)")
        var saving = VMLifecycle(name: "v", state: .saving)
        _ = try saving.handle(.exited(.exited(1)), now: 5)
        #expect(saving.state == .failed && saving.reason == "QEMU exited with status 1 while saving")
    }

    @Test func pauseAndResume() throws {
        var vm = VMLifecycle(name: "v", state: .running)
        #expect(try vm.handle(.pause, now: 0) == [.stopCPUs])
        #expect(try vm.handle(.paused, now: 1) == [])
        #expect(vm.state == .paused)
        #expect(throws: VMError("v is paused: only a running VM can be paused", code: 100)) { try vm.handle(.pause, now: 2) }
        #expect(try vm.handle(.resume, now: 3) == [.resume])
        #expect(try vm.handle(.resumed, now: 4) == [])
        #expect(vm.state == .running)
        #expect(throws: VMError("v is running: only a paused VM can be resumed", code: 100)) { try vm.handle(.resume, now: 5) }
    }

    @Test func preconditionsAreSaidBeforeAnythingIsDone() throws {
        var vm = VMLifecycle(name: "v", state: .running)
        #expect(throws: VMError("v is running: it is already started", code: 100)) { try vm.handle(.start(hasSavedState: false), now: 0) }
        var stopped = VMLifecycle(name: "v", state: .stopped)
        #expect(throws: VMError("v is stopped: there is nothing to stop", code: 100)) { try stopped.handle(.stop(force: false, agentReady: true), now: 0) }
        #expect(throws: VMError("v is stopped: only a running or paused VM can be saved", code: 100)) { try stopped.handle(.save(blockedReasons: []), now: 0) }
    }

    @Test func aBlockedSaveNeverStopsTheCPUs() throws {
        var vm = VMLifecycle(name: "windows", state: .running)
        #expect(throws: VMError("windows cannot be saved: VFIO device doesn't support migration (it keeps running)", code: 100)) {
            try vm.handle(.save(blockedReasons: ["VFIO device doesn't support migration"]), now: 0)
        }
        #expect(vm.state == .running)
    }

    @Test func saveThenRestore() throws {
        var vm = VMLifecycle(name: "v", state: .running)
        #expect(try vm.handle(.save(blockedReasons: []), now: 0) == [.migrateOut])
        #expect(vm.state == .saving)
        #expect(throws: VMError("v is saving: wait for the save to end", code: 100)) { try vm.handle(.stop(force: true, agentReady: false), now: 1) }
        #expect(try vm.handle(.saveCompleted, now: 800) == [.quit])
        _ = try vm.handle(.exited(.exited(0)), now: 900)
        #expect(vm.state == .saved)
        #expect(try vm.handle(.start(hasSavedState: true), now: 1000) == [.launch(incoming: true)])
        #expect(vm.state == .restoring)
        #expect(try vm.handle(.launched(running: false), now: 1200) == [.migrateIn])
        #expect(vm.state == .restoring)
        #expect(try vm.handle(.restoreCompleted, now: 1500) == [.resume, .discardSavedState])
        #expect(vm.state == .running)
    }

    @Test func aFailedSaveRunsTheGuestAgain() throws {
        var vm = VMLifecycle(name: "v", state: .running)
        _ = try vm.handle(.save(blockedReasons: []), now: 0)
        #expect(try vm.handle(.failed("the state file's disk is full"), now: 10) == [.resume])
        #expect(vm.state == .running && vm.reason == "the state file's disk is full")
    }

    @Test func aStartQEMUNeverAnsweredFails() throws {
        var vm = VMLifecycle(name: "v", deadlines: StopDeadlines(startMilliseconds: 5000))
        _ = try vm.handle(.start(hasSavedState: false), now: 0)
        #expect(vm.tick(now: 4999) == [])
        #expect(vm.tick(now: 5000) == [.kill])
        #expect(vm.state == .failed && vm.reason == "QEMU did not become ready within 5 s")
    }

    @Test func aRestoreThatFailsKillsTheNewQEMUAndKeepsWhy() throws {
        var vm = VMLifecycle(name: "v", state: .saved)
        _ = try vm.handle(.start(hasSavedState: true), now: 0)
        #expect(try vm.handle(.failed("QEMU refused migrate-incoming: load of migration failed"), now: 300) == [.kill])
        #expect(vm.state == .failed)
        _ = try vm.handle(.exited(.signaled(9)), now: 310)
        #expect(vm.state == .failed && vm.reason == "QEMU refused migrate-incoming: load of migration failed")
    }
}

@Suite struct SavedStateTests {
    static let saved = SavedState(definitionSHA256: "aa", qemuVersion: "7.2.22",
                                  disks: [.init(name: "data", path: "/d.raw", size: 1 << 20, overlay: "/run/x/disk-data.qcow2", overlaySize: 196_624)],
                                  streamBytes: 101_697_623, streamSHA256: "bb", savedAt: 1_764_115_200)

    @Test func roundTrips() throws {
        #expect(try SavedState.parse(Self.saved.json) == Self.saved)
    }

    @Test func theSameMachineMatches() {
        #expect(Self.saved.mismatch(with: Self.saved) == nil)
    }

    @Test func everyDifferenceIsNamed() {
        var other = Self.saved
        other.definitionSHA256 = "cc"
        #expect(Self.saved.mismatch(with: other) == "the VM's definition changed since the save")
        other = Self.saved
        other.qemuVersion = "8.2.0"
        #expect(Self.saved.mismatch(with: other) == "it was saved by QEMU 7.2.22, this is QEMU 8.2.0")
        other = Self.saved
        other.streamBytes = 4096
        #expect(Self.saved.mismatch(with: other) == "the state file has 4096 bytes, 101697623 were saved (truncated or replaced)")
        other = Self.saved
        other.streamSHA256 = "dd"
        #expect(Self.saved.mismatch(with: other) == "the state file's SHA-256 is not the one saved (corrupt)")
        other = Self.saved
        other.disks[0].overlaySize = nil
        #expect(Self.saved.mismatch(with: other) == "the overlay of the disk data changed or is gone since the save")
        other = Self.saved
        other.disks[0].size = 2 << 20
        #expect(Self.saved.mismatch(with: other) == "the disk data (/d.raw) is not the one the state was saved with")
    }

    @Test func aBrokenRecordIsRefused() {
        #expect(throws: VMError.self) { try SavedState.parse("{\"format\": 1}") }
        #expect(throws: VMError.self) { try SavedState.parse("not json") }
    }
}
