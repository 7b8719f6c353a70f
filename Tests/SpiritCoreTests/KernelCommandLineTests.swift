import SpiritCore
import Testing

@Suite struct KernelCommandLineTests {
    func pairs(_ text: String) -> [String] {
        KernelCommandLine(text).parameters.map(\.description)
    }

    @Test func splitsOnWhiteSpace() {
        #expect(pairs("  console=ttyS0\tquiet \n crom.debug=1 ") == ["console=ttyS0", "quiet", "crom.debug=1"])
    }

    @Test func quotedValueKeepsSpacesAndLosesQuotes() {
        let line = KernelCommandLine(#"crom.http="http://a/b c" quiet"#)
        #expect(line.parameters == [KernelParameter(name: "crom.http", value: "http://a/b c"), KernelParameter(name: "quiet", value: nil)])
    }

    @Test func wholeParameterQuoted() {
        // The kernel accepts "name=value with spaces" too.
        let line = KernelCommandLine(#""crom.http=http://x y" a"#)
        #expect(line.parameters.first == KernelParameter(name: "crom.http", value: "http://x y"))
        #expect(line.parameters.count == 2)
    }

    @Test func quoteInsideValueToggles() {
        // Like the kernel: a quote in the middle starts quoting; it stays in the value.
        let line = KernelCommandLine(#"a=b"c d" e"#)
        #expect(line.parameters.map(\.name) == ["a", "e"])
        #expect(line.parameters[0].value == #"b"c d""#)
    }

    @Test func unterminatedQuoteRunsToTheEnd() {
        let line = KernelCommandLine(#"crom.http="http://a b"#)
        #expect(line.parameters == [KernelParameter(name: "crom.http", value: "http://a b")])
    }

    @Test func emptyValueAndFirstEqualsSplits() {
        let line = KernelCommandLine("a= b=c=d")
        #expect(line.parameters == [KernelParameter(name: "a", value: ""), KernelParameter(name: "b", value: "c=d")])
    }

    @Test func argumentsAfterDoubleDashGoToInit() {
        let line = KernelCommandLine("quiet -- crom.debug=1 single")
        #expect(line.parameters.map(\.name) == ["quiet"])
        #expect(line.initArguments == ["crom.debug=1", "single"])
    }

    @Test func emptyLine() {
        #expect(KernelCommandLine("").parameters.isEmpty)
        #expect(KernelCommandLine("   \n").parameters.isEmpty)
    }
}
