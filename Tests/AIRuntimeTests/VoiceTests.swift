import AIRuntime
import Testing

struct VoiceTests {
    @Test func theGrammarHoldsTheRequestsAndTheSpeakableServices() {
        let grammar = VoiceCommands.grammar(services: ["nodus", "vm", "web-2"])
        #expect(grammar.hasPrefix("#JSGF V1.0;\ngrammar spirit;\npublic <request> = ( [please] <verb> [the] <service> [service] ) | ( what is using the most memory )"))
        #expect(grammar.hasSuffix("<service> = nodus | vm;\n"), "a name with a digit or a dash cannot be said")
        #expect(!VoiceCommands.grammar(services: []).contains("<service>"))
    }

    @Test func theDictionaryTakesCMUsWordsOurNamesAndSpellsTheRest() {
        let cmu = "a AH\na(2) EY\nb B IY\nrestart R IY S T AA R T\nthe DH AH\nthe(2) DH IY\nx EH K S\n"
        let dictionary = VoiceCommands.dictionary(words: ["restart", "the", "nodus", "bx", "zzz"], cmudict: cmu)
        #expect(dictionary.text == "restart R IY S T AA R T\nthe DH AH\nthe(2) DH IY\nnodus N OW D AH S\nbx B IY EH K S\n")
        #expect(dictionary.missing == ["zzz"])
    }

    @Test func theTranscriptIsOneLine() {
        #expect(VoiceCommands.transcript("restart  the nodus\n\nstop nexus\n") == "restart the nodus stop nexus")
    }

    @Test func wavHeaders() throws {
        func wav(format: UInt16 = 1, channels: UInt16 = 1, rate: UInt32 = 22050, bits: UInt16 = 16, junk: Bool = false) -> [UInt8] {
            func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xff) } }
            func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
            var bytes = Array("RIFF".utf8) + le32(100) + Array("WAVE".utf8)
            if junk { bytes += Array("LIST".utf8) + le32(3) + [1, 2, 3, 0] }
            bytes += Array("fmt ".utf8) + le32(16) + le16(format) + le16(channels) + le32(rate) + le32(rate * 2) + le16(2) + le16(bits)
            return bytes + Array("data".utf8) + le32(0)
        }
        #expect(try WAVFormat.parse(wav()) == WAVFormat(sampleRate: 22050, channels: 1, bitsPerSample: 16))
        #expect(try WAVFormat.parse(wav(rate: 16000, junk: true)).fftSize == 512)
        #expect(try WAVFormat.parse(wav()).fftSize == 1024)
        #expect(throws: WAVError("not a WAV file (no RIFF/WAVE header)")) { try WAVFormat.parse(Array("ID3 mp3".utf8)) }
        #expect(throws: WAVError("it is not PCM (format 3)")) { try WAVFormat.parse(wav(format: 3)) }
        #expect(throws: WAVError.self) { try WAVFormat.parse(wav(channels: 2)) }
        #expect(throws: WAVError("its fmt chunk is cut short")) { try WAVFormat.parse(Array(wav().prefix(30))) }
    }
}
