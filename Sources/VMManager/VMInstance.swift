import Glibc
import SpiritCore

/// One VM in the daemon: its definition, its state machine and, while QEMU
/// runs, the process and the two clients. Three locks, so that `vm list`
/// never waits behind a long request: `operation` serialises start, stop,
/// save and restore; `agentLock` one conversation with the guest agent at a
/// time (it takes one client: a second connection would wait silently);
/// `stateLock` the fields `list` reads.
final class VMInstance: @unchecked Sendable {
    let name: String
    let paths: VMPaths.Instance
    let operation = Monitor()
    let agentLock = Monitor()
    let stateLock = Monitor()

    // Under stateLock.
    private var storedDefinition: VMDefinition
    private var storedText: String
    var lifecycle: VMLifecycle
    var pid: pid_t?
    /// QEMU is this daemon's child (else adopted from a previous daemon:
    /// its end is seen by kill(pid, 0), not waitpid).
    var isChild = false
    var agentReady = false
    var qemuVersion = ""
    /// Bumped at each new QEMU process, so that a watcher of an old one stops.
    var generation = 0
    /// swtpm, this daemon's child, for a VM with a TPM.
    var tpmPID: pid_t?

    // Under operation (QMP) and agentLock (agent).
    var qmp: QMPClient?
    var qmpStream: SocketStream?
    var agent: GuestAgentClient?
    var agentStream: SocketStream?

    init(definition: VMDefinition, text: String, paths: VMPaths.Instance, state: VMState) {
        self.name = definition.name
        self.storedDefinition = definition
        self.storedText = text
        self.paths = paths
        self.lifecycle = VMLifecycle(name: definition.name, state: state)
    }

    /// The definition, as read last (a changed file takes effect at the next start).
    var definition: VMDefinition { stateLock.withLock { storedDefinition } }
    var definitionText: String { stateLock.withLock { storedText } }

    func update(_ definition: VMDefinition, text: String) {
        stateLock.withLock {
            storedDefinition = definition
            storedText = text
        }
    }

    var snapshot: (state: VMState, agentReady: Bool, pid: pid_t?, reason: String?, memoryMiB: Int) {
        stateLock.withLock { (lifecycle.state, agentReady, pid, lifecycle.reason, storedDefinition.memoryMiB) }
    }

    var definitionSHA256: String {
        var hash = SHA256Stream()
        Array(definitionText.utf8).withUnsafeBytes { hash.update($0) }
        return hash.hex()
    }

    func closeClients() {
        qmpStream?.close()
        qmpStream = nil
        qmp = nil
        agentLock.withLock {
            agentStream?.close()
            agentStream = nil
            agent = nil
        }
    }
}

/// Wall-clock time (the guest's clock after a restore, a state's date).
enum WallClock {
    static var nanoseconds: Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
