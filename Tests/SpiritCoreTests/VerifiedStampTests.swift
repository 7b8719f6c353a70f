import Glibc
import SpiritCore
import Testing

/// The note that a file's SHA-256 was checked holds until the file changes.
@Suite struct VerifiedStampTests {
    @Test func holdsUntilTheFileChanges() throws {
        var template = Array("/tmp/spirit-stamp-XXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        defer { _ = system("rm -rf '\(directory)'") }
        let file = directory + "/rootfs.squashfs"
        let digest = String(repeating: "ab", count: 32)
        try Kernel.writeFile(file, "image bytes")
        #expect(!VerifiedStamp.holds(for: file, sha256: digest))
        try VerifiedStamp.write(for: file, sha256: digest)
        #expect(VerifiedStamp.holds(for: file, sha256: digest))
        #expect(!VerifiedStamp.holds(for: file, sha256: String(repeating: "cd", count: 32)))
        // The change time moves with the kernel's coarse clock (a tick, 1–10 ms).
        usleep(20_000)
        // The same size, other bytes: the change time tells.
        try Kernel.writeFile(file, "IMAGE BYTES")
        #expect(!VerifiedStamp.holds(for: file, sha256: digest))
        // A stamp that is not one.
        try Kernel.writeFile(VerifiedStamp.path(for: file), "garbage\n")
        #expect(!VerifiedStamp.holds(for: file, sha256: digest))
    }
}
