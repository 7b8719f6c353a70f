/// Prometheus' text exposition format (version 0.0.4): what `spirit
/// metrics` prints and its endpoint serves, so that Prometheus, node
/// exporter dashboards or `promtool check metrics` read Spirit as they read
/// any other machine.
public struct MetricFamily: Sendable, Equatable {
    public enum Kind: String, Sendable { case gauge, counter }

    public struct Sample: Sendable, Equatable {
        public var labels: [(String, String)]
        public var value: Double
        public init(_ labels: [(String, String)] = [], _ value: Double) {
            self.labels = labels
            self.value = value
        }
        public static func == (a: Sample, b: Sample) -> Bool {
            a.value == b.value && a.labels.count == b.labels.count && zip(a.labels, b.labels).allSatisfy { $0 == $1 }
        }
    }

    /// `spirit_memory_available_bytes`; a counter's ends in `_total`.
    public var name: String
    public var help: String
    public var kind: Kind
    public var samples: [Sample]

    public init(_ name: String, _ kind: Kind, _ help: String, _ samples: [Sample]) {
        self.name = name
        self.kind = kind
        self.help = help
        self.samples = samples
    }
}

public enum PrometheusText {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The families, each with its HELP and TYPE lines; a family without
    /// samples is left out (promtool refuses a TYPE with nothing under it).
    public static func render(_ families: [MetricFamily]) -> String {
        var text = ""
        for family in families where !family.samples.isEmpty {
            text += "# HELP \(family.name) \(escapeHelp(family.help))\n# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                let labels = sample.labels.isEmpty ? "" : "{" + sample.labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
                text += "\(family.name)\(labels) \(number(sample.value))\n"
            }
        }
        return text
    }

    static func escapeHelp(_ text: String) -> String {
        text.replacingAll("\\", "\\\\").replacingAll("\n", "\\n")
    }

    static func escapeLabel(_ text: String) -> String {
        escapeHelp(text).replacingAll("\"", "\\\"")
    }

    /// Whole numbers without a fraction (counters in bytes stay exact up
    /// to 2^53), others as Swift prints them; NaN and infinities by name.
    public static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 { return String(Int64(value)) }
        return String(value)
    }
}

extension String {
    func replacingAll(_ target: Character, _ replacement: String) -> String {
        var out = ""
        for character in self { if character == target { out += replacement } else { out.append(character) } }
        return out
    }
}
