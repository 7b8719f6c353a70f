/// The files through which Spirit's processes talk during the boot, and the
/// exit code that means "go to the rescue shell".
public enum RunFiles {
    public static let directory = "/run/spirit"
    /// The boot worker's pid, for a person at a break shell.
    public static let workerPID = directory + "/worker.pid"
    /// Why the boot worker gave up; PID 1 prints it as `spirit: rescue: …`.
    public static let rescueReason = directory + "/rescue-reason"
    /// Written by the boot worker when /sysroot is assembled: PID 1 then
    /// switches into it.
    public static let rootReady = directory + "/root-ready"
    /// The exit status of a boot worker that wrote a rescue reason.
    public static let rescueExitStatus: Int32 = 3
}

/// Where the image builder puts Spirit's data files in the initramfs.
public enum InitramfsFiles {
    /// The kernel modules stage 1 loads, one name a line (`#` comments).
    public static let bootModules = "/etc/spirit/modules.boot"
    /// The design's module priority groups (`# Priority N` headings).
    public static let modulePriorities = "/etc/modules-load.d/spirit.conf"
    /// The Ed25519 key every image's manifest must be signed with (hex).
    public static let signingPublicKey = "/etc/spirit/signing.pub"
}

public enum SpiritVersion {
    public static let string = "0.1.0"
}
