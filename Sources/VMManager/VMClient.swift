import Glibc
import SpiritCore

/// The `spirit vm …` side of the control socket: requests, and what their
/// answers print. Exit codes: 0, the guest's own for `exec`, 100 for a
/// request that cannot be, 111 for a failure.
public struct VMClient {
    public let paths: VMPaths

    public init(paths: VMPaths) { self.paths = paths }

    /// `exec --stdin` takes at most this much input (it travels base64 in
    /// one agent command).
    public static let inputLimit = 1 << 20

    /// One request; the body, or the error printed and its code.
    func ask(_ request: String) -> Result<[UInt8], VMError> {
        var body: [UInt8] = []
        let head = ControlChannel.send(request, to: paths.controlSocket, server: "VM manager (the vm service)") { chunk in
            body += chunk
            return true
        }
        if case .error(let code, let message) = head { return .failure(VMError(message, code: code)) }
        return .success(body)
    }

    func fail(_ error: VMError) -> Int32 {
        Console.tool.error("vm: " + error.description)
        return error.code
    }

    static func out(_ bytes: [UInt8], _ fd: CInt = 1) {
        _ = try? bytes.withBytes { raw throws(SystemError) in try Kernel.write(fd, raw, "standard output") }
    }

    /// `start`, `stop`, `save`, `restore`: the daemon's one-line answer.
    public func simple(_ request: String) -> Int32 {
        switch ask(request) {
        case .success(let body):
            Self.out(body)
            return 0
        case .failure(let error):
            return fail(error)
        }
    }

    /// Checks a definition and installs it as /etc/spirit/vms/NAME.toml
    /// (NAME from the file's name); a running daemon reads it at once.
    public func define(_ file: String) -> Int32 {
        do {
            let text = try Kernel.readText(file)
            let vm = try VMDefinition.parse(text, path: file)
            try Kernel.makeDirectory(paths.definitions, parents: true)
            try Kernel.writeFileAtomically(paths.definition(vm.name), text)
            if case .failure(let error) = ask("reload") {
                print("\(vm.name) defined in \(paths.definition(vm.name)); the VM manager did not take it yet: \(error.description)")
            } else {
                print("\(vm.name) defined in \(paths.definition(vm.name))")
            }
            return 0
        } catch let error as ConfigError {
            return fail(VMError(error.description, code: 100))
        } catch {
            return fail(VMError("\(error)"))
        }
    }

    public func list(json: Bool) -> Int32 {
        let body: [UInt8]
        switch ask("list") {
        case .success(let bytes): body = bytes
        case .failure(let error): return fail(error)
        }
        if json {
            Self.out(body)
            return 0
        }
        let vms = (try? JSONReader.parse(Array(body.prefix { $0 != 0x0A })))?["vms"]?.array ?? []
        var lines = [["NAME", "STATE", "AGENT", "MEMORY", "SAVED", "PID", "REASON"]]
        for vm in vms {
            lines.append([vm["name"]?.string ?? "?", vm["state"]?.string ?? "?", vm["agent"]?.string ?? "?",
                          "\(vm["memory-mib"]?.integer ?? 0) MiB", vm["saved"]?.bool == true ? "yes" : "no",
                          vm["pid"]?.integer.map(String.init) ?? "-", vm["reason"]?.string ?? ""])
        }
        let widths = (0..<6).map { column in lines.map { $0[column].count }.max() ?? 0 }
        for line in lines {
            let padded = (0..<6).map { line[$0] + String(repeating: " ", count: widths[$0] - line[$0].count) }
            print((padded + [line[6]]).joined(separator: "  ").trimmed)
        }
        return 0
    }

    /// Runs `argv` in the guest (through its shell for `@NAME`); its stdout
    /// and stderr are this command's, and so is its status (128 + N for a
    /// signal, as a shell says it).
    public func exec(_ name: String, _ argv: [String], shell: Bool, timeoutSeconds: Int, stdin: Bool = false) -> Int32 {
        let command = JSONValue.array(argv.map { .string($0) }).text
        var request = "exec \(name) \(timeoutSeconds * 1000) \(shell ? "shell" : "argv")"
        if stdin {
            // The agent takes the input whole with the command (input-data).
            var input: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while input.count <= Self.inputLimit {
                let n = (try? buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(0, into: raw, "standard input") ?? 0 }) ?? 0
                if n <= 0 { break }
                input += buffer[0..<n]
            }
            guard input.count <= Self.inputLimit else {
                return fail(VMError("the input is over \(Self.inputLimit >> 10) KiB: copy it into the guest another way", code: 100))
            }
            request += " stdin\n\(command)\n\(Base64.encode(input))"
        } else {
            request += "\n\(command)"
        }
        switch ask(request) {
        case .failure(let error):
            return fail(error)
        case .success(let body):
            guard let answer = try? JSONReader.parse(Array(body.prefix { $0 != 0x0A })),
                  let status = answer["status"]?.integer,
                  let stdout = answer["stdout"]?.string.flatMap(Base64.decode),
                  let stderr = answer["stderr"]?.string.flatMap(Base64.decode) else {
                return fail(VMError("the VM manager's exec answer is not what it should be"))
            }
            Self.out(stdout, 1)
            Self.out(stderr, 2)
            if answer["truncated"]?.bool == true { Console.tool.warning("vm: the guest agent cut the output at 16 MiB") }
            return Int32(truncatingIfNeeded: status)
        }
    }

    /// The VM's serial console, both ways, until ctrl-] or the end of input.
    public func console(_ name: String) -> Int32 {
        let socket: Socket
        do {
            socket = try Socket.connectUnix(paths.instance(name).consoleSocket)
        } catch {
            return fail(VMError("\(error) (is \(name) running?)"))
        }
        defer { socket.close() }
        Console.tool.info("vm: connected to \(name)'s console; ctrl-] ends")
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [pollfd(fd: 0, events: Int16(POLLIN), revents: 0), pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)]
            guard (try? Kernel.poll(&fds, milliseconds: nil)) != nil else { return 111 }
            if fds[1].revents != 0 {
                let n = (try? buffer.withMutableBytes { raw throws(SystemError) in try socket.read(into: raw) }) ?? 0
                if n <= 0 { return 0 }
                Self.out(Array(buffer[0..<n]))
            }
            if fds[0].revents != 0 {
                let n = (try? buffer.withMutableBytes { raw throws(SystemError) in try Kernel.read(0, into: raw, "standard input") ?? 0 }) ?? 0
                if n <= 0 { return 0 }
                let input = Array(buffer[0..<n])
                if let end = input.firstIndex(of: 0x1D) {
                    _ = try? socket.write(Array(input[..<end]))
                    return 0
                }
                guard (try? socket.write(input)) != nil else { return 0 }
            }
        }
    }
}

/// The VM manager behind the GPU hand-over's protocol.
extension VMClient: VMControl {
    public func state(of name: String) throws(VMError) -> VMState {
        let body = try ask("list").get()
        let vms = (try? JSONReader.parse(Array(body.prefix { $0 != 0x0A })))?["vms"]?.array ?? []
        guard let vm = vms.first(where: { $0["name"]?.string == name }) else {
            throw VMError("no VM named '\(name)' (define it: spirit vm define FILE)", code: 100)
        }
        guard let text = vm["state"]?.string, let state = VMState(rawValue: text) else {
            throw VMError("the VM manager gave \(name) no state it knows")
        }
        return state
    }

    public func start(_ name: String) throws(VMError) -> String {
        String(decoding: try ask("start \(name)").get(), as: UTF8.self).trimmed
    }
}
