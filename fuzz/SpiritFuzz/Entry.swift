import Glibc

// libFuzzer's entry points. One binary holds every target (it is one link
// of the whole package, which takes minutes here); the target is named by
// SPIRIT_FUZZ_TARGET, as `make fuzz` sets it. Built only with
// `SPIRIT_FUZZ=1 swift build -Xswiftc -sanitize=fuzzer…` (see the Makefile):
// libFuzzer brings its own main.

/// The target chosen at start, looked up once.
nonisolated(unsafe) var chosen: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let name = getenv("SPIRIT_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTarget.all.first(where: { $0.name == name }) else {
        let names = FuzzTarget.all.map(\.name).joined(separator: " ")
        complain("spirit-fuzz: set SPIRIT_FUZZ_TARGET to one of: \(names)")
        exit(100)
    }
    target.setUp?()
    chosen = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    chosen?.run(bytes)
    return 0
}

/// One parser of outside bytes: `run` feeds it an input and checks what
/// must hold whatever the input (no crash, no hang; a few round trips).
struct FuzzTarget: Sendable {
    let name: String
    var setUp: (@Sendable () -> Void)? = nil
    let run: @Sendable ([UInt8]) -> Void
}

/// A property that must hold for every input: a failure is a crash that
/// libFuzzer saves, like any other.
func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        complain("spirit-fuzz: \(message())")
        abort()
    }
}

/// A line on standard error (Glibc's `stderr` is a global var, which Swift 6
/// will not touch from a nonisolated function).
func complain(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
