import Net
import Overlay
import SpiritCore

/// The HTTP source: the network up (DHCP), then the manifest from
/// `crom.http=` (the base URL of the media files), checked by the cascade;
/// the image is streamed into RAM while hashed (HTTPImageStream), resumed
/// with Range after a broken connection.
public struct HTTPSource: BootSource {
    public let name: SourceName = .http
    public let timeoutMicros: Int64
    let baseURL: String
    let network: Network
    let idleMillis: Int

    /// `networkTimeout` is `crom.network.timeout`: link and lease within it,
    /// and the longest a server may stay silent.
    public init(baseURL: String, networkTimeoutSeconds: Int, network: Network = Network()) {
        self.baseURL = baseURL
        self.network = network
        // Link and lease, then the manifest (one idle timeout, one retry).
        (idleMillis, timeoutMicros) = Network.sourceTimes(timeoutSeconds: networkTimeoutSeconds)
    }

    public func locate(_ context: SourceContext) throws -> FoundImage {
        let base = try HTTPURL.parse(baseURL)
        try context.cancel.check(name)
        let lease = try network.up(context, idleMillis: idleMillis)
        context.console.info("network: \(lease)")
        try context.cancel.check(name)
        return try Self.fetchManifest(base: base, idleMillis: idleMillis, console: context.console)
    }

    /// The manifest under `base`, and a stream of the image it names.
    /// Shared with `spirit-fetch`.
    public static func fetchManifest(base: HTTPURL, idleMillis: Int, console: Console) throws -> FoundImage {
        let manifestURL = base.appending(MediaFiles.manifest)
        let bytes = try withRetries(console: console) { () throws(HTTPError) -> [UInt8] in
            try HTTPClient.open(manifestURL, idleMillis: idleMillis).readAll(limit: MediaFiles.manifestLimit)
        }
        let manifest: Manifest
        do {
            manifest = try Manifest.parse(bytes)
        } catch {
            throw SpiritError("\(manifestURL): \(error)")
        }
        let imageURL = base.appending(manifest.image)
        return FoundImage(source: "http", origin: base.description, manifest: manifest,
                          openImage: { HTTPImageStream(url: imageURL, size: manifest.size, idleMillis: idleMillis, console: console) },
                          release: {}, layers: .http(base, idleMillis: idleMillis, console: console),
                          models: .http(base, idleMillis: idleMillis, console: console))
    }

    /// Retries a transient failure (a broken connection, a timeout, a 5xx)
    /// twice more, a second apart; says each retry on the console.
    static func withRetries<T>(console: Console, attempts: Int = 3, _ body: () throws(HTTPError) -> T) throws(HTTPError) -> T {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch where error.transient && attempt < attempts {
                console.info("http: \(error); trying again (\(attempt + 1) of \(attempts))")
                attempt += 1
                Kernel.sleep(milliseconds: 1000)
            }
        }
    }
}

/// The image over HTTP, for ImageCopy (which hashes it as it goes): a
/// progress line every few seconds, and after a broken connection or a
/// timeout a new request with `Range: bytes=<done>-`, a bounded number of
/// times. A server that ignores Range (answers 200) cannot resume: the
/// bytes already hashed cannot be taken back.
public struct HTTPImageStream: ImageStream {
    public static let maximumResumes = 3
    let url: HTTPURL
    let size: Int64
    let idleMillis: Int
    let console: Console
    var connection: HTTPConnection?
    var offset: Int64 = 0
    var resumes = 0
    var started: Int64 = 0
    var lastReport: Int64 = 0
    static let reportEveryMicros: Int64 = 3_000_000

    public init(url: HTTPURL, size: Int64, idleMillis: Int, console: Console) {
        self.url = url
        self.size = size
        self.idleMillis = idleMillis
        self.console = console
    }

    public mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            do {
                if connection == nil { try connect() }
                let n = try connection!.read(into: buffer)
                if n == 0 {
                    if offset < size {
                        throw HTTPError(url: url, message: "the server's file ended after \(offset) bytes; the manifest says \(size)",
                                        transient: false)
                    }
                    report(final: true)
                    return 0
                }
                offset += Int64(n)
                report(final: false)
                return n
            } catch let error as HTTPError where error.transient && resumes < Self.maximumResumes && offset < size {
                resumes += 1
                connection = nil
                console.info("http: \(error); resuming at byte \(offset) (retry \(resumes) of \(Self.maximumResumes))")
                Kernel.sleep(milliseconds: 500)
            }
        }
    }

    mutating func connect() throws {
        let now = Kernel.bootTimeMicros()
        if started == 0 {
            started = now
            lastReport = now
            console.info("http: downloading \(url) (\(size >> 20) MiB)")
        }
        let opened = try HTTPClient.open(url, rangeStart: offset > 0 ? offset : nil, idleMillis: idleMillis)
        if offset > 0 {
            guard opened.head.status == 206, opened.head.rangeStart == offset else {
                throw HTTPError(url: url, message: "the server does not resume at byte \(offset) (answered \(opened.head.status) "
                                + "without a matching Content-Range); cannot resume", transient: false)
            }
        }
        if let length = opened.head.contentLength, length != size - offset {
            throw HTTPError(url: url, message: "the server offers \(length) bytes from byte \(offset); the manifest says \(size) in all",
                            transient: false)
        }
        connection = opened
    }

    mutating func report(final: Bool) {
        let now = Kernel.bootTimeMicros()
        guard final || now - lastReport >= Self.reportEveryMicros else { return }
        lastReport = now
        let elapsed = max(now - started, 1)
        let kibPerSecond = offset * 1_000_000 / elapsed / 1024
        console.info("http: \(offset >> 20) of \(size >> 20) MiB (\(offset * 100 / max(size, 1))%), \(kibPerSecond) KiB/s"
                     + (final ? ", done" : ""))
    }

    public func close() {}
}
