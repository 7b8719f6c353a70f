/// The files through which the cascade, PID 1 and the rescue tools talk.
public enum CascadeFiles {
    /// Extra kernel parameters for the next boot attempt, one line, read
    /// once and deleted by the boot worker: how `spirit-fetch URL` makes the
    /// next attempt boot from that URL.
    public static let bootFlags = "/run/spirit/boot-flags"
    /// The rescue shell's pid, written by PID 1: `spirit-fetch` ends that
    /// shell so that PID 1 tries the boot again.
    public static let rescueShellPID = "/run/spirit/rescue-shell.pid"
    /// Why each source gave up in the last cascade, one `source: reason`
    /// a line, for `spirit-diag`.
    public static let report = "/run/spirit/cascade.txt"
    /// The verified manifest of the image in RAM, for `spirit-usb`.
    public static let manifest = "/run/spirit/image.manifest.json"
}
