import SpiritCore

/// The three ways the HUD fills the screen.
public enum Mode: String, Sendable, CaseIterable {
    /// A full-screen terminal with a small status bubble over it.
    case bubble
    /// A grid of widgets.
    case dashboard
    /// 1–N terminals, tiled.
    case terminals
}

/// What a widget shows; the dashboard's grid says where.
public enum WidgetKind: String, Sendable, CaseIterable {
    case cpu, memory, network, services, timeline, nodus, terminal, clock, vms, sentinel
    case kernelLog = "kernel-log"
    /// A JavaScript file's `widget()` lines (`script = "name.js"`, in
    /// /etc/spirit/nexus/widgets/).
    case script

    public var defaultTitle: String {
        switch self {
        case .cpu: "CPU"
        case .memory: "MEMORY"
        case .network: "NETWORK"
        case .services: "SERVICES"
        case .timeline: "BOOT"
        case .nodus: "NODUS PEERS"
        case .vms: "VMS"
        case .sentinel: "SENTINEL"
        case .terminal: "TERMINAL"
        case .clock: "CLOCK"
        case .kernelLog: "KERNEL LOG"
        case .script: "SCRIPT"
        }
    }

    /// How often its data is read when the file does not say; a terminal
    /// is drawn when its PTY has output, not by a timer.
    public var defaultRefreshMillis: Int {
        switch self {
        case .cpu, .network, .clock: 1000
        case .memory, .services, .kernelLog, .nodus, .script, .vms, .sentinel: 2000
        case .timeline: 5000
        case .terminal: 0
        }
    }
}

/// One widget of the dashboard: its name (the table in nexus.toml), what
/// it shows, and the grid cells it covers.
public struct WidgetPlacement: Sendable, Equatable {
    public var name: String
    public var kind: WidgetKind
    public var title: String
    public var column: Int
    public var row: Int
    public var columns: Int
    public var rows: Int
    public var refreshMillis: Int
    /// A script widget's file: absolute, or in `Layout.scriptDirectory`.
    public var script: String?

    public init(name: String, kind: WidgetKind, column: Int, row: Int, columns: Int, rows: Int,
                title: String? = nil, refreshMillis: Int? = nil, script: String? = nil) {
        self.name = name
        self.kind = kind
        self.title = title ?? kind.defaultTitle
        self.column = column
        self.row = row
        self.columns = columns
        self.rows = rows
        self.refreshMillis = refreshMillis ?? kind.defaultRefreshMillis
        self.script = script
    }

    /// The grid cells, as a rectangle in cell units.
    public var cells: Rect { Rect(x: column, y: row, width: columns, height: rows) }
}

/// The HUD's layout as /etc/spirit/nexus.toml gives it:
///
///     mode = "dashboard"    # the mode at start
///     columns = 12          # the dashboard's grid
///     rows = 6
///
///     [cpu]                 # a widget: its name
///     widget = "cpu"        # what it shows
///     column = 0            # where: the top-left cell, then the size in cells
///     row = 0
///     width = 4
///     height = 2
///     refresh-ms = 1000     # optional
///     title = "CPU"         # optional
///
/// Parsed strictly: an unknown key, a value of the wrong kind or out of
/// range, a widget outside the grid or over another is a
/// `file:line: field: what is wrong` error.
public struct Layout: Sendable, Equatable {
    public var mode: Mode
    public var columns: Int
    public var rows: Int
    public var widgets: [WidgetPlacement]

    public init(mode: Mode = .dashboard, columns: Int, rows: Int, widgets: [WidgetPlacement]) {
        self.mode = mode
        self.columns = columns
        self.rows = rows
        self.widgets = widgets
    }

    public static let path = "/etc/spirit/nexus.toml"
    /// Where a script widget's `script = "name.js"` is looked for.
    public static let scriptDirectory = "/etc/spirit/nexus/widgets"

    /// The layout used when /etc/spirit/nexus.toml does not exist, written
    /// as that file would be (and parsed by the same code).
    public static let defaultText = """
        # /etc/spirit/nexus.toml: what the Nexus HUD shows, and where.
        mode = "dashboard"
        columns = 12
        rows = 6

        [cpu]
        widget = "cpu"
        column = 0
        row = 0
        width = 4
        height = 2

        [memory]
        widget = "memory"
        column = 4
        row = 0
        width = 4
        height = 2

        [network]
        widget = "network"
        column = 8
        row = 0
        width = 4
        height = 2

        [services]
        widget = "services"
        column = 0
        row = 2
        width = 4
        height = 2

        [timeline]
        widget = "timeline"
        column = 4
        row = 2
        width = 4
        height = 2

        [nodus]
        widget = "nodus"
        column = 8
        row = 2
        width = 4
        height = 2

        [terminal]
        widget = "terminal"
        column = 0
        row = 4
        width = 4
        height = 2

        [sentinel]
        widget = "sentinel"
        column = 4
        row = 4
        width = 4
        height = 2

        [kernel-log]
        widget = "kernel-log"
        column = 8
        row = 4
        width = 4
        height = 2

        """

    public static let standard: Layout = {
        do {
            return try parse(defaultText, path: "(built-in layout)")
        } catch {
            preconditionFailure("the built-in layout does not parse: \(error)") // a unit test parses it
        }
    }()

    static let topLevelKeys: Set<String> = ["mode", "columns", "rows"]
    static let widgetKeys: Set<String> = ["widget", "title", "column", "row", "width", "height", "refresh-ms", "script"]

    public static func parse(_ text: String, path: String) throws(ConfigError) -> Layout {
        let file = try ConfigFile.parse(text, path: path)
        for entry in file.entries {
            let parts = entry.key.split(separator: ".", maxSplits: 1).map(String.init)
            if parts.count == 1, !topLevelKeys.contains(entry.key) {
                throw file.error(entry, "unknown field (known at the top: \(topLevelKeys.sorted().joined(separator: ", ")); a widget is a [table])")
            }
            if parts.count == 2, !widgetKeys.contains(parts[1]) {
                throw file.error(entry, "unknown field (known in a widget: \(widgetKeys.sorted().joined(separator: ", ")))")
            }
        }
        var layout = Layout(columns: 12, rows: 6, widgets: [])
        if let (text, entry) = try file.string("mode") {
            guard let mode = Mode(rawValue: text) else {
                throw file.error(entry, "'\(text)' is not one of \(Mode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            layout.mode = mode
        }
        layout.columns = Int(try file.integer("columns", in: 1...48) ?? 12)
        layout.rows = Int(try file.integer("rows", in: 1...48) ?? 6)

        var lines: [String: Int] = [:]
        for table in file.tables {
            let name = table.name
            func missing(_ key: String, _ example: String) -> ConfigError {
                ConfigError(path: path, line: table.line, field: name + "." + key, "missing: every widget needs \(key) = \(example)")
            }
            guard let (kindText, kindEntry) = try file.string(name + ".widget") else {
                throw missing("widget", "\"cpu\" (one of \(WidgetKind.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let kind = WidgetKind(rawValue: kindText) else {
                throw file.error(kindEntry, "'\(kindText)' is not one of \(WidgetKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            func cell(_ key: String, _ limit: Int, from: Int64) throws(ConfigError) -> Int {
                guard let value = try file.integer(name + "." + key, in: from...Int64(limit)) else {
                    throw missing(key, "a number of grid cells")
                }
                return Int(value)
            }
            let column = try cell("column", layout.columns - 1, from: 0)
            let row = try cell("row", layout.rows - 1, from: 0)
            let width = try cell("width", layout.columns, from: 1)
            let height = try cell("height", layout.rows, from: 1)
            if column + width > layout.columns {
                throw file.error(file[name + ".width"]!, "column \(column) + width \(width) goes past the grid's \(layout.columns) columns")
            }
            if row + height > layout.rows {
                throw file.error(file[name + ".height"]!, "row \(row) + height \(height) goes past the grid's \(layout.rows) rows")
            }
            var title: String? = nil
            if let (text, entry) = try file.string(name + ".title") {
                guard !text.isEmpty, text.unicodeScalars.count <= 40, !text.contains("\n") else {
                    throw file.error(entry, "a title is one line of 1–40 characters")
                }
                title = text
            }
            let refresh = try file.integer(name + ".refresh-ms", in: 100...3_600_000).map { Int($0) }
            var script: String? = nil
            if let (text, entry) = try file.string(name + ".script") {
                guard kind == .script else { throw file.error(entry, "only a widget = \"script\" has a script") }
                guard text.hasSuffix(".js"), !text.contains("..") else { throw file.error(entry, "'\(text)' is not a .js file name or path") }
                script = text.hasPrefix("/") ? text : scriptDirectory + "/" + text
            } else if kind == .script {
                throw missing("script", "\"name.js\" (a file in \(scriptDirectory))")
            }
            let placement = WidgetPlacement(name: name, kind: kind, column: column, row: row, columns: width, rows: height,
                                            title: title ?? script.map { String($0.split(separator: "/").last!.dropLast(3)).uppercased() },
                                            refreshMillis: refresh, script: script)
            if let other = layout.widgets.first(where: { $0.cells.intersects(placement.cells) }) {
                throw ConfigError(path: path, line: table.line, field: name,
                                  "covers cells of [\(other.name)] (line \(lines[other.name] ?? 0)); widgets may not overlap")
            }
            lines[name] = table.line
            layout.widgets.append(placement)
        }
        return layout
    }
}
