import SpiritCore

/// A command's wrong use: said with the usage line, exit status 100.
package struct UsageError: Error {
    package var message: String

    package init(message: String) { self.message = message }
}

/// A command's `--name value` pairs and bare words, the one way Spirit's
/// commands read their arguments.
package struct Options {
    package var named: [String: String] = [:]
    package var words: [String] = []

    package init(_ arguments: [String]) throws(UsageError) {
        var rest = arguments[...]
        while let word = rest.popFirst() {
            if word.hasPrefix("--") {
                guard let value = rest.popFirst() else { throw UsageError(message: "\(word) needs a value") }
                named[String(word.dropFirst(2))] = value
            } else {
                words.append(word)
            }
        }
    }

    package func required(_ name: String) throws(UsageError) -> String {
        guard let value = named[name] else { throw UsageError(message: "--\(name) is required") }
        return value
    }
}

/// Runs a command's body with the exit status contract: 0, 100 for a usage
/// error (said with the usage line), 111 for a failure (said as an error).
package func exitStatus(_ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch let error as UsageError {
        return Usage.fail(error.message)
    } catch {
        Console.tool.error("\(error)")
        return 111
    }
}
