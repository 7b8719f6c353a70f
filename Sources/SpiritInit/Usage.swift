import Glibc
import SpiritCore

enum Usage {
    /// A usage error: the message on stderr, then the usage; exit code 100.
    static func fail(_ message: String) -> Int32 {
        Console.tool.error(message)
        FileHandleless.writeError(text + "\n")
        return 100
    }

    static let text = """
    usage: spirit <command>
      init            PID 1 (also when started as /init or /sbin/init)
      boot-worker     the stage-1 boot, run by PID 1 in a child
      poweroff        ask PID 1 to stop every process and power off
      reboot          ask PID 1 to stop every process and restart
      halt            ask PID 1 to stop every process and halt
      image keygen KEY
                      make an Ed25519 signing key (KEY, mode 0600) and its public half (KEY.pub)
      image manifest --image FILE --key KEY --version V [--build-time SECONDS] [--out FILE]
                      write the signed manifest of a system image (stdout without --out)
      image verify --image FILE --manifest FILE --public-key FILE
                      check an image against its manifest and the manifest's signature
      install parasite TARGET [--media DIR] [--dry-run] [--force]
                      copy the media into TARGET/CromSpirit (a mounted NTFS partition) with a GRUB entry and a bcdedit script
      modules plan [--root DIR] [--kernel VERSION] [--config DIR] [--files] NAME...
                      the load plan: waves of modules that load in parallel, each after what it needs
      modules lookup [--root DIR] [--kernel VERSION] [--all-aliases] NAME... | -
                      what a name or modalias resolves to, as kmod resolves it (- reads them from stdin)
      modules load [--root DIR] [--kernel VERSION] [--jobs N] NAME...
                      load modules and what they need, in parallel waves (like modprobe -a); N at once (default: CPUs)
      modules missing [--root DIR] [--kernel VERSION]
                      the devices no driver claimed and no module matches (what is missing to reach them)
      modules deps [--root DIR] [--kernel VERSION] [NAME...]
                      each module's dependencies from modules.dep
      time COMMAND [ARGUMENT...]
                      run a command; print how long it took in ms of CLOCK_BOOTTIME on stderr
      timeline [FILE] the boot timeline as a table (FILE: a timeline.json; default /run/spirit/timeline.json)
      version         print the version
    Exit codes: 0 success, 100 usage error, 111 system failure.
    """
}

/// stderr without Foundation's FileHandle.
enum FileHandleless {
    static func writeError(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            bytes = bytes.dropFirst(n)
        }
    }
}
