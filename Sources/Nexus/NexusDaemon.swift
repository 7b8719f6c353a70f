import Glibc
import SpiritCore
import SystemPackage

/// The Nexus HUD's I/O shell (`spirit nexus`): the display, the keyboards,
/// a PTY a terminal, the widgets' readings and the control socket, on one
/// EventLoop. Everything it shows is the pure `Screen`, drawn by
/// `ScreenRenderer` into a frame in RAM whose damaged rectangles go to the
/// scanout buffer.
public final class NexusDaemon {
    /// The exit status that says "no display on this machine" (a serial-only
    /// machine, `-vga none`, a GPU given to a VM): the service file names it
    /// as `exit.not-applicable`, so the supervisor does not restart the HUD.
    public static let noDisplayExit: Int32 = 64
    public static let controlSocket = RunFiles.directory + "/nexus.sock"
    public static let layoutFile = "/etc/spirit/nexus.toml"

    struct Session {
        let pty: PseudoTerminal
        let emulator: Terminal
    }

    let console: Console
    var display: Display
    let tty: String
    let signals: SignalQueue
    let events = EventLoop()
    let readings = Readings()
    var screen: Screen
    var renderer: ScreenRenderer
    var frame: PixelBuffer
    var sessions: [Int: Session] = [:]
    var inputs: [InputDevice] = []
    var keyboard = KeyboardState()
    var stats = RenderStats()
    var control: Socket?
    /// When each widget is next read (CLOCK_BOOTTIME µs), by index.
    var due: [Int64]
    var bubbleDue: Int64 = 0
    var finished: Int32?

    init(console: Console, display: Display, tty: String, signals: SignalQueue, layout: Layout) {
        self.console = console
        self.display = display
        self.tty = tty
        self.signals = signals
        screen = Screen(width: display.width, height: display.height, layout: layout)
        renderer = ScreenRenderer(geometry: screen.geometry)
        frame = PixelBuffer(width: display.width, height: display.height)
        due = Array(repeating: 0, count: layout.widgets.count)
        let host = Self.hostname()
        screen.status = ("CROM-OS SPIRIT \(SpiritVersion.string)" + (host.isEmpty || host == "(none)" ? "" : " · " + host),
                         "Super+B bubble · Super+D dashboard · Super+T terminals")
    }

    /// Runs the HUD until SIGTERM; returns the process's exit status.
    public static func run(console: Console) -> Int32 {
        let started = Kernel.processStartMicros > 0 ? Kernel.processStartMicros : Kernel.bootTimeMicros()
        let signals: SignalQueue
        do {
            try SignalQueue.blockAll()
            signals = try SignalQueue()
        } catch {
            console.error("nexus: \(error)")
            return 111
        }
        let layout = loadLayout(console: console)
        let (outcome, waitedUntil) = waitForDisplay(signals: signals, console: console)
        if let waitedUntil {
            Timeline(process: "nexus").record(TimelineStep(step: "nexus:display-wait", process: "nexus", pid: Kernel.pid, startMicros: started,
                                                           endMicros: waitedUntil, ok: outcome != .none,
                                                           detail: "its start-up, then the graphics driver (the modules service)"))
        }
        let card: String?
        switch outcome {
        case .stopped:
            return 0
        case .none:
            // One line, then done: the supervisor takes this status as "not here".
            let why = BootConfig.current().gpuPassthrough ? "crom.gpu=passthrough gave the GPU away" : "no DRM card and no /dev/fb0"
            console.info("nexus: no display on this machine (\(why)); the console stays on the serial line")
            return noDisplayExit
        case .display(let chosen):
            card = chosen
        }
        let display: Display
        do {
            if let card { display = try openCard(card, console: console) } else { display = try Display.openFramebuffer() }
        } catch {
            console.error("nexus: \(error)")
            return 111
        }
        let tty = VirtualTerminal.active()
        do {
            try VirtualTerminal.setMode(.graphics, on: tty)
        } catch {
            console.warning("nexus: \(error); the kernel's console may draw over the HUD")
        }
        let daemon = NexusDaemon(console: console, display: display, tty: tty, signals: signals, layout: layout)
        // The first frame's time is the HUD's own: from its start, or from
        // the display's arrival when it waited for one.
        let status = daemon.serve(started: waitedUntil ?? started)
        daemon.finish()
        return status
    }

    enum WaitOutcome: Equatable {
        /// This DRM card, or (nil) the framebuffer.
        case display(card: String?)
        case none
        /// SIGTERM, SIGINT or SIGHUP came while it waited.
        case stopped
    }

    /// The display to open, none when none will come (DisplayWait), or
    /// stopped by a signal; with the moment it stopped waiting, if it
    /// waited. Woken by uevents (a card's `add`, its device's `bind`), by a
    /// signal, else every 250 ms; gives up waiting after 70 s (the modules
    /// service is given 60 s to be ready).
    static func waitForDisplay(signals: SignalQueue, console: Console) -> (outcome: WaitOutcome, waitedUntil: Int64?) {
        let uevents = try? Kernel.ueventSocket()
        defer { if let uevents { Kernel.close(uevents) } }
        let deadline = Kernel.bootTimeMicros() + 70_000_000
        var waited = false
        let graphicsHeld = BootConfig.current().gpuPassthrough
        // The supervisor is asked at most every 250 ms: each module load is
        // a uevent that wakes this loop, and the supervisor, busy starting
        // the other services, is on the way to ready too.
        var modules = DisplayWait.Modules.absent
        var asked: Int64? = nil
        while true {
            if !graphicsHeld, asked.map({ Kernel.bootTimeMicros() - $0 >= 250_000 }) ?? true {
                modules = modulesAnswer()
                asked = Kernel.bootTimeMicros()
            }
            let cards = drmCards()
            let framebuffer = Kernel.exists("/dev/fb0")
            func decide(_ modules: DisplayWait.Modules) -> DisplayWait {
                DisplayWait.decide(gpuCard: DisplayWait.gpuCard(cards), anyCard: cards.first?.name, framebuffer: framebuffer,
                                   modules: modules, graphicsHeld: graphicsHeld)
            }
            var decision = decide(modules)
            if decision == .wait, Kernel.bootTimeMicros() > deadline {
                console.warning("nexus: the modules service has not settled in 70 s; not waiting for a display any longer")
                decision = decide(.absent)
            }
            let until = waited ? Kernel.bootTimeMicros() : nil
            switch decision {
            case .open(let card): return (.display(card: card.map { "/dev/dri/" + $0 }), until)
            case .none: return (.none, until)
            case .wait:
                if !waited {
                    waited = true
                    console.debug("nexus: no display yet; waiting for the modules service's graphics drivers")
                }
                var descriptors = [pollfd(fd: signals.fd, events: Int16(POLLIN), revents: 0)]
                if let uevents { descriptors.append(pollfd(fd: uevents, events: Int16(POLLIN), revents: 0)) }
                _ = try? Kernel.poll(&descriptors, milliseconds: 250)
                if descriptors[0].revents != 0, let (signal, _) = try? signals.next(), [SIGTERM, SIGINT, SIGHUP].contains(signal) {
                    return (.stopped, until)
                }
                if let uevents { while Kernel.readUevent(uevents, milliseconds: 0) != nil {} }
            }
        }
    }

    /// The DRM card, tried again for up to 2 s before its framebuffer is
    /// taken instead: a GPU's card the wait has just seen may still be in
    /// drm_dev_register, whose minors (the /dev/dri node, the sysfs entry)
    /// come before the device is registered, and an open until then fails
    /// with ENODEV. Seen under UEFI, where bochs-drm's card0 follows
    /// simpledrm's: the HUD was left on bochs' fbdev, or ended with status
    /// 111 when that was not there yet either (2 boots in 4 needed a retry).
    static func openCard(_ card: String, console: Console) throws(SpiritError) -> Display {
        let deadline = Kernel.bootTimeMicros() + 2_000_000
        var said = false
        while Kernel.bootTimeMicros() < deadline {
            do {
                return try Display.openDRM(card: card)
            } catch {
                if !said { console.info("nexus: \(card): \(error); trying again") }
                said = true
                Kernel.sleep(milliseconds: 100)
            }
        }
        let display = try Display.open(card: card)
        if let why = display.drmProblem { console.warning("nexus: \(card) still unusable after 2 s (\(why)); drawing on \(display.device)") }
        return display
    }

    /// /sys/class/drm's cards (`card0`, not its connectors `card0-VGA-1`)
    /// whose /dev/dri node is there, by number, with the bus of each one's
    /// device and whether it has its driver link.
    static func drmCards() -> [DisplayWait.Card] {
        Kernel.listDirectory("/sys/class/drm")
            .filter { $0.hasPrefix("card") && $0.count > 4 && $0.dropFirst(4).allSatisfy(\.isNumber) && Kernel.exists("/dev/dri/" + $0) }
            .map { name in
                let device = "/sys/class/drm/\(name)/device"
                let bus = Kernel.readLink(device + "/subsystem").map { String($0.split(separator: "/").last ?? "") }
                return DisplayWait.Card(name: name, bus: bus, bound: Kernel.exists(device + "/driver"))
            }
            .sorted { $0.number < $1.number }
    }

    /// What the supervisor says of the modules service: `unanswered` when
    /// it is there but silent for a second (busy starting the others);
    /// `absent` when there is no supervisor to ask (the HUD started by
    /// hand: no socket, or nobody on it), it refuses, or it has no such
    /// service. A service that was not ready within its ready-timeout is
    /// settled for the supervisor while its state still says "starting".
    static func modulesAnswer() -> DisplayWait.Modules {
        let services: [ServiceSummary]
        do throws(ServiceSummary.Unread) {
            services = try ServiceSummary.query(socket: RunFiles.controlSocket, idleMilliseconds: 1000)
        } catch {
            // Silent: still loading. No socket, refused, or a broken answer: no supervisor to wait for.
            if case .refused(let code, _) = error, code == ControlChannel.silentCode { return .unanswered }
            return .absent
        }
        guard let modules = services.first(where: { $0.name == "modules" }) else { return .absent }
        if modules.isOverdue { return .state("running") }
        return .state(modules.state)
    }

    /// /etc/spirit/nexus.toml, or the built-in layout (said when the file is wrong).
    static func loadLayout(console: Console) -> Layout {
        guard Kernel.exists(layoutFile) else { return .standard }
        do {
            return try Layout.parse(try Kernel.readText(layoutFile), path: layoutFile)
        } catch {
            console.error("nexus: \(error); using the built-in layout")
            return .standard
        }
    }

    func serve(started: Int64) -> Int32 {
        refreshWidgets(now: Kernel.bootTimeMicros(), all: true)
        syncSessions()
        let drawStart = Kernel.bootTimeMicros()
        renderer.render(screen, into: &frame)
        present([frame.bounds])
        let now = Kernel.bootTimeMicros()
        stats.recordFrame(micros: now - drawStart, partial: false)
        stats.firstFrameMicros = now - started
        Timeline(process: "nexus").record(TimelineStep(step: "nexus:first-frame", process: "nexus", pid: Kernel.pid, startMicros: started,
                                                       endMicros: now, ok: true, detail: "\(display.summary), \(display.width)x\(display.height)"))
        console.info("nexus: first frame on \(display.summary) (\(display.width)x\(display.height)) \(formatMilliseconds(now - started)) ms after start")
        // Listening before READY=1: once the boot says `spirit: ready`,
        // `spirit nexus …` finds the HUD.
        do {
            let socket = try Socket.listenUnix(Self.controlSocket)
            control = socket
            events.watch(socket.fd) { [unowned self] _ in answerControl() }
        } catch {
            console.warning("nexus: \(error); 'spirit nexus mode|dump|screenshot|stats' cannot reach it")
        }
        ServiceNotify.ready()

        // Watching before listing: a keyboard whose driver loads between
        // the two is seen either way (a second sight of it is ignored).
        watchDevices()
        openInputs()
        events.watch(signals.fd) { [unowned self] _ in readSignal() }

        while finished == nil {
            let next = (due + [bubbleDue]).min() ?? Kernel.bootTimeMicros() + 1_000_000
            let wait = Int(max(0, (next - Kernel.bootTimeMicros() + 999) / 1000))
            do {
                try events.runOnce(milliseconds: wait)
            } catch {
                console.error("nexus: \(error)")
                return 111
            }
            refreshWidgets(now: Kernel.bootTimeMicros(), all: false)
        }
        return finished ?? 0
    }

    // MARK: Devices that come and go

    /// Uevents: a keyboard plugged in later is grabbed and read; a DRM card
    /// that appears while the HUD draws on a firmware framebuffer (the real
    /// GPU driver loading after efifb) takes over the screen.
    func watchDevices() {
        let fd: CInt
        do {
            fd = try Kernel.ueventSocket()
        } catch {
            console.warning("nexus: \(error); keyboards and displays that appear later are not noticed")
            return
        }
        events.watch(fd) { [unowned self] fd in
            while let bytes = Kernel.readUevent(fd, milliseconds: 0) {
                if let event = DeviceEvent.parse(bytes), event.action == "add" { deviceAdded(event) }
            }
        }
    }

    func deviceAdded(_ event: DeviceEvent) {
        let path = "/dev/" + event.node
        if event.isInputEvents, !inputs.contains(where: { $0.path == path }) {
            guard let device = try? InputDevice.open(path) else { return }
            guard device.isKeyboard else { return device.close() }
            addKeyboard(device)
            console.info("nexus: keyboard '\(device.name)' on \(path) added")
        } else if event.isDisplayCard, display.kind == .fbdev {
            do {
                let card = try Display.openDRM(card: path)
                try? display.close()
                display = card
                console.info("nexus: \(path) appeared (\(card.summary)): the HUD moves there from the framebuffer")
                if card.width != frame.width || card.height != frame.height {
                    screen = Screen(width: card.width, height: card.height, layout: screen.layout)
                    renderer = ScreenRenderer(geometry: screen.geometry)
                    frame = PixelBuffer(width: card.width, height: card.height)
                    due = Array(repeating: 0, count: screen.layout.widgets.count)
                    refreshWidgets(now: Kernel.bootTimeMicros(), all: true)
                    syncSessions()
                }
                redrawAll()
            } catch {
                console.warning("nexus: \(path) appeared but cannot be used: \(error); the HUD stays on the framebuffer")
            }
        }
    }

    /// Text mode back, the CRTC as it was, the PTYs' shells hung up.
    func finish() {
        for session in sessions.values {
            try? Kernel.kill(session.pty.pid, SIGHUP)
            session.pty.close()
        }
        for input in inputs { try? input.grab(false); input.close() }
        if control != nil { Kernel.remove(Self.controlSocket) }
        try? display.close()
        _ = VirtualTerminal.restoreText(on: tty)
    }

    func readSignal() {
        guard let (signal, _) = try? signals.next() else { return }
        switch signal {
        case SIGTERM, SIGINT, SIGHUP: finished = 0
        case SIGCHLD: reapShells()
        default: break
        }
    }

    // MARK: Drawing

    func present(_ rects: [Rect]) {
        let damage = rects.map { $0.intersection(frame.bounds) }.filter { !$0.isEmpty }
        guard !damage.isEmpty else { return }
        do {
            try frame.pixels.withUnsafeBytes { raw in try display.present(pixels: raw.baseAddress!, pitch: frame.pitch, damage: damage) }
        } catch {
            console.warning("nexus: \(error)")
        }
    }

    /// Redraws what changed and puts it on screen, timing it.
    func draw(partial: Bool, _ body: () -> [Rect]) {
        let start = Kernel.bootTimeMicros()
        let rects = body()
        present(rects)
        if !rects.isEmpty { stats.recordFrame(micros: Kernel.bootTimeMicros() - start, partial: partial) }
    }

    func redrawAll() {
        draw(partial: false) {
            renderer.render(screen, into: &frame)
            return [frame.bounds]
        }
    }

    // MARK: Widgets

    func refreshWidgets(now: Int64, all: Bool) {
        var changed: [Int] = []
        let frames = screen.geometry.frames(screen.layout)
        for (index, placement) in screen.layout.widgets.enumerated() where placement.kind != .terminal {
            guard all || now >= due[index] else { continue }
            due[index] = now + Int64(max(250, placement.refreshMillis)) * 1000
            // Readings that cost a process or a socket are skipped while unseen.
            if !all, screen.mode != .dashboard, [.nodus, .services, .script, .sentinel].contains(placement.kind) { continue }
            let lines = screen.geometry.textCapacity(of: frames[index]).lines
            if let index = screen.update(widget: placement.name, readings.read(placement, lines: lines)) { changed.append(index) }
        }
        if all || now >= bubbleDue {
            bubbleDue = now + 1_000_000
            if !screen.layout.widgets.contains(where: { $0.kind == .cpu }) { _ = readings.read(.cpu, lines: 1) }
            if !screen.layout.widgets.contains(where: { $0.kind == .memory }) { _ = readings.read(.memory, lines: 1) }
            screen.bubble = BubbleContent(clock: Readings.clock(), cpu: readings.cpuFraction, memory: readings.memoryFraction,
                                          alerts: readings.alerts)
            if !all, screen.mode == .bubble { draw(partial: true) { [renderer.renderBubble(screen, into: &frame)] } }
            // The status bar's badge is on screen in every mode: the Sentinel
            // is asked here unless its widget was just read.
            if screen.mode != .dashboard || !screen.layout.widgets.contains(where: { $0.kind == .sentinel }) {
                _ = readings.read(.sentinel, lines: 1)
            }
            if screen.badge != readings.incidentBadge {
                screen.badge = readings.incidentBadge
                if !all { draw(partial: true) { [renderer.renderStatusBar(screen, into: &frame)] } }
            }
        }
        guard !all, screen.mode == .dashboard, !changed.isEmpty else { return }
        draw(partial: true) { changed.map { renderer.renderWidget($0, of: screen, into: &frame) } }
    }

    // MARK: Terminals

    /// A PTY and an emulator for every terminal of the screen, none for
    /// one that was closed; each sized to its tile.
    func syncSessions() {
        let ids = Set(screen.terminals.map(\.id))
        for (id, session) in sessions where !ids.contains(id) {
            try? Kernel.kill(session.pty.pid, SIGHUP)
            events.unwatch(session.pty.fd)
            session.pty.close()
            sessions[id] = nil
        }
        for snapshot in screen.terminals {
            if let session = sessions[snapshot.id] {
                if session.emulator.columns != snapshot.columns || session.emulator.rows != snapshot.rows {
                    session.emulator.resize(columns: snapshot.columns, rows: snapshot.rows)
                    try? session.pty.resize(rows: snapshot.rows, columns: snapshot.columns)
                    screen.update(terminal: session.emulator.snapshot())
                }
                continue
            }
            startShell(id: snapshot.id, columns: snapshot.columns, rows: snapshot.rows)
        }
    }

    func startShell(id: Int, columns: Int, rows: Int) {
        do {
            let pty = try PseudoTerminal.start("/bin/sh", arguments: ["-sh"], rows: rows, columns: columns)
            let session = Session(pty: pty, emulator: Terminal(id: id, columns: columns, rows: rows))
            sessions[id] = session
            events.watch(pty.fd) { [unowned self] _ in readTerminal(id) }
        } catch {
            console.error("nexus: terminal \(id): \(error)")
        }
    }

    func readTerminal(_ id: Int) {
        guard let session = sessions[id] else { return }
        var received: [UInt8] = []
        var ended = false
        // A few reads at most, then draw: a flood of output stays responsive.
        for _ in 0..<8 {
            do {
                guard let bytes = try session.pty.read() else { break }
                if bytes.isEmpty { ended = true; break }
                received += bytes
            } catch {
                ended = true // EIO: the shell and everything on its terminal are gone
                break
            }
        }
        if !received.isEmpty {
            session.emulator.write(received)
            let answer = session.emulator.takeOutput()
            if !answer.isEmpty { _ = try? session.pty.write(answer) }
            let cells = screen.update(terminal: session.emulator.snapshot())
            if let index = screen.terminals.firstIndex(where: { $0.id == id }), !cells.isEmpty {
                draw(partial: true) { renderer.renderTerminalCells(index, cells, of: screen, into: &frame).rects }
            }
        }
        if ended {
            // The shell left (exit): a new one, as a console gives a new login.
            events.unwatch(session.pty.fd)
            session.pty.close()
            sessions[id] = nil
            if let snapshot = screen.terminals.first(where: { $0.id == id }) {
                startShell(id: id, columns: snapshot.columns, rows: snapshot.rows)
            }
        }
    }

    func reapShells() {
        Reaper.reap { _, _ in }
    }

    // MARK: Keys

    func openInputs() {
        let (devices, problems) = InputDevices.openKeyDevices()
        for problem in problems { console.warning("nexus: \(problem)") }
        inputs = devices.filter(\.isKeyboard)
        for device in devices where !device.isKeyboard { device.close() }
        if inputs.isEmpty { console.warning("nexus: no keyboard in /dev/input; the HUD shows but cannot be typed into") }
        for input in inputs { addKeyboard(input, listed: true) }
    }

    func addKeyboard(_ input: InputDevice, listed: Bool = false) {
        if !listed { inputs.append(input) }
        // While the HUD has the screen, keys go to it only, not also to the text console.
        do { try input.grab(true) } catch { console.warning("nexus: \(error)") }
        events.watch(input.fd) { [unowned self] _ in readKeys(input) }
    }

    func readKeys(_ input: InputDevice) {
        let events: [InputEvent]
        do {
            events = try input.read()
        } catch {
            console.warning("nexus: \(error); \(input.path) is no longer read")
            self.events.unwatch(input.fd)
            input.close()
            inputs.removeAll { $0.fd == input.fd }
            return
        }
        for event in events {
            let focused = screen.terminals.indices.contains(screen.focus) ? sessions[screen.terminals[screen.focus].id] : nil
            switch keyboard.handle(event, applicationCursor: focused?.emulator.applicationCursor ?? false) {
            case .bytes(let bytes)?:
                _ = try? focused?.pty.write(bytes)
            case .command(let command)?:
                apply(command)
            case nil:
                break
            }
        }
    }

    /// A chord's (or `spirit nexus mode`'s) command: the new screen, drawn whole.
    @discardableResult
    func apply(_ command: HUDCommand) -> Bool {
        let start = Kernel.bootTimeMicros()
        let before = screen.mode
        guard screen.apply(command) else { return false }
        syncSessions()
        if screen.mode == .dashboard { refreshWidgets(now: Kernel.bootTimeMicros(), all: true) }
        redrawAll()
        stats.recordTransition(from: before, to: screen.mode, micros: Kernel.bootTimeMicros() - start)
        return true
    }

    // MARK: The control socket

    /// `mode bubble|dashboard|terminals`, `dump`, `screenshot PATH`, `stats`.
    func answerControl() {
        guard let control, let (connection, request, uid) = ControlChannel.accept(on: control) else { return }
        defer { connection.close() }
        func reply(_ text: String) { try? Kernel.write(connection.fd, text, socket: true, "a control connection") }
        guard uid == 0 else { return reply(ControlChannel.error(code: 111, "permission denied: the HUD answers only root (you are uid \(uid))")) }
        let words = (request ?? "").split(separator: " ", maxSplits: 1).map(String.init)
        switch words.first {
        case "mode":
            guard words.count == 2, let mode = Mode(rawValue: words[1]) else {
                return reply(ControlChannel.error(code: 100, "mode takes bubble, dashboard or terminals"))
            }
            apply(.mode(mode))
            reply(ControlChannel.ok("mode \(screen.mode.rawValue)"))
        case "dump":
            reply(ControlChannel.ok(String(screen.dump().dropLast())))
        case "screenshot":
            guard words.count == 2, words[1].hasPrefix("/") else {
                return reply(ControlChannel.error(code: 100, "screenshot takes an absolute PATH for the PNG"))
            }
            do {
                try Kernel.writeFile(words[1], "") // created (and its directory checked) before the encoding
                let png = PNG.encode(frame)
                let fd = try Kernel.open(words[1], O_WRONLY | O_TRUNC)
                defer { Kernel.close(fd) }
                try png.withBytes { raw throws(SystemError) in try Kernel.write(fd, raw, words[1]) }
                reply(ControlChannel.ok("\(words[1]): \(frame.width)x\(frame.height), \(png.count) bytes"))
            } catch {
                reply(ControlChannel.error(code: 111, "\(error)"))
            }
        case "stats":
            reply(ControlChannel.ok(String(stats.json.trimmed)))
        default:
            reply(ControlChannel.error(code: 100, "not a request: '\(request ?? "")' (mode M, dump, screenshot PATH, stats)"))
        }
    }

    static func hostname() -> String {
        var name = utsname()
        _ = uname(&name)
        return withUnsafeBytes(of: &name.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
