import CTLS
import Glibc

/// A TLS client session on a connected socket: CTLS's shim over mbedTLS
/// (TLS 1.2 or later, SNI, the chain checked against a CA bundle and the
/// name against the host). Here, beside `Socket`, because the shim reads
/// and writes the socket (the one door to the kernel). Non-blocking: each
/// step says what to wait for, so Net's HTTPConnection keeps its idle
/// timeout and speed floor over TLS.
public final class TLSSession {
    public enum Step: Sendable {
        case done(Int)
        case wantRead
        case wantWrite
    }

    /// Debian's bundle (ca-certificates), at the same path in the
    /// initramfs (scripts/mkinitramfs.sh copies it there) and on a host.
    public static let systemCABundle = "/etc/ssl/certs/ca-certificates.crt"

    /// The bundle to trust: SSL_CERT_FILE when set (as OpenSSL and curl
    /// read it: a host test's own CA), else the system's.
    public static var caBundle: String {
        getenv("SSL_CERT_FILE").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? systemCABundle
    }

    let handle: OpaquePointer

    /// A session for `host` on `fd` (which stays the caller's to close).
    public init(fd: CInt, host: String, caBundle: String = TLSSession.caBundle) throws(TLSFailure) {
        var error = [CChar](repeating: 0, count: 320)
        guard let handle = spirit_tls_open(fd, host, caBundle, &error, error.count) else {
            throw TLSFailure(reason: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), untrusted: false)
        }
        self.handle = handle
    }

    deinit { spirit_tls_close(handle) }

    public func handshake() throws(TLSFailure) -> Step { try step(Int(spirit_tls_handshake(handle))) }

    /// Decrypted bytes into `out`: `.done(0)` at the end of the stream.
    public func read(into out: UnsafeMutableRawBufferPointer) throws(TLSFailure) -> Step {
        try step(spirit_tls_read(handle, out.baseAddress, out.count))
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(TLSFailure) -> Step {
        try step(spirit_tls_write(handle, bytes.baseAddress, bytes.count))
    }

    func step(_ code: Int) throws(TLSFailure) -> Step {
        switch code {
        case 0...: return .done(code)
        case Int(SPIRIT_TLS_WANT_READ): return .wantRead
        case Int(SPIRIT_TLS_WANT_WRITE): return .wantWrite
        default:
            throw TLSFailure(reason: String(cString: spirit_tls_error(handle)), untrusted: code == Int(SPIRIT_TLS_UNTRUSTED))
        }
    }
}

/// Why TLS failed; `untrusted` when the peer's certificate did not verify
/// (retrying will not help).
public struct TLSFailure: Error, CustomStringConvertible {
    public var reason: String
    public var untrusted: Bool
    public var description: String { reason }
}
