/// Spoken requests for `spirit ask --listen`: CMU PocketSphinx (Debian's
/// pocketsphinx with its en-us acoustic model) decodes a recording against
/// a JSGF grammar of the requests `spirit ask` knows, built from the live
/// services, with a dictionary of just the words in it. A small grammar is
/// what makes a 2015 recogniser usable: measured with espeak-ng's voice,
/// the general English model heard "restart nodus" as "da da da"; this
/// grammar hears "restart the nodus".
public enum VoiceCommands {
    /// Service names the CMU dictionary does not know, as ARPAbet.
    static let pronunciations = ["nodus": "N OW D AH S", "vm": "V IY EH M", "ai": "EY AY"]

    /// The names that can be said: lower-case letters only (a name with
    /// digits or dashes is left out of the grammar).
    public static func speakable(_ services: [String]) -> [String] {
        services.filter { !$0.isEmpty && $0.allSatisfy { $0 >= "a" && $0 <= "z" } }
    }

    public static func grammar(services: [String]) -> String {
        let names = speakable(services)
        var rules = ["what is using the most memory", "how long did the boot take", "which services failed", "show the status"]
        if !names.isEmpty { rules.insert("[please] <verb> [the] <service> [service]", at: 0) }
        var text = "#JSGF V1.0;\ngrammar spirit;\npublic <request> = " + rules.map { "( \($0) )" }.joined(separator: " | ") + ";\n"
        if !names.isEmpty {
            text += "<verb> = restart | start | stop | status of | show the logs of;\n"
            text += "<service> = " + names.joined(separator: " | ") + ";\n"
        }
        return text
    }

    /// The words of the grammar (what the dictionary must hold).
    public static func words(services: [String]) -> [String] {
        let fixed = "please restart start stop status of show the logs service what is using most memory how long did boot take which services failed"
        var seen = Set<String>()
        return (fixed.split(separator: " ").map(String.init) + speakable(services)).filter { seen.insert($0).inserted }
    }

    /// Dictionary lines for `words`, from the CMU dictionary's text (with
    /// its `word(2)` variants), our own pronunciations, or the word spelled
    /// letter by letter; nil and the words that could not be said otherwise.
    public static func dictionary(words: [String], cmudict: String) -> (text: String, missing: [String]) {
        var entries: [String: [String]] = [:]
        let wanted = Set(words).union((UnicodeScalar("a").value...UnicodeScalar("z").value).map { String(UnicodeScalar($0)!) })
        for line in cmudict.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            let head = line[..<space]
            let word = head.split(separator: "(").first.map(String.init) ?? ""
            guard wanted.contains(word) else { continue }
            entries[word, default: []].append(String(line[line.index(after: space)...]))
        }
        var lines: [String] = []
        var missing: [String] = []
        for word in words {
            var phones = entries[word] ?? []
            if let own = pronunciations[word] { phones = [own] + phones }
            if phones.isEmpty {
                let letters = word.map { entries[String($0)]?.first }
                if letters.allSatisfy({ $0 != nil }) { phones = [letters.compactMap { $0 }.joined(separator: " ")] }
            }
            if phones.isEmpty { missing.append(word) }
            for (index, phone) in phones.enumerated() {
                lines.append((index == 0 ? word : "\(word)(\(index + 1))") + " " + phone)
            }
        }
        return (lines.joined(separator: "\n") + "\n", missing)
    }

    /// The recogniser's output (one line a decoded utterance) as one request.
    public static func transcript(_ output: String) -> String {
        output.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }.filter { !$0.isEmpty }.joined(separator: " ")
    }
}

/// The head of a WAV file, as far as a recogniser needs it: PCM, its rate,
/// its channels and sample size. Anything else is refused by name.
public struct WAVFormat: Sendable, Equatable {
    public var sampleRate: Int
    public var channels: Int
    public var bitsPerSample: Int

    public init(sampleRate: Int, channels: Int, bitsPerSample: Int) {
        self.sampleRate = sampleRate
        self.channels = channels
        self.bitsPerSample = bitsPerSample
    }

    public static func parse(_ bytes: [UInt8]) throws(WAVError) -> WAVFormat {
        func u32(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24 }
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        guard bytes.count >= 12, bytes[0..<4].elementsEqual("RIFF".utf8), bytes[8..<12].elementsEqual("WAVE".utf8) else {
            throw WAVError("not a WAV file (no RIFF/WAVE header)")
        }
        var offset = 12
        while offset + 8 <= bytes.count {
            let size = u32(offset + 4)
            if bytes[offset..<offset + 4].elementsEqual("fmt ".utf8) {
                guard size >= 16, offset + 8 + 16 <= bytes.count else { throw WAVError("its fmt chunk is cut short") }
                let body = offset + 8
                guard u16(body) == 1 else { throw WAVError("it is not PCM (format \(u16(body)))") }
                let format = WAVFormat(sampleRate: u32(body + 4), channels: u16(body + 2), bitsPerSample: u16(body + 14))
                guard format.channels == 1, format.bitsPerSample == 16, (8000...48000).contains(format.sampleRate) else {
                    throw WAVError("it is \(format.channels) channel(s) of \(format.bitsPerSample)-bit at \(format.sampleRate) Hz; "
                                   + "16-bit mono at 8 to 48 kHz is taken (arecord -f S16_LE -c 1 -r 16000)")
                }
                return format
            }
            offset += 8 + size + (size & 1)
        }
        throw WAVError("it has no fmt chunk")
    }

    /// The recogniser's FFT size for the rate (512 up to 16 kHz).
    public var fftSize: Int { sampleRate <= 16000 ? 512 : sampleRate <= 32000 ? 1024 : 2048 }
}

public struct WAVError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
