import Nexus
import Testing

@Suite struct DisplayWaitTests {
    @Test func aBoundCardOpensAtOnce() {
        for modules in [nil, "waiting", "starting", "running", "failed"] {
            #expect(DisplayWait.decide(cardBound: true, framebuffer: false, modules: modules) == .open)
        }
    }

    @Test func whileTheModulesLoadTheHUDWaitsEvenWithAFramebuffer() {
        for modules in ["waiting", "starting", "backoff"] {
            #expect(DisplayWait.decide(cardBound: false, framebuffer: true, modules: modules) == .wait)
            #expect(DisplayWait.decide(cardBound: false, framebuffer: false, modules: modules) == .wait)
        }
    }

    @Test func onceTheyHaveSettledAFramebufferOrNothing() {
        // Settled: ready, ended, given up, stopped; nil: no such service, or no supervisor to ask.
        for modules in ["running", "exited", "failed", "stopped", "stopping", nil] {
            #expect(DisplayWait.decide(cardBound: false, framebuffer: true, modules: modules) == .open)
            #expect(DisplayWait.decide(cardBound: false, framebuffer: false, modules: modules) == .none)
        }
    }

    @Test func withTheGraphicsHeldBackNothingIsAwaited() {
        #expect(DisplayWait.decide(cardBound: false, framebuffer: false, modules: "starting", graphicsHeld: true) == .none)
        #expect(DisplayWait.decide(cardBound: false, framebuffer: true, modules: "starting", graphicsHeld: true) == .open)
    }
}
