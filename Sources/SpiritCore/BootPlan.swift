import Glibc

/// One step of the boot (STYLE.md, lesson 1: the boot is data). A step can
/// be printed as the shell command it stands for, knows how it is undone,
/// and is carried out by `PlanRunner` through a `BootKernel`, so that a test
/// checks a plan and its runner without root.
///
/// Values known only while the plan runs (the loop device the kernel gives,
/// a UUID) are named: a step stores one (`attachLoop(into: "LOOP")`) and a
/// later one uses it as `$LOOP`, as the shell would.
public enum BootStep: Sendable, Equatable {
    case makeDirectory(String)
    case mount(MountSpec)
    /// A sysfs or proc write (`echo VALUE > PATH`), or a small file.
    case writeFile(path: String, contents: String)
    /// The first of `values` that the kernel accepts (zram's algorithms);
    /// `what` names the thing in messages, `preferred` is the best there is.
    case writeFirstAccepted(path: String, values: [String], what: String, preferred: String)
    /// `NAME=$(cat PATH)`.
    case readValue(path: String, into: String)
    /// A tool that must exit 0; arguments[0] is its path.
    case run([String])
    case swapOn(String)
    /// `NAME=$(losetup --find --show --read-only FILE)`, autoclear.
    case attachLoop(file: String, into: String)
    /// Work of Spirit's own (the image copy, its check), done by a handler
    /// the runner is given under `name`; `shell` is what it stands for.
    case action(name: String, shell: String)
    /// Deletes what is on the filesystem of `path`, not crossing mounts and
    /// leaving `keep` (switch_root frees the initramfs so).
    case removeTree(String, keep: String)
    case changeDirectory(String)
    case changeRoot(String)
    /// execve: replaces the process. Its failure is the plan's.
    case execute([String])

    /// The shell command this step stands for.
    public var shell: String {
        switch self {
        case .makeDirectory(let path): "mkdir -p \(path)"
        case .mount(let spec): spec.description
        case .writeFile(let path, let contents):
            contents.contains("\n") || contents.count > 64
                ? "cat > \(path) <<'EOF'\n\(contents.hasSuffix("\n") ? String(contents.dropLast()) : contents)\nEOF"
                : "echo \(contents) > \(path)"
        case .writeFirstAccepted(let path, let values, _, _):
            "for value in \(values.joined(separator: " ")); do echo $value > \(path) && break; done"
        case .readValue(let path, let name): "\(name)=$(cat \(path))"
        case .run(let arguments): arguments.joined(separator: " ")
        case .swapOn(let device): "swapon \(device)"
        case .attachLoop(let file, let name): "\(name)=$(losetup --find --show --read-only \(file))"
        case .action(_, let shell): shell
        case .removeTree(let path, let keep): "find \(path) -xdev -mindepth 1 -path \(keep) -prune -o -delete"
        case .changeDirectory(let path): "cd \(path)"
        case .changeRoot(let path): "chroot \(path)"
        case .execute(let arguments): "exec " + arguments.joined(separator: " ")
        }
    }
}

/// How a done step is taken back when a later one fails.
public enum BootUndo: Sendable, Equatable {
    case unmount(String)
    case swapOff(String)
    case writeFile(path: String, contents: String)
    /// The loop device stored under the name (`losetup -d $LOOP`).
    case detachLoop(String)

    public var shell: String {
        switch self {
        case .unmount(let target): "umount \(target)"
        case .swapOff(let device): "swapoff \(device)"
        case .writeFile(let path, let contents): "echo \(contents) > \(path)"
        case .detachLoop(let name): "losetup -d $\(name)"
        }
    }
}

/// A step in its phase (the timeline's step name: copy, verify, zram…),
/// with its undo.
public struct PlannedStep: Sendable, Equatable {
    public var phase: String
    public var step: BootStep
    public var undo: BootUndo?

    /// The usual undo: a mount is unmounted, a swap turned off, a loop
    /// device detached; `undo` replaces it (a zram size is undone by a reset).
    public init(_ phase: String, _ step: BootStep, undo: BootUndo? = nil) {
        self.phase = phase
        self.step = step
        self.undo = undo ?? Self.defaultUndo(step)
    }

    static func defaultUndo(_ step: BootStep) -> BootUndo? {
        switch step {
        case .mount(let spec) where !spec.flags.contains(.move): .unmount(spec.target)
        case .swapOn(let device): .swapOff(device)
        case .attachLoop(_, let name): .detachLoop(name)
        default: nil
        }
    }
}

/// A boot plan: its steps in order, each phase with what the timeline says
/// of it when it succeeds.
public struct BootPlan: Sendable, Equatable {
    public var steps: [PlannedStep]
    public var details: [String: String]
    /// Phases that begin early: `["zram": "copy"]` runs zram's steps on a
    /// thread of their own from the first step of copy on, beside the
    /// phases between; the plan waits for them where they stand. Such a
    /// phase uses nothing the phases it overlaps make.
    public var beginsWith: [String: String]

    public init(steps: [PlannedStep] = [], details: [String: String] = [:], beginsWith: [String: String] = [:]) {
        self.steps = steps
        self.details = details
        self.beginsWith = beginsWith
    }

    /// Its phases, in order.
    public var phases: [String] {
        var seen: [String] = []
        for step in steps where seen.last != step.phase { seen.append(step.phase) }
        return seen
    }

    /// The plan as the shell commands it stands for, a comment before each phase.
    public var shell: String {
        var lines: [String] = []
        var phase: String?
        for planned in steps {
            if planned.phase != phase {
                phase = planned.phase
                lines.append("# \(planned.phase)" + (details[planned.phase].map { ": \($0)" } ?? "")
                             + (beginsWith[planned.phase].map { " (begun with \($0), beside the phases before it)" } ?? ""))
            }
            lines.append(planned.step.shell)
        }
        return lines.joined(separator: "\n")
    }

    /// What a failure after the last step would undo, in the order it is undone.
    public var undoShell: String {
        steps.reversed().compactMap(\.undo?.shell).joined(separator: "\n")
    }
}
