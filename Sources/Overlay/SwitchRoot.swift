import SpiritCore

/// switch_root, for PID 1 only: what is checked before anything changes,
/// and the mounts carried into the new root. The steps themselves are
/// RootPlan.switchRoot's plan.
public enum SwitchRoot {
    /// The mounts carried into the new root.
    public static let carried = ["/dev", "/proc", "/sys", "/run"]

    /// Checks what can be checked before anything is changed: a failure here
    /// leaves stage 1 intact for the rescue shell.
    public static func check(newRoot: String, initPath: String) throws {
        guard Kernel.exists(newRoot + initPath) else {
            throw SpiritError("the new root has no \(initPath): is \(newRoot) a Spirit system image?")
        }
        guard try Kernel.status("/").device != Kernel.status(newRoot).device else {
            throw SpiritError("nothing is mounted on \(newRoot)")
        }
    }
}
