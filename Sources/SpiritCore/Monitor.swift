import CSpirit
import Glibc

/// A lock and a condition, for the few places where threads of the boot
/// worker wait for each other (the cascade's sources reporting, devices
/// settling). Waits are bounded by a CLOCK_BOOTTIME deadline, like every
/// other deadline of the boot.
public final class Monitor: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // CLOCK_BOOTTIME is not accepted here; the monotonic clock runs at
        // the same rate while the machine is awake, which a boot is.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// `body` with the lock held, or nil at once when another thread holds
    /// it (pthread_mutex_trylock): for a caller that must not wait behind a
    /// long holder (the VM manager's watcher behind a guest command).
    public func withLockIfFree<T>(_ body: () throws -> T) rethrows -> T? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Wakes every waiter; call with the lock held or not.
    public func broadcast() { pthread_cond_broadcast(condition) }

    /// With the lock held: waits for a broadcast or the deadline
    /// (microseconds of CLOCK_BOOTTIME). Spurious wake-ups happen: callers
    /// check their condition in a loop.
    public func wait(untilBootMicros deadline: Int64) {
        let remaining = deadline - Kernel.bootTimeMicros()
        guard remaining > 0 else { return }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let total = Int64(now.tv_nsec) + (remaining % 1_000_000) * 1000
        var until = timespec(tv_sec: now.tv_sec + Int(remaining / 1_000_000) + Int(total / 1_000_000_000),
                             tv_nsec: Int(total % 1_000_000_000))
        pthread_cond_timedwait(condition, mutex, &until)
    }
}

/// Whether the machine's devices have settled: no uevent came and no module
/// load is pending for a quiet window. The idle timeout of Alpine's
/// nlplug-findfs, which restarts on every uevent, instead of the fixed
/// timers of dracut and initramfs-tools. The module loader reports what it
/// sees and does; the boot sources wait on it.
public final class DeviceActivity: @unchecked Sendable {
    /// usb-storage scans a new device after `delay_use` (1 s), with no
    /// uevent in between: a window shorter than that would call a stick
    /// settled before its disk appears.
    public static let defaultQuietMicros: Int64 = 1_200_000

    let monitor = Monitor()
    public let quietMicros: Int64
    private var lastActivity: Int64
    private var pendingLoads = 0
    private var generation = 0
    /// Whether anyone reports uevents at all; without a uevent socket,
    /// devices are as settled as they will get.
    private var listening: Bool
    /// Coldplug reached a fixed point: every device present has had its
    /// driver's load return, and in Linux 6.1 a load returns only after
    /// the probing it started (ATA ports, SCSI scans, NVMe namespaces,
    /// partitions) is done. Internal disks are complete then.
    private var coldplugged = false
    /// A USB mass-storage device is there: usb-storage scans it only
    /// after `delay_use` (1 s) with no uevent in between, so for it the
    /// quiet window still counts.
    private var usbStorage = false

    public init(quietMicros: Int64 = DeviceActivity.defaultQuietMicros, now: Int64 = Kernel.bootTimeMicros(), listening: Bool = true) {
        self.quietMicros = quietMicros
        lastActivity = now
        self.listening = listening
    }

    /// A uevent came (any action).
    public func noteEvent(now: Int64 = Kernel.bootTimeMicros()) {
        monitor.withLock {
            lastActivity = now
            generation += 1
        }
        monitor.broadcast()
    }

    /// A module load starts; `loadEnded` when it is over.
    public func loadStarted(now: Int64 = Kernel.bootTimeMicros()) {
        monitor.withLock {
            pendingLoads += 1
            lastActivity = now
        }
    }

    public func loadEnded(now: Int64 = Kernel.bootTimeMicros()) {
        monitor.withLock {
            pendingLoads = max(0, pendingLoads - 1)
            lastActivity = now
            generation += 1
        }
        monitor.broadcast()
    }

    /// Wakes every waiter without counting as activity (the cascade has
    /// chosen, and sources still waiting should look at their cancel flag).
    public func wakeAll() {
        monitor.withLock { generation += 1 }
        monitor.broadcast()
    }

    /// Nothing will report events (no uevent socket).
    public func stopListening() {
        monitor.withLock { listening = false }
        monitor.broadcast()
    }

    /// Coldplug's fixed point (see `coldplugged`); `usbStorage`: a USB
    /// mass-storage device is present.
    public func coldplugDone(usbStorage: Bool) {
        monitor.withLock {
            coldplugged = true
            self.usbStorage = usbStorage
            generation += 1
        }
        monitor.broadcast()
    }

    /// When the devices will count as settled if nothing else happens;
    /// nil while a module load is pending or coldplug has not finished (the
    /// boot's first loads are not reported here one by one: a quiet window
    /// then would say settled while drivers still load). Once coldplug has reached its
    /// fixed point without a USB mass-storage device, at once (no fixed
    /// wait: research/boot-performance.md measured 1.2 s of it per boot);
    /// else after the quiet window.
    public func settlesAt() -> Int64? {
        monitor.withLock {
            if !listening { return 0 }
            if pendingLoads > 0 || !coldplugged { return nil }
            if !usbStorage { return 0 }
            return lastActivity + quietMicros
        }
    }

    /// What settles the devices, for the debug console: coldplug's fixed
    /// point, or a quiet window after it (a USB storage device is there).
    public var settledBy: String {
        monitor.withLock {
            if !listening { return "no uevents to wait for" }
            if !usbStorage { return "coldplug's fixed point" }
            return "a quiet window of \(quietMicros / 1000) ms (a USB storage device is there)"
        }
    }

    public func isSettled(now: Int64 = Kernel.bootTimeMicros()) -> Bool {
        settlesAt().map { now >= $0 } ?? false
    }

    /// Waits until something happens (an event, the end of a load) or the
    /// deadline; returns at once if something happened since `seen`.
    /// Returns the generation to pass next time.
    @discardableResult
    public func waitForActivity(since seen: Int, until deadline: Int64) -> Int {
        monitor.withLock {
            while generation == seen && Kernel.bootTimeMicros() < deadline {
                monitor.wait(untilBootMicros: deadline)
            }
            return generation
        }
    }

    public var currentGeneration: Int { monitor.withLock { generation } }

    /// Waits until the devices are settled or the deadline passes; true if
    /// settled. `stopping` ends the wait early (false): it is asked after
    /// each wake, so whoever makes it true must also call `wakeAll`.
    public func waitUntilSettled(deadline: Int64, stopping: () -> Bool = { false }) -> Bool {
        var seen = currentGeneration
        while true {
            let now = Kernel.bootTimeMicros()
            if isSettled(now: now) { return true }
            if now >= deadline || stopping() { return false }
            let wake = min(deadline, settlesAt() ?? deadline)
            seen = waitForActivity(since: seen, until: max(wake, now + 1000))
        }
    }
}
