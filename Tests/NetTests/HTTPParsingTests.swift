import Net
import SpiritCore
import Testing

@Suite struct HTTPParsingTests {
    @Test func urls() throws {
        let url = try HTTPURL.parse("http://10.0.2.2:8080/spirit")
        #expect(url == HTTPURL(host: "10.0.2.2", port: 8080, target: "/spirit"))
        #expect(url.appending("manifest.json").description == "http://10.0.2.2:8080/spirit/manifest.json")
        #expect(try HTTPURL.parse("http://boot.example").target == "/")
        #expect(try HTTPURL.parse("http://[fd00::1]:81/a/").host == "fd00::1")
        let secure = try HTTPURL.parse("https://boot.crom.run/spirit/")
        #expect(secure == HTTPURL(host: "boot.crom.run", port: 443, target: "/spirit/", secure: true))
        #expect(secure.description == "https://boot.crom.run/spirit/")
        #expect(try HTTPURL.parse("HTTPS://a:8443/").description == "https://a:8443/")
        #expect(try HTTPURL.parse("https://a:80/").description == "https://a:80/")
        #expect(throws: SpiritError.self) { try HTTPURL.parse("ftp://x/") }
        #expect(throws: SpiritError.self) { try HTTPURL.parse("http://host:99999/") }
    }

    @Test func redirectsResolve() throws {
        let base = try HTTPURL.parse("http://a/spirit/manifest.json")
        #expect(try base.resolving("/other/x").description == "http://a/other/x")
        #expect(try base.resolving("mirror/manifest.json").description == "http://a/spirit/mirror/manifest.json")
        #expect(try base.resolving("http://b:81/y").description == "http://b:81/y")
        #expect(try base.resolving("https://b/y") == HTTPURL(host: "b", port: 443, target: "/y", secure: true))
        let secure = try HTTPURL.parse("https://a:8443/spirit/")
        #expect(try secure.resolving("/x").description == "https://a:8443/x")
    }

    @Test func tooManyHeaderLinesAreRefused() {
        let many = "HTTP/1.1 200 OK\r\n" + (0..<101).map { "X-\($0): y" }.joined(separator: "\r\n")
        #expect(throws: (any Error).self) { try HTTPResponseHead.parse(many) }
        let enough = "HTTP/1.1 200 OK\r\n" + (0..<100).map { "X-\($0): y" }.joined(separator: "\r\n")
        #expect((try? HTTPResponseHead.parse(enough))?.headers.count == 100)
    }

    @Test func responseHeads() throws {
        let head = try HTTPResponseHead.parse("HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nContent-Range: bytes 90-99/100\r\n"
                                              + "Transfer-Encoding: chunked")
        #expect(head.status == 206 && head.reason == "Partial Content")
        #expect(head.contentLength == 10 && head.rangeStart == 90 && head.isChunked)
        #expect(throws: SpiritError.self) { try HTTPResponseHead.parse("SSH-2.0-OpenSSH") }
    }

    @Test func nslookupAnswers() throws {
        let text = "Server:\t\t10.0.2.3\nAddress:\t10.0.2.3:53\n\nNon-authoritative answer:\nName:\tboot.example\nAddress: 192.0.2.7\n"
            + "Name:\tboot.example\nAddress: 2001:db8::7\n"
        #expect(HostResolver.parseNslookup(text) == ["192.0.2.7", "2001:db8::7"])
        #expect(HostResolver.parseNslookup("** server can't find x: NXDOMAIN\n").isEmpty)
        // NXDOMAIN is final (not retried); a server that did not answer is not.
        #expect(try HostResolver.addresses(answer: text, host: "boot.example") == ["192.0.2.7", "2001:db8::7"])
        #expect(throws: HostResolver.NoSuchHost.self) {
            try HostResolver.addresses(answer: "Server:\t\t10.0.2.3\n\n** server can't find x: NXDOMAIN\n", host: "x")
        }
        #expect(throws: SpiritError.self) {
            try HostResolver.addresses(answer: ";; connection timed out; no servers could be reached\n", host: "x")
        }
        let hosts = "# static\n::1 localhost ip6-localhost\n127.0.0.1\tlocalhost  # loopback\n10.0.2.2 boot.lan\n"
        #expect(HostResolver.parseHosts(hosts, name: "LOCALHOST") == ["127.0.0.1", "::1"])
        #expect(HostResolver.parseHosts(hosts, name: "boot.lan") == ["10.0.2.2"])
        #expect(HostResolver.parseHosts(hosts, name: "static").isEmpty)
    }
}
