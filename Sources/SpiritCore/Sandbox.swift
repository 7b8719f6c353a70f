/// What a service may not do: systemd's proven subset (NoNewPrivileges,
/// CapabilityBoundingSet, ProtectSystem/ReadOnlyPaths/ReadWritePaths,
/// PrivateTmp), applied by the spawned child before exec (spawn.c).
public struct Sandbox: Sendable, Equatable {
    /// setuid bits and file capabilities give nothing (PR_SET_NO_NEW_PRIVS).
    public var noNewPrivileges = false
    /// The capabilities it keeps; nil keeps them all.
    public var capabilities: Set<Capability>? = nil
    /// `/` read-only in its own mount namespace, but for `writablePaths`.
    public var readOnlyRoot = false
    public var writablePaths: [String] = []
    public var readOnlyPaths: [String] = []
    /// Its own empty /tmp.
    public var privateTmp = false

    public init() {}

    /// Whether anything needs a mount namespace of its own.
    public var needsMountNamespace: Bool { readOnlyRoot || privateTmp || !readOnlyPaths.isEmpty || !writablePaths.isEmpty }

    /// Bit N for capability N: what the child keeps.
    public var capabilityMask: UInt64 {
        (capabilities ?? []).reduce(0) { $0 | (1 << UInt64($1.rawValue)) }
    }

    /// The paths a mount needs that are not there: a mount on a missing
    /// path would fail in the child with only ENOENT to say so.
    public func missingPaths(exists: (String) -> Bool) -> [String] {
        (writablePaths + readOnlyPaths + (privateTmp ? ["/tmp"] : [])).filter { !exists($0) }
    }

    /// `no-new-privileges, keeps net_admin net_raw, read-only / but /run, private /tmp`.
    public var summary: String {
        var parts: [String] = []
        if noNewPrivileges { parts.append("no-new-privileges") }
        if let capabilities {
            parts.append(capabilities.isEmpty ? "no capabilities" : "keeps " + capabilities.sorted().map(\.name).joined(separator: " "))
        }
        if readOnlyRoot { parts.append("read-only /" + (writablePaths.isEmpty ? "" : " but " + writablePaths.joined(separator: " "))) }
        if !readOnlyPaths.isEmpty { parts.append("read-only " + readOnlyPaths.joined(separator: " ")) }
        if privateTmp { parts.append("private /tmp") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}

/// Linux capabilities by number (linux/capability.h), named as
/// capabilities(7) names them without the `CAP_` prefix.
public enum Capability: Int, Sendable, CaseIterable, Comparable {
    case chown = 0, dacOverride, dacReadSearch, fowner, fsetid, kill, setgid, setuid, setpcap, linuxImmutable, netBindService,
         netBroadcast, netAdmin, netRaw, ipcLock, ipcOwner, sysModule, sysRawio, sysChroot, sysPtrace, sysPacct, sysAdmin, sysBoot,
         sysNice, sysResource, sysTime, sysTtyConfig, mknod, lease, auditWrite, auditControl, setfcap, macOverride, macAdmin, syslog,
         wakeAlarm, blockSuspend, auditRead, perfmon, bpf, checkpointRestore

    /// The kernel's name without `CAP_`, lower case: the case's own name
    /// with an underscore before each word (`dacOverride` → `dac_override`).
    public var name: String {
        var text = ""
        for character in String(describing: self) {
            if character.isUppercase { text += "_" }
            text += character.lowercased()
        }
        return text
    }

    /// `net_admin`, `NET_ADMIN` or `CAP_NET_ADMIN`.
    public init?(name: String) {
        var text = name.lowercased()
        if text.hasPrefix("cap_") { text.removeFirst(4) }
        guard let found = Self.allCases.first(where: { $0.name == text }) else { return nil }
        self = found
    }

    public static func < (a: Capability, b: Capability) -> Bool { a.rawValue < b.rawValue }
}
