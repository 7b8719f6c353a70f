import Glibc
import SpiritCore
import SystemPackage

/// Host names to addresses. An address literal is used as it is; a name is
/// looked up in /etc/hosts (localhost on a host), then asked of the DNS
/// server DHCP gave (/etc/resolv.conf) with busybox's nslookup: glibc's
/// getaddrinfo in a static binary needs the NSS shared libraries of the
/// build machine at run time, which the initramfs lacks.
public enum HostResolver {
    public static func addresses(of host: String, nslookup: String = "/usr/bin/nslookup", hostsFile: String = "/etc/hosts") throws -> [String] {
        var probe4 = in_addr()
        var probe6 = in6_addr()
        if inet_pton(AF_INET, host, &probe4) == 1 || inet_pton(AF_INET6, host, &probe6) == 1 { return [host] }
        let listed = parseHosts((try? Kernel.readText(hostsFile)) ?? "", name: host)
        if !listed.isEmpty { return listed }
        let output = "/run/spirit/nslookup.\(getpid()).out"
        defer { Kernel.remove(output) }
        let pid = try Spawn.spawn("/bin/sh", ["sh", "-c", "exec \"$0\" \"$1\" >\"$2\" 2>&1", nslookup, host, output])
        _ = try Spawn.wait(pid)
        return try addresses(answer: (try? Kernel.readText(output)) ?? "", host: host)
    }

    /// The addresses of nslookup's answer; NXDOMAIN, the DNS server's word
    /// that the name does not exist, is `NoSuchHost`: asking again will not
    /// change it. No answer at all may.
    public static func addresses(answer: String, host: String) throws -> [String] {
        let found = parseNslookup(answer)
        if found.isEmpty && answer.contains("NXDOMAIN") { throw NoSuchHost(host: host) }
        guard !found.isEmpty else {
            throw SpiritError("unable to resolve \(host) — is there a DNS server (from DHCP) in /etc/resolv.conf? (or give an IP address in crom.http=)")
        }
        return found
    }

    /// The DNS server answered that `host` does not exist (NXDOMAIN).
    public struct NoSuchHost: Error, CustomStringConvertible {
        public var host: String
        public var description: String {
            "\(host) does not exist: the DNS server answered NXDOMAIN (give an IP address in crom.http=, or a name the LAN's DNS knows)"
        }
    }

    /// The addresses an /etc/hosts text gives `name` (ADDRESS NAME ALIAS…
    /// lines, # comments), IPv4 first: the servers a test runs listen there.
    public static func parseHosts(_ text: String, name: String) -> [String] {
        var found: [String] = []
        for line in text.split(separator: "\n") {
            let fields = line.prefix { $0 != "#" }.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, fields.dropFirst().contains(where: { $0.lowercased() == name.lowercased() }) else { continue }
            found.append(String(fields[0]))
        }
        return found.filter { !$0.contains(":") } + found.filter { $0.contains(":") }
    }

    /// The answer's addresses: the `Address:` lines after the `Name:` line
    /// (the lines before it are the server's own address).
    public static func parseNslookup(_ text: String) -> [String] {
        var afterName = false
        var found: [String] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("Name:") { afterName = true; continue }
            guard afterName, line.hasPrefix("Address") else { continue }
            let value = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmed } ?? ""
            let address = String(value.split(separator: " ").first ?? "")
            if !address.isEmpty { found.append(address) }
        }
        return found
    }
}
