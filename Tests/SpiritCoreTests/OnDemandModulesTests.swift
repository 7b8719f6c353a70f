import Glibc
import SpiritCore
import SystemPackage
import Testing

@Suite struct OnDemandModulesTests {
    @Test func aFilesystemNeedsItsDriverAndTheCharacterSetsSpiritMountsItWith() {
        #expect(OnDemandModules.filesystem("vfat") == ["fs-vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8"])
        #expect(OnDemandModules.filesystem("ntfs3") == ["fs-ntfs3", "nls_utf8"])
        #expect(OnDemandModules.filesystem("ext4") == ["fs-ext4"])
        #expect(OnDemandModules.filesystem("fuseblk") == ["fuse"])
    }

    /// A type the kernel does not know: the installed loader is asked for
    /// its modules once, the mount tried again, and the kernel's answer
    /// (ENODEV) is the error. (The loader stays installed for the rest of
    /// this test process; it only records.)
    @Test func aMountOfAnUnknownTypeAsksTheLoaderOnceThenFails() throws {
        guard getuid() == 0 else { return }
        let asked = Monitor()
        nonisolated(unsafe) var requests: [[String]] = []
        let fstype = "spiritnosuchfs\(getpid())"
        OnDemandModules.install { names, _ in
            if names == ["fs-" + fstype] { asked.withLock { requests.append(names) } }
        }
        var template = Array("/tmp/spirit-mount-XXXXXX".utf8CString)
        let directory = String(cString: try #require(mkdtemp(&template)))
        defer { rmdir(directory) }
        do {
            try Kernel.mount(MountSpec(source: "none", target: directory, fstype: fstype))
            Issue.record("a mount of \(fstype) succeeded")
        } catch {
            #expect(error.errno == .operationNotSupportedByDevice)
        }
        #expect(asked.withLock { requests } == [["fs-" + fstype]])
    }
}
