/// Every file through which Spirit's processes hand things to each other
/// under /run/spirit (one table: PID 1, the boot worker, the cascade, the
/// rescue tools, the supervisor and the services read the same names), and
/// the exit code that means "go to the rescue shell".
public enum RunFiles {
    public static let directory = "/run/spirit"
    /// The boot's flags, parsed and checked once by the boot worker
    /// (BootConfig.json): PID 1 in stage 2, the supervisor and the services
    /// read this instead of /proc/cmdline.
    public static let bootConfig = directory + "/boot-config.json"
    /// Extra kernel parameters for the next boot attempt, one line, read
    /// once and deleted by the boot worker: how `spirit-fetch URL` makes the
    /// next attempt boot from that URL.
    public static let bootFlags = directory + "/boot-flags"
    /// The rescue shell's pid, written by PID 1: `spirit-fetch` ends that
    /// shell so that PID 1 tries the boot again.
    public static let rescueShellPID = directory + "/rescue-shell.pid"
    /// Why each source gave up in the last cascade, one `source: reason`
    /// a line, for `spirit-diag`.
    public static let cascadeReport = directory + "/cascade.txt"
    /// The verified manifest of the image in RAM, for `spirit-usb`.
    public static let imageManifest = directory + "/image.manifest.json"
    // The boot timeline, timeline.jsonl and timeline.json, is Timeline's
    // (its directory can be another in tests).
    /// The add-on layers in RAM and how each joined (LayerState).
    public static let layers = directory + "/layers.json"
    /// The boot worker's pid, for a person at a break shell.
    public static let workerPID = directory + "/worker.pid"
    /// A streaming boot's `spirit nodus hydrate`, spared by PID 1 at switch_root.
    public static let hydratorPID = directory + "/hydrate.pid"
    /// Why the boot worker gave up; PID 1 prints it as `spirit: rescue: …`.
    public static let rescueReason = directory + "/rescue-reason"
    /// Written by the boot worker when /sysroot is assembled: PID 1 then
    /// switches into it.
    public static let rootReady = directory + "/root-ready"
    /// What the boot came from (BootMedium): the disk, its filesystem and
    /// UUID, the folder on it; `spirit persist` writes there.
    public static let bootMedium = directory + "/boot-medium.json"
    /// What stage 1 did with the persistence archive, one line, for
    /// `spirit persist status`.
    public static let persistReport = directory + "/persist-boot.txt"
    /// The supervisor's control socket (`spiritctl`, and the commands and
    /// daemons that ask it for the services' status).
    public static let controlSocket = directory + "/control.sock"
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
    /// The lowest image version this initramfs boots (anti-rollback), one
    /// line; `make initramfs` writes MIN_VERSION there. None: no minimum.
    public static let minimumVersion = "/etc/spirit/minimum-version"
}

public enum SpiritVersion {
    public static let string = "0.1.0"
}
