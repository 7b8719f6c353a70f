import Nexus
import SpiritCore
import Testing

@Suite struct RenderStatsTests {
    @Test func percentilesByNearestRank() {
        #expect(RenderStats.percentile([], 50) == nil)
        #expect(RenderStats.percentile([7], 99) == 7)
        let values: [Int64] = Array(1...100).reversed()
        #expect(RenderStats.percentile(values, 50) == 50 && RenderStats.percentile(values, 99) == 99 && RenderStats.percentile(values, 100) == 100)
        #expect(RenderStats.percentile([1, 2, 3], 0) == 1)
    }

    @Test func theJSONThatStatsPrints() throws {
        var stats = RenderStats(window: 3)
        #expect(stats.json == #"{"frames":{"full":0,"partial":0},"render_ms":{"full":{"p50":null,"p99":null},"partial":{"p50":null,"p99":null}},"first_frame_ms":null,"last_transition":null}"#)
        stats.firstFrameMicros = 183_250
        for micros: Int64 in [30_000, 20_000, 10_000, 40_000] { stats.recordFrame(micros: micros, partial: false) }
        stats.recordFrame(micros: 900, partial: true)
        stats.recordTransition(from: .dashboard, to: .bubble, micros: 7_400)
        let document = try JSONReader.parse(stats.json)
        #expect(document["frames"]?["full"]?.integer == 4 && document["frames"]?["partial"]?.integer == 1)
        // The window keeps the last 3 full frames: 20, 10, 40 ms.
        #expect(document["render_ms"]?["full"]?["p50"] == .number(20, text: "20.000"))
        #expect(document["render_ms"]?["full"]?["p99"] == .number(40, text: "40.000"))
        #expect(document["render_ms"]?["partial"]?["p50"] == .number(0.9, text: "0.900"))
        #expect(document["first_frame_ms"] == .number(183.25, text: "183.250"))
        #expect(document["last_transition"]?["from"]?.string == "dashboard" && document["last_transition"]?["to"]?.string == "bubble")
        #expect(document["last_transition"]?["ms"] == .number(7.4, text: "7.400"))
    }
}
