import SpiritCore
import Testing

@Suite struct BootConfigTests {
    @Test func defaults() {
        let (config, warnings) = BootConfig.parse("console=ttyS0 quiet")
        #expect(warnings.isEmpty)
        #expect(config == {
            var expected = BootConfig()
            expected.otherParameters = [KernelParameter(name: "console", value: "ttyS0"), KernelParameter(name: "quiet", value: nil)]
            return expected
        }())
        #expect(config.mode == .auto && config.nodus == .discover && config.upper == .zram && config.console)
        // A persistence archive on the medium is restored unless crom.persist=off (Alpine's apkovl rule).
        #expect(config.persist)
        #expect(!config.netboot)
        #expect(config.httpURL == BootConfig.defaultHTTPURL)
        #expect(config.networkTimeoutSeconds == 10)
    }

    @Test func everyFlagWithAGoodValue() {
        let (config, warnings) = BootConfig.parse("""
            crom.debug=1 crom.mode=http crom.nodus=off crom.nodus.server=10.0.2.2:10900 crom.nodus.stream=1 \
            crom.http="http://10.0.2.2:8000/spirit/" crom.gpu=passthrough crom.ram.limit=2048 crom.network.timeout=30 \
            crom.break=modules,cascade crom.modules=e1000e,r8169 crom.upper=tmpfs crom.console=off crom.layers=vm,ai crom.persist=off \
            crom.netboot=on
            """)
        #expect(warnings.isEmpty, "\(warnings)")
        #expect(config.debug)
        #expect(config.mode == .http)
        #expect(config.nodus == .off)
        #expect(config.nodusServer == Endpoint(host: "10.0.2.2", port: 10900))
        #expect(config.nodusStream)
        #expect(config.httpURL == "http://10.0.2.2:8000/spirit/")
        #expect(config.gpuPassthrough)
        #expect(config.ramLimitMiB == 2048)
        #expect(config.networkTimeoutSeconds == 30)
        #expect(config.breakPoints == [.modules, .cascade])
        #expect(config.extraModules == ["e1000e", "r8169"])
        #expect(config.upper == .tmpfs)
        #expect(!config.console)
        #expect(config.layers == .named(["vm", "ai"]))
        #expect(!config.persist)
        #expect(config.netboot)
        #expect(config.otherParameters.isEmpty)
    }

    @Test(arguments: [
        ("crom.mode=usb", BootMode.usb), ("crom.mode=seed", .usb), ("crom.mode=parasite", .parasite),
        ("crom.mode=nodus", .nodus), ("crom.mode=rescue", .rescue), ("crom.mode=auto", .auto),
    ])
    func modes(_ text: String, _ mode: BootMode) {
        let (config, warnings) = BootConfig.parse(text)
        #expect(warnings.isEmpty)
        #expect(config.mode == mode)
    }

    @Test(arguments: ["crom.debug", "crom.debug=1", "crom.debug=y", "crom.debug=on", "crom.debug=true", "crom.debug=YES"])
    func debugOn(_ text: String) {
        #expect(BootConfig.parse(text).0.debug)
    }

    @Test(arguments: ["crom.debug=0", "crom.debug=n", "crom.debug=off", "crom.debug=false"])
    func debugOff(_ text: String) {
        let (config, warnings) = BootConfig.parse(text)
        #expect(!config.debug && warnings.isEmpty)
    }

    @Test(arguments: [
        ("crom.debug=maybe", "expected 0 or 1; using 0"),
        ("crom.mode=floppy", "using auto"),
        ("crom.nodus=sometimes", "expected discover or off; using discover"),
        ("crom.nodus.server=example.com", "expected IP[:PORT]"),
        ("crom.nodus.server=10.0.0.1:0", "expected IP[:PORT]"),
        ("crom.nodus.server=10.0.0.1:70000", "expected IP[:PORT]"),
        ("crom.nodus.server=300.0.0.1", "expected IP[:PORT]"),
        ("crom.nodus.server=[fe80::1", "expected IP[:PORT]"),
        ("crom.http=ftp://x/", "expected an http:// or https:// URL; using https://boot.crom.run/spirit/"),
        ("crom.http=http://", "expected an http:// or https:// URL"),
        ("crom.gpu=yes", "expected passthrough or off; using off"),
        ("crom.ram.limit=abc", "expected a whole number of MiB above 0; using no limit"),
        ("crom.ram.limit=0", "using no limit"),
        ("crom.ram.limit=-5", "using no limit"),
        ("crom.network.timeout=soon", "using 10"),
        ("crom.network.timeout=99999", "using 10"),
        ("crom.upper=disk", "expected zram or tmpfs; using zram"),
        ("crom.console=loud", "expected on or off; using on"),
        ("crom.persist=sometimes", "expected on or off; using on"),
        ("crom.netboot=maybe", "expected on or off; using off"),
        ("crom.break=nowhere", "unknown step nowhere"),
        ("crom.break", "expected a step"),
        ("crom.modules=", "none added"),
        ("crom.layers=vm,Bad!", "\"Bad!\" is not a layer name"),
    ])
    func badValueWarnsAndFallsBack(_ text: String, _ message: String) {
        let (config, warnings) = BootConfig.parse(text + " quiet")
        #expect(warnings.count == 1)
        let warning = warnings.first
        #expect(warning?.parameter.name == String(text.split(separator: "=").first!))
        #expect(warning?.message.contains(message) == true, "\(warning?.message ?? "")")
        // The fallback is the default; the rest of the line is untouched.
        var expected = BootConfig()
        expected.otherParameters = [KernelParameter(name: "quiet", value: nil)]
        #expect(config == expected)
    }

    @Test func warningNamesTheFlagAndValue() {
        let (_, warnings) = BootConfig.parse("crom.ram.limit=abc")
        #expect(warnings.map(\.description) == ["crom.ram.limit=abc: expected a whole number of MiB above 0; using no limit"])
    }

    @Test func unknownFlagIsNamed() {
        let (config, warnings) = BootConfig.parse("crom.bogus=2 crom.debug=1")
        #expect(config.debug)
        #expect(warnings.count == 1)
        #expect(warnings[0].description.hasPrefix("crom.bogus=2: unknown flag, ignored"))
    }

    @Test func lastRepeatWins() {
        #expect(BootConfig.parse("crom.mode=usb crom.mode=http").0.mode == .http)
        #expect(BootConfig.parse("crom.debug=1 crom.debug=0").0.debug == false)
        // A bad value after a good one: the default, with a warning.
        let (config, warnings) = BootConfig.parse("crom.mode=usb crom.mode=nope")
        #expect(config.mode == .auto && warnings.count == 1)
    }

    @Test func someBreakPointsKnownSomeNot() {
        let (config, warnings) = BootConfig.parse("crom.break=cascade,nowhere")
        #expect(config.breakPoints == [.cascade])
        #expect(warnings.first?.message == "unknown step nowhere (steps: modules, cascade, root, switch_root); breaking at cascade")
    }

    @Test func badModuleNamesAreSkipped() {
        let (config, warnings) = BootConfig.parse("crom.modules=e1000e,../evil,r8169")
        #expect(config.extraModules == ["e1000e", "r8169"])
        #expect(warnings.first?.message == "not a module name: ../evil; skipped")
    }

    @Test(arguments: [
        ("10.0.0.1", Endpoint(host: "10.0.0.1", port: 10809)),
        ("10.0.0.1:9000", Endpoint(host: "10.0.0.1", port: 9000)),
        ("[fe80::1]:9000", Endpoint(host: "fe80::1", port: 9000)),
        ("[::1]", Endpoint(host: "::1", port: 10809)),
        ("fd00::2", Endpoint(host: "fd00::2", port: 10809)),
    ])
    func nodusServer(_ text: String, _ endpoint: Endpoint) {
        let (config, warnings) = BootConfig.parse("crom.nodus.server=\(text)")
        #expect(warnings.isEmpty)
        #expect(config.nodusServer == endpoint)
    }

    @Test func effectiveFlagsListEveryFlag() {
        let (config, _) = BootConfig.parse("crom.debug=1 crom.http=\"http://a/\"")
        let flags = config.effectiveFlags
        #expect(flags.count == BootConfig.Flag.allCases.count)
        #expect(flags.contains("crom.debug=1"))
        #expect(flags.contains("crom.http=http://a/"))
        #expect(flags.contains("crom.ram.limit=(none)"))
    }

    @Test(arguments: [
        "",
        "crom.debug=1 crom.mode=http crom.http=http://10.0.2.2:8080/x/ crom.network.timeout=5",
        "crom.mode=nodus crom.nodus=off crom.nodus.server=[fe80::1]:9000 crom.nodus.stream=1 crom.gpu=passthrough",
        "crom.ram.limit=512 crom.break=modules,root crom.modules=e1000,virtio_net crom.upper=tmpfs crom.console=off",
        "crom.persist=off crom.mode=usb",
        "crom.mode=seed crom.nodus.server=10.0.0.7 quiet console=ttyS0 root=/dev/x",
    ])
    func canonicalFlagsReadBackToTheSameConfigWithoutAWarning(_ line: String) {
        let (config, _) = BootConfig.parse(line)
        let (again, warnings) = BootConfig.parse(config.canonicalFlags.joined(separator: " "))
        #expect(warnings.isEmpty)
        #expect(again.effectiveFlags == config.effectiveFlags)
    }

    @Test func anHTTPSURLIsKeptAndIsTheDefault() {
        let (config, warnings) = BootConfig.parse("crom.http=https://example.org/spirit/")
        #expect(config.httpURL == "https://example.org/spirit/")
        #expect(warnings.isEmpty)
        #expect(BootConfig().httpURL == "https://boot.crom.run/spirit/")
    }

    @Test func theBootConfigFileCarriesTheFlagsWarningsAndKernelParameters() throws {
        let (config, warnings) = BootConfig.parse("crom.debug=1 crom.mode=floppy crom.http=https://a.example/s/ quiet console=ttyS0")
        let json = config.json(warnings: warnings)
        #expect(json.contains("\"crom.http=https://a.example/s/\""))
        #expect(json.contains("crom.mode=floppy: expected one of"))
        let read = try BootConfig(json: Array(json.utf8))
        #expect(read == config)
        #expect(read.otherParameters.map(\.description) == ["quiet", "console=ttyS0"])
        #expect(throws: SpiritError.self) { try BootConfig(json: Array("{\"flags\":1}".utf8)) }
        #expect(throws: SpiritError.self) { try BootConfig(json: Array("not json".utf8)) }
    }
}
