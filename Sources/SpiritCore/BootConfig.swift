/// Where the boot looks for its system image (`crom.mode=`).
public enum BootMode: String, Sendable, CaseIterable {
    case auto, parasite, usb, http, nodus, rescue
}

/// Whether the boot looks for Nodus peers on the LAN (`crom.nodus=`).
public enum NodusDiscovery: String, Sendable, CaseIterable {
    case discover, off
}

/// What backs the writable layer of the root (`crom.upper=`).
public enum UpperLayer: String, Sendable, CaseIterable {
    case zram, tmpfs
}

/// Steps of stage 1 before which `crom.break=` opens a shell.
public enum BreakPoint: String, Sendable, CaseIterable, Comparable {
    case modules, cascade, root
    case switchRoot = "switch_root"

    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// A host and port given on the command line (`crom.nodus.server=`).
public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Everything the `crom.*` flags of the kernel command line decide, typed.
/// A bad value is never fatal: it becomes a `BootConfig.Warning` naming the
/// flag, what was wrong with it and what is used instead.
public struct BootConfig: Sendable, Equatable {
    /// The design's server, over TLS (checked against the initramfs's CA
    /// bundle); the signed manifest, not the transport, guards the image.
    public static let defaultHTTPURL = "https://boot.crom.run/spirit/"
    public static let defaultNBDPort = 10809
    public static let defaultNetworkTimeout = 10

    public var debug = false
    public var mode: BootMode = .auto
    public var nodus: NodusDiscovery = .discover
    public var nodusServer: Endpoint? = nil
    public var nodusStream = false
    public var httpURL = BootConfig.defaultHTTPURL
    public var gpuPassthrough = false
    public var ramLimitMiB: Int? = nil
    public var networkTimeoutSeconds = BootConfig.defaultNetworkTimeout
    public var breakPoints: Set<BreakPoint> = []
    public var extraModules: [String] = []
    public var upper: UpperLayer = .zram
    public var console = true
    /// `crom.layers=`: which layers on the boot medium stack over the image.
    public var layers: LayerSelection = .all
    /// Restore the persistence archive (`spirit persist commit`) found on
    /// the boot medium, as Alpine restores its apkovl when it finds one.
    public var persist = true
    /// `crom.netboot=on`: stage 1 keeps the boot medium's kernel and
    /// initramfs in RAM, so that this machine can serve them to the LAN
    /// (`spirit serve netboot`, the netboot service).
    public var netboot = false
    /// `crom.slot=a|b`: which slot folder of a stick made by `make stick`
    /// holds this boot's media files (GRUB's menu passes it); nil: the
    /// medium's root.
    public var slot: String? = nil
    /// `crom.ai=auto|off|NAME`: the AI runtime loads a model when asked
    /// (auto), never runs (off), or loads the pack NAME at start.
    public var ai = "auto"
    /// Every parameter that is not a `crom.*` flag, untouched.
    public var otherParameters: [KernelParameter] = []

    public init() {}

    /// A flag that could not be used as given.
    public struct Warning: Sendable, Equatable, CustomStringConvertible {
        public var parameter: KernelParameter
        /// What was wrong, and what is used instead.
        public var message: String

        public var description: String { "\(parameter): \(message)" }
    }

    /// Reads the `crom.*` flags of a kernel command line. The last of a
    /// repeated flag wins.
    public static func parse(_ commandLine: KernelCommandLine) -> (BootConfig, [Warning]) {
        var config = BootConfig()
        var warnings: [Warning] = []
        for parameter in commandLine.parameters {
            guard parameter.name.hasPrefix("crom.") else {
                config.otherParameters.append(parameter)
                continue
            }
            guard let flag = Flag(rawValue: parameter.name) else {
                warnings.append(Warning(parameter: parameter, message: "unknown flag, ignored (known: \(Flag.allCases.map(\.rawValue).joined(separator: ", ")))"))
                continue
            }
            if let problem = config.apply(flag, parameter.value) {
                warnings.append(Warning(parameter: parameter, message: problem))
            }
        }
        return (config, warnings)
    }

    public static func parse(_ text: String) -> (BootConfig, [Warning]) {
        parse(KernelCommandLine(text))
    }

    /// The flags this build understands.
    public enum Flag: String, Sendable, CaseIterable {
        case debug = "crom.debug"
        case mode = "crom.mode"
        case nodus = "crom.nodus"
        case nodusServer = "crom.nodus.server"
        case nodusStream = "crom.nodus.stream"
        case http = "crom.http"
        case gpu = "crom.gpu"
        case ramLimit = "crom.ram.limit"
        case networkTimeout = "crom.network.timeout"
        case breakAt = "crom.break"
        case modules = "crom.modules"
        case upper = "crom.upper"
        case console = "crom.console"
        case layers = "crom.layers"
        case persist = "crom.persist"
        case netboot = "crom.netboot"
        case slot = "crom.slot"
        case ai = "crom.ai"
    }

    /// Applies one flag; returns what was wrong with its value, if anything.
    mutating func apply(_ flag: Flag, _ value: String?) -> String? {
        switch flag {
        case .debug:
            guard let on = Self.boolean(value) else { debug = false; return "expected 0 or 1; using 0" }
            debug = on
        case .mode:
            switch value {
            case "seed": mode = .usb
            case let value? where BootMode(rawValue: value) != nil: mode = BootMode(rawValue: value)!
            default:
                mode = .auto
                return "expected one of \(BootMode.allCases.map(\.rawValue).joined(separator: ", ")) (or seed); using auto"
            }
        case .nodus:
            switch value {
            case "auto", "on": nodus = .discover
            case let value? where NodusDiscovery(rawValue: value) != nil: nodus = NodusDiscovery(rawValue: value)!
            default:
                nodus = .discover
                return "expected discover or off; using discover"
            }
        case .nodusServer:
            guard let value, let endpoint = Self.endpoint(value, defaultPort: Self.defaultNBDPort) else {
                nodusServer = nil
                return "expected IP[:PORT] (IPv6 as [ADDR]:PORT); using discovery"
            }
            nodusServer = endpoint
        case .nodusStream:
            guard let on = Self.boolean(value) else { nodusStream = false; return "expected 0 or 1; using 0 (copy the image into RAM)" }
            nodusStream = on
        case .http:
            guard let value, Self.isHTTPURL(value) else {
                httpURL = Self.defaultHTTPURL
                return "expected an http:// or https:// URL; using \(Self.defaultHTTPURL)"
            }
            httpURL = value
        case .gpu:
            switch value {
            case "passthrough": gpuPassthrough = true
            case "off", "none": gpuPassthrough = false
            default:
                gpuPassthrough = false
                return "expected passthrough or off; using off"
            }
        case .ramLimit:
            guard let value, let mib = Int(value), mib > 0 else {
                ramLimitMiB = nil
                return "expected a whole number of MiB above 0; using no limit"
            }
            ramLimitMiB = mib
        case .networkTimeout:
            guard let value, let seconds = Int(value), (0...3600).contains(seconds) else {
                networkTimeoutSeconds = Self.defaultNetworkTimeout
                return "expected whole seconds from 0 to 3600; using \(Self.defaultNetworkTimeout)"
            }
            networkTimeoutSeconds = seconds
        case .breakAt:
            let names = (value ?? "").split(separator: ",").map(String.init)
            let known = BreakPoint.allCases.map(\.rawValue).joined(separator: ", ")
            guard !names.isEmpty else { breakPoints = []; return "expected a step (\(known)); no break" }
            var points: Set<BreakPoint> = []
            var unknown: [String] = []
            for name in names {
                if let point = BreakPoint(rawValue: name) { points.insert(point) } else { unknown.append(name) }
            }
            breakPoints = points
            if !unknown.isEmpty {
                return "unknown step \(unknown.joined(separator: ", ")) (steps: \(known)); " + (points.isEmpty ? "no break" : "breaking at \(points.sorted().map(\.rawValue).joined(separator: ","))")
            }
        case .modules:
            let names = (value ?? "").split(separator: ",").map(String.init)
            let bad = names.filter { !Self.isModuleName($0) }
            extraModules = names.filter(Self.isModuleName)
            if names.isEmpty { return "expected module names separated by commas; none added" }
            if !bad.isEmpty { return "not a module name: \(bad.joined(separator: ", ")); skipped" }
        case .upper:
            guard let value, let layer = UpperLayer(rawValue: value) else { upper = .zram; return "expected zram or tmpfs; using zram" }
            upper = layer
        case .console:
            guard let on = Self.boolean(value) else { console = true; return "expected on or off; using on" }
            console = on
        case .layers:
            do {
                layers = try LayerSelection.parse(value ?? "all")
            } catch {
                layers = .all
                return "\(error); expected layer names separated by commas, all or none; using all"
            }
        case .persist:
            guard let on = Self.boolean(value) else { persist = true; return "expected on or off; using on" }
            persist = on
        case .netboot:
            guard let on = Self.boolean(value) else { netboot = false; return "expected on or off; using off" }
            netboot = on
        case .slot:
            guard let value, value == "a" || value == "b" else { slot = nil; return "expected a or b; using the medium's root" }
            slot = value
        case .ai:
            guard let value, value == "auto" || value == "off" || (try? ModelManifest.checkName(value)) != nil else {
                ai = "auto"
                return "expected auto, off or a model's name; using auto"
            }
            ai = value
        }
        return nil
    }

    /// The flags as they are in effect, one `crom.x=value` each, in the order
    /// of `Flag.allCases`: what `crom.debug=1` echoes.
    public var effectiveFlags: [String] {
        Flag.allCases.map { flag in
            let value: String
            switch flag {
            case .debug: value = debug ? "1" : "0"
            case .mode: value = mode.rawValue
            case .nodus: value = nodus.rawValue
            case .nodusServer: value = nodusServer?.description ?? "(discover)"
            case .nodusStream: value = nodusStream ? "1" : "0"
            case .http: value = httpURL
            case .gpu: value = gpuPassthrough ? "passthrough" : "off"
            case .ramLimit: value = ramLimitMiB.map(String.init) ?? "(none)"
            case .networkTimeout: value = String(networkTimeoutSeconds)
            case .breakAt: value = breakPoints.isEmpty ? "(none)" : breakPoints.sorted().map(\.rawValue).joined(separator: ",")
            case .modules: value = extraModules.isEmpty ? "(none)" : extraModules.joined(separator: ",")
            case .upper: value = upper.rawValue
            case .console: value = console ? "on" : "off"
            case .layers: value = layers.description
            case .persist: value = persist ? "on" : "off"
            case .netboot: value = netboot ? "on" : "off"
            case .slot: value = slot ?? "(none)"
            case .ai: value = ai
            }
            return "\(flag.rawValue)=\(value)"
        }
    }

    // The kernel's own boolean spellings (kstrtobool), plus a bare flag.
    static func boolean(_ value: String?) -> Bool? {
        guard let value else { return true }
        switch value.lowercased() {
        case "1", "y", "yes", "on", "true": return true
        case "0", "n", "no", "off", "false": return false
        default: return nil
        }
    }

    static func isModuleName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
        }
    }

    static func isHTTPURL(_ text: String) -> Bool {
        for scheme in ["http://", "https://"] where text.lowercased().hasPrefix(scheme) {
            let rest = text.dropFirst(scheme.count)
            let host = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
            return !host.isEmpty && !text.contains(where: { $0 == " " || $0 == "\t" })
        }
        return false
    }

    /// `IPv4[:PORT]` or `[IPv6][:PORT]`; a bare IPv6 address takes no port.
    static func endpoint(_ text: String, defaultPort: Int) -> Endpoint? {
        var host = Substring(text)
        var port = defaultPort
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return nil }
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { return nil }
                port = p
            }
            guard isIPv6(host) else { return nil }
        } else if host.filter({ $0 == ":" }).count == 1 {
            let parts = host.split(separator: ":", omittingEmptySubsequences: false)
            guard let p = Int(parts[1]) else { return nil }
            host = parts[0]
            port = p
            guard isIPv4(host) else { return nil }
        } else if isIPv4(host) {
        } else if isIPv6(host) {
        } else {
            return nil
        }
        guard (1...65535).contains(port) else { return nil }
        return Endpoint(host: String(host), port: port)
    }

    static func isIPv4(_ text: Substring) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { part in
            !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isASCII) && part.allSatisfy(\.isNumber) && Int(part)! <= 255
        }
    }

    static func isIPv6(_ text: Substring) -> Bool {
        let groups = text.split(separator: ":", omittingEmptySubsequences: false)
        let hex = groups.allSatisfy { $0.count <= 4 && $0.allSatisfy(\.isHexDigit) }
        let bytes = Array(text.utf8)
        let doubleColons = bytes.indices.dropLast().filter { bytes[$0] == 0x3A && bytes[$0 + 1] == 0x3A }.count
        return text.contains(":") && hex && doubleColons <= 1 && groups.count <= 8 && (doubleColons == 1 || groups.count == 8)
    }
}

/// The boot contract: the flags the boot worker parsed and checked once,
/// written to /run/spirit/boot-config.json, and read from there by PID 1 in
/// stage 2, the supervisor and the services instead of /proc/cmdline.
extension BootConfig {
    /// The flags in effect as a command line that `parse` reads back to this
    /// very configuration without a warning.
    public var canonicalFlags: [String] {
        var flags = ["crom.debug=\(debug ? 1 : 0)", "crom.mode=\(mode.rawValue)", "crom.nodus=\(nodus.rawValue)"]
        if let nodusServer { flags.append("crom.nodus.server=\(nodusServer)") }
        flags += ["crom.nodus.stream=\(nodusStream ? 1 : 0)", "crom.http=\(httpURL)", "crom.gpu=\(gpuPassthrough ? "passthrough" : "off")"]
        if let ramLimitMiB { flags.append("crom.ram.limit=\(ramLimitMiB)") }
        flags.append("crom.network.timeout=\(networkTimeoutSeconds)")
        if !breakPoints.isEmpty { flags.append("crom.break=" + breakPoints.sorted().map(\.rawValue).joined(separator: ",")) }
        if !extraModules.isEmpty { flags.append("crom.modules=" + extraModules.joined(separator: ",")) }
        flags += ["crom.upper=\(upper.rawValue)", "crom.console=\(console ? "on" : "off")", "crom.layers=\(layers)"]
        flags.append("crom.persist=\(persist ? "on" : "off")")
        if netboot { flags.append("crom.netboot=on") }
        if let slot { flags.append("crom.slot=\(slot)") }
        flags.append("crom.ai=\(ai)")
        return flags
    }

    /// The boot-config.json document: the canonical flags (what readers
    /// parse), the warnings the worker gave, the other kernel parameters.
    public func json(warnings: [Warning]) -> String {
        "{\"flags\":[" + canonicalFlags.map(jsonString).joined(separator: ",") + "],"
            + "\"warnings\":[" + warnings.map { jsonString($0.description) }.joined(separator: ",") + "],"
            + "\"kernel\":[" + otherParameters.map { jsonString($0.description) }.joined(separator: ",") + "]}\n"
    }

    /// Reads a boot-config.json document.
    public init(json bytes: [UInt8]) throws(SpiritError) {
        let document: JSONValue
        do {
            document = try JSONReader.parse(bytes)
        } catch {
            throw SpiritError("not a boot configuration: \(error)")
        }
        guard case .array(let flags)? = document["flags"], case .array(let kernel)? = document["kernel"] else {
            throw SpiritError("not a boot configuration: no flags and kernel arrays")
        }
        let text = (flags + kernel).compactMap(\.string).joined(separator: " ")
        self = BootConfig.parse(text).0
    }

    /// This boot's configuration: the worker's boot-config.json when it is
    /// there (stage 2 and after), else the kernel command line parsed here
    /// (stage 1, before the worker has run; or a file that cannot be read).
    public static func current(file: String = RunFiles.bootConfig, commandLine: String = "/proc/cmdline") -> BootConfig {
        if let bytes = try? Kernel.readFile(file), let config = try? BootConfig(json: bytes) { return config }
        return parse((try? Kernel.readText(commandLine)) ?? "").0
    }
}
