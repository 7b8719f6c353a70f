import AIRuntime
import SpiritCore
import Testing

struct ModelSchedulerTests {
    let second: Int64 = 1_000_000

    @Test func loadsOnDemandServesAndUnloadsAfterItsKeepAlive() {
        var scheduler = ModelScheduler(keepAliveMicros: 300 * second)
        #expect(scheduler.want("smol", now: 0) == [.start(model: "smol")])
        #expect(scheduler.loadedModel == nil)
        #expect(scheduler.want("smol", now: 1) == [], "a second request waits for the same load")
        scheduler.healthy(now: 2 * second)
        #expect(scheduler.loadedModel == "smol")
        scheduler.begin()
        #expect(scheduler.tick(now: 1000 * second) == [], "never unloaded under a request")
        #expect(scheduler.end(now: 1000 * second) == [])
        #expect(scheduler.expiresAt == 1300 * second)
        #expect(scheduler.tick(now: 1299 * second) == [])
        #expect(scheduler.tick(now: 1300 * second) == [.stop(model: "smol", why: "idle for 300 s")])
        #expect(scheduler.exited(how: "exited with status 0", now: 1301 * second) == [])
        #expect(scheduler.state == .unloaded)
        #expect(scheduler.lastFailure == nil, "an asked-for stop is not a failure")
    }

    @Test func keepAliveNeverAndZero() {
        var never = ModelScheduler(keepAliveMicros: nil)
        _ = never.want("a", now: 0)
        never.healthy(now: 0)
        #expect(never.tick(now: Int64.max / 2) == [])
        var zero = ModelScheduler(keepAliveMicros: 0)
        _ = zero.want("a", now: 0)
        zero.healthy(now: 0)
        zero.begin()
        _ = zero.end(now: 5)
        #expect(zero.tick(now: 5) == [.stop(model: "a", why: "idle for 0 s")])
    }

    @Test func anotherModelWaitsForTheRequestsInFlightThenSwaps() {
        var scheduler = ModelScheduler()
        _ = scheduler.want("a", now: 0)
        scheduler.healthy(now: 1)
        scheduler.begin()
        #expect(scheduler.want("b", now: 2) == [], "a is busy")
        #expect(scheduler.end(now: 3) == [.stop(model: "a", why: "b was asked for")])
        #expect(scheduler.exited(how: "exited with status 0", now: 4) == [.start(model: "b")])
        scheduler.healthy(now: 5)
        #expect(scheduler.loadedModel == "b")
    }

    @Test func aFailedLoadIsToldToTheWaitersAndNotRetriedByItself() {
        var scheduler = ModelScheduler()
        _ = scheduler.want("a", now: 0)
        #expect(scheduler.loadFailed("/health did not answer 200 within 180 s") == [.stop(model: "a", why: "it did not load: /health did not answer 200 within 180 s")])
        #expect(scheduler.exited(how: "was killed by SIGTERM", now: 1) == [])
        #expect(scheduler.lastFailure == "/health did not answer 200 within 180 s")
        #expect(scheduler.wanted == nil)
        // The next request tries again.
        #expect(scheduler.want("a", now: 2) == [.start(model: "a")])
        #expect(scheduler.lastFailure == nil)
    }

    @Test func aCrashIsSaidAndTheNextRequestStartsItAgain() {
        var scheduler = ModelScheduler()
        _ = scheduler.want("a", now: 0)
        #expect(scheduler.exited(how: "was killed by SIGSEGV", now: 1) == [])
        #expect(scheduler.lastFailure == "llama-server was killed by SIGSEGV while loading a")
        _ = scheduler.want("a", now: 2)
        scheduler.healthy(now: 3)
        #expect(scheduler.exited(how: "exited with status 1", now: 4) == [])
        #expect(scheduler.lastFailure == "llama-server exited with status 1 while serving a")
        #expect(scheduler.want("a", now: 5) == [.start(model: "a")])
    }

    @Test func unloadStopsWhatIsLoadedOrLoading() {
        var scheduler = ModelScheduler()
        #expect(scheduler.unload() == [])
        _ = scheduler.want("a", now: 0)
        #expect(scheduler.unload() == [.stop(model: "a", why: "unloaded by request")])
        #expect(scheduler.exited(how: "exited with status 0", now: 1) == [])
        #expect(scheduler.state == .unloaded)
    }
}

struct LlamaServerTests {
    @Test func theVariantFollowsTheCPUsFlagsAndWhatIsInstalled() {
        let avx2 = CPUVariant.flags(cpuinfo: "processor\t: 0\nflags\t\t: fpu sse4_2 ssse3 popcnt avx avx2 fma f16c bmi2\nbogomips: 1\n")
        let qemu64 = CPUVariant.flags(cpuinfo: "flags\t\t: fpu sse sse2\n")
        let v2only = CPUVariant.flags(cpuinfo: "flags\t\t: sse4_2 ssse3 popcnt\n")
        #expect(CPUVariant.choose(flags: avx2, installed: [.v3, .v2]) == .success(.v3))
        #expect(CPUVariant.choose(flags: v2only, installed: [.v3, .v2]) == .success(.v2))
        #expect(CPUVariant.choose(flags: v2only, installed: [.v3]).failureMessage?.contains("lacks avx, avx2, fma, f16c, bmi2") == true)
        #expect(CPUVariant.choose(flags: qemu64, installed: [.v3, .v2]).failureMessage?.contains("neither llama-server build runs") == true)
        #expect(CPUVariant.choose(flags: avx2, installed: []).failureMessage?.contains("no llama-server is installed") == true)
    }

    @Test func theChildsSettingsOverrideTheDesktopDefaults() {
        let arguments = LlamaSettings(threads: 2).arguments(model: "/run/spirit/models/smol.gguf", alias: "smol", socket: "/run/spirit/ai/llama.sock")
        let text = arguments.joined(separator: " ")
        #expect(text.contains("-m /run/spirit/models/smol.gguf --host /run/spirit/ai/llama.sock"))
        #expect(text.contains("-c 2048 -np 1 -t 2 --cache-ram 0 --no-webui"))
        #expect(LlamaSettings(threads: 0).threads == 1)
    }
}

extension Result where Failure == CPUVariant.ChoiceError {
    var failureMessage: String? { if case .failure(let error) = self { error.message } else { nil } }
}
