import SpiritCore
import Testing

/// Versions: what is one, how they order (anti-rollback and, later,
/// `spirit upgrade` rely on it), and the minimum check over manifests.
@Suite struct VersionTests {
    func v(_ text: String) throws -> Version { try Version(parsing: text) }

    @Test(arguments: ["0.1.0", "1", "1.2", "10.20.30.40", "0.2.0-rc.1", "1.0.0-alpha-2.x", "18446744073709551615.0"])
    func goodVersionsReadBackAsWritten(_ text: String) throws {
        #expect(try v(text).description == text)
    }

    @Test(arguments: [
        ("", "it is empty"),
        ("v0.1.0", "\"v0\" is not a number"),
        ("0..1", "a number is missing between dots"),
        ("0.1.", "a number is missing between dots"),
        (".1", "a number is missing between dots"),
        ("01.2", "\"01\" has a leading zero"),
        ("0.1.0 ", "\"0 \" is not a number"),
        ("0.1.0-", "the suffix after \"-\" is empty"),
        ("0.1.0-rc..1", "the suffix has an empty part"),
        ("0.1.0-rc.01", "the suffix part \"01\" has a leading zero"),
        ("0.1.0+build.5", "\"0+build\" is not a number"),
        ("0.1.0-rc+5", "the suffix part \"rc+5\" has a character other than letters, digits and \"-\""),
        ("-rc.1", "it does not start with a number"),
        ("18446744073709551616", "\"18446744073709551616\" is too large"),
        ("1.x", "\"x\" is not a number"),
    ])
    func badVersionsNameTheInputAndTheFault(_ text: String, _ reason: String) {
        do {
            _ = try Version(parsing: text)
            Issue.record("accepted \"\(text)\"")
        } catch {
            #expect(error == VersionError(input: text, reason: reason))
            #expect(error.description.hasPrefix("\"\(text)\" is not a version: \(reason) (expected numbers separated by dots"))
        }
    }

    @Test func theOrderIsSemVersOrder() throws {
        // Each below the next (SemVer 2.0.0, section 11, plus numbers past three).
        let ascending = ["0.0.1", "0.0.9", "0.1.0-alpha", "0.1.0-alpha.1", "0.1.0-alpha.beta", "0.1.0-beta", "0.1.0-beta.2",
                         "0.1.0-beta.11", "0.1.0-rc.1", "0.1.0", "0.1.0.1", "0.1.1", "0.2", "0.10.0", "1", "1.0.0.0.1", "2.0.0"]
        let versions = try ascending.map(v)
        for (i, a) in versions.enumerated() {
            for (j, b) in versions.enumerated() {
                #expect((a < b) == (i < j), "\(a) < \(b)")
                #expect((a == b) == (i == j), "\(a) == \(b)")
            }
        }
        #expect(versions.shuffled().sorted() == versions)
    }

    @Test func missingNumbersCountAsZero() throws {
        #expect(try v("0.1") == v("0.1.0"))
        #expect(try v("1") == v("1.0.0.0"))
        #expect(Set([try v("0.1"), try v("0.1.0")]).count == 1)
        #expect(try !(v("0.1") < v("0.1.0")) && !(v("0.1.0") < v("0.1")))
        #expect(try v("0.1-rc.1") == v("0.1.0-rc.1"))
        #expect(try v("0.1.0-rc.1") != v("0.1.0"))
    }

    // -- the minimum over a manifest -----------------------------------------

    func manifest(version: String) throws -> Manifest {
        try Manifest(image: "rootfs.squashfs", size: 1, sha256: String(repeating: "ab", count: 32), version: version,
                     buildTime: 0).signed(privateKey: TestOnlyKey.privateKey)
    }

    var trust: ImageTrust {
        get throws {
            ImageTrust(publicKey: try SigningKey.publicKey(forPrivateKey: TestOnlyKey.privateKey), minimumVersion: try v("0.1.0"))
        }
    }

    @Test func anImageBelowTheMinimumIsRefusedWithBothVersions() throws {
        #expect(throws: ManifestError.belowMinimum(version: "0.0.9", minimum: "0.1.0")) { try trust.check(try manifest(version: "0.0.9")) }
        do {
            try trust.check(try manifest(version: "0.0.9"))
        } catch {
            #expect("\(error)" == "the image's version 0.0.9 is below this initramfs's minimum 0.1.0 (a replayed old image is refused)")
        }
        // A pre-release of the minimum is below it.
        #expect(throws: ManifestError.belowMinimum(version: "0.1.0-rc.2", minimum: "0.1.0")) {
            try trust.check(try manifest(version: "0.1.0-rc.2"))
        }
    }

    @Test func theMinimumAndAboveAreAccepted() throws {
        for version in ["0.1.0", "0.1", "0.1.0.0", "0.1.1-rc.1", "0.2.0", "1"] {
            try trust.check(try manifest(version: version))
        }
    }

    @Test func noMinimumAcceptsAnyVersionButStillChecksTheSignature() throws {
        let open = ImageTrust(publicKey: try trust.publicKey, minimumVersion: nil)
        try open.check(try manifest(version: "0.0.1"))
        try open.check(try manifest(version: "not a version"))
        var forged = try manifest(version: "0.0.1")
        forged.version = "9.9.9"
        #expect(throws: ManifestError.self) { try open.check(forged) }
    }

    @Test func anUnreadableVersionIsRefusedWhenThereIsAMinimum() throws {
        let trust = try trust, latest = try manifest(version: "latest")
        do {
            try trust.check(latest)
            Issue.record("a manifest with version \"latest\" was accepted")
        } catch {
            #expect(error == .unreadableVersion(version: "latest", minimum: "0.1.0", reason: "\"latest\" is not a number"))
            #expect("\(error)".hasSuffix("so it cannot be shown to be at least this initramfs's minimum 0.1.0"))
        }
    }

    @Test func theSignatureIsCheckedBeforeTheVersion() throws {
        // A badly signed old image is refused for its signature: its version
        // is whatever the forger wrote.
        let other = try Manifest(image: "rootfs.squashfs", size: 1, sha256: String(repeating: "ab", count: 32), version: "0.0.1",
                                 buildTime: 0).signed(privateKey: TestOnlyKey.otherPrivateKey)
        let trust = try trust
        do {
            try trust.check(other)
            Issue.record("accepted")
        } catch {
            guard case .badSignature = error else { Issue.record("\(error)"); return }
        }
    }

    // -- the minimum's file in the initramfs ---------------------------------

    @Test func theMinimumFileIsOneVersion() throws {
        #expect(try ImageTrust.minimumVersion(fileText: "0.1.0\n") == v("0.1.0"))
        #expect(try ImageTrust.minimumVersion(fileText: "  1.2.3-rc.1 \n") == v("1.2.3-rc.1"))
        #expect(throws: VersionError(input: "", reason: "it is empty")) { try ImageTrust.minimumVersion(fileText: "\n") }
        #expect(throws: VersionError.self) { try ImageTrust.minimumVersion(fileText: "0.1.0\n0.2.0\n") }
    }

    @Test func readingTheInitramfsFiles() throws {
        let directory = try fixtureDirectory("trust")
        let key = directory + "/signing.pub", minimum = directory + "/minimum-version"
        try Kernel.writeFile(key, Hex.encode(try trust.publicKey) + "\n")
        Kernel.remove(minimum)
        // No file: no minimum.
        #expect(try ImageTrust.read(publicKey: key, minimumVersion: minimum).minimumVersion == nil)
        try Kernel.writeFile(minimum, "0.1.0\n")
        #expect(try ImageTrust.read(publicKey: key, minimumVersion: minimum) == trust)
        // A malformed minimum is an error that names the file and its text.
        try Kernel.writeFile(minimum, "0.1.x\n")
        do {
            _ = try ImageTrust.read(publicKey: key, minimumVersion: minimum)
            Issue.record("a malformed minimum was accepted")
        } catch {
            #expect("\(error)".hasPrefix("\(minimum) does not hold a minimum version: \"0.1.x\" is not a version: \"x\" is not a number"))
        }
        // A directory where the file should be: unreadable, not "no minimum".
        Kernel.remove(minimum)
        try Kernel.makeDirectory(minimum, parents: true)
        #expect(throws: (any Error).self) { try ImageTrust.read(publicKey: key, minimumVersion: minimum) }
        try Kernel.removeDirectory(minimum)
    }
}
