/// What `@NAME words…` runs in the guest: the words as one command line,
/// joined with spaces as ssh joins its arguments (so `@vm 'ls | wc -l'`
/// pipes in the guest, `@vm ls | wc -l` on Spirit), through the guest's
/// shell: sh on Linux, cmd.exe on Windows with the UTF-8 code page first
/// (its console output is in the OEM code page otherwise).
public enum GuestCommand {
    public static func shell(_ words: [String], os: VMDefinition.GuestOS) -> (path: String, arguments: [String]) {
        let line = words.joined(separator: " ")
        switch os {
        case .linux: return ("/bin/sh", ["-c", line])
        case .windows: return ("cmd.exe", ["/d", "/s", "/c", "chcp 65001>nul & " + line])
        }
    }
}
