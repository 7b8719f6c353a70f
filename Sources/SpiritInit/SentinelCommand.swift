import Glibc
import Sentinel
import SpiritCommands
import SpiritCore

/// `spirit sentinel [--root DIR]`: the Sentinel daemon (its service).
/// `--root DIR` (or SPIRIT_SENTINEL_ROOT) puts every path under DIR —
/// /proc/pressure, /sys, /dev/kmsg, the rules, /run —: host tests run it
/// that way beside `spirit supervise --root DIR`. `spiritctl sentinel`
/// asks the running one.
enum SentinelCommand {
    static let usage = "sentinel [--root DIR] [--metrics ADDR:PORT|off] | sentinel [--root DIR] signals"

    static func run(_ arguments: [String]) -> Int32 {
        var words = arguments
        let root = rootOption(&words, variable: "SPIRIT_SENTINEL_ROOT")
        // Where /metrics is served: 127.0.0.1:9100 (node exporter's port) by
        // default; with --root (a test's tree) only when --metrics says where.
        var metrics: String? = root.isEmpty ? "127.0.0.1:9100" : nil
        if let index = words.firstIndex(of: "--metrics"), index + 1 < words.count {
            metrics = words[index + 1] == "off" ? nil : words[index + 1]
            words.removeSubrange(index...(index + 1))
        }
        switch words {
        case []:
            let console = Console(debug: BootConfig.current().debug, kmsgPath: nil)
            // Explanations by the AI runtime's model when it answers within
            // 500 ms, else from the template.
            let explainer = ModelExplainer { body, deadline in AIAPI.post("/completion", body: body, deadlineMillis: deadline) }
            return SentinelDaemon.run(paths: SentinelPaths(root: root), console: console, explainer: explainer, metrics: metrics)
        case ["signals"]:
            // What a rule's `signal` may name.
            for signal in SignalKind.allCases.sorted() { print(signal.rawValue + (signal.isEvent ? "  (event: counted within-seconds)" : "")) }
            return 0
        case ["help"], ["--help"]:
            print("usage: spirit \(usage)")
            return 0
        default:
            return Usage.fail("usage: spirit \(usage)")
        }
    }

    /// `spiritctl sentinel [--json]` and `spiritctl sentinel explain ID`.
    static func control(_ operands: [String], json: Bool, root: String) -> Int32 {
        let request: String
        switch operands {
        case []: request = json ? "list json" : "list"
        case let words where words.count == 2 && words[0] == "explain" && !json: request = "explain " + words[1]
        default: return ControlCommand.fail("sentinel takes nothing, or explain ID")
        }
        return ControlCommand.send(request, to: SentinelPaths(root: root).control, server: "sentinel")
    }
}

/// `spirit metrics [--root DIR]`: the machine and its services in
/// Prometheus' text format, read now (the Sentinel serves the same on
/// http://127.0.0.1:9100/metrics).
enum MetricsCommand {
    static let usage = "metrics [--root DIR]"

    static func run(_ arguments: [String]) -> Int32 {
        var words = arguments
        let root = rootOption(&words, variable: "SPIRIT_SENTINEL_ROOT")
        guard words.isEmpty else { return Usage.fail("usage: spirit \(usage)") }
        let paths = SentinelPaths(root: root)
        let services = (try? supervisedServices(socket: paths.supervisorControl)) ?? []
        print(PrometheusText.render(NodeMetrics.families(NodeMetrics.read(paths: paths, services: services))), terminator: "")
        return 0
    }
}
