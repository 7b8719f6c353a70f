import Nexus
import Testing

@Suite struct DisplayWaitTests {
    typealias Card = DisplayWait.Card

    @Test func aGPUsCardOpensAtOnceWhateverTheModulesSay() {
        for modules: DisplayWait.Modules in [.absent, .unanswered, .state("waiting"), .state("starting"), .state("running"), .state("failed")] {
            #expect(DisplayWait.decide(gpuCard: "card1", anyCard: "card0", framebuffer: true, modules: modules) == .open(card: "card1"))
        }
    }

    @Test func whileTheModulesLoadOrTheSupervisorIsBusyTheHUDWaitsEvenWithAFirmwareDisplay() {
        for modules: DisplayWait.Modules in [.state("waiting"), .state("starting"), .state("backoff"), .unanswered] {
            #expect(DisplayWait.decide(gpuCard: nil, anyCard: "card0", framebuffer: true, modules: modules) == .wait)
            #expect(DisplayWait.decide(gpuCard: nil, anyCard: nil, framebuffer: false, modules: modules) == .wait)
        }
    }

    @Test func onceTheyHaveSettledAFirmwareCardAFramebufferOrNothing() {
        // Settled: ready, ended, given up, stopped; absent: no such service, or no supervisor to ask.
        for modules: DisplayWait.Modules in [.state("running"), .state("exited"), .state("failed"), .state("stopped"), .absent] {
            #expect(DisplayWait.decide(gpuCard: nil, anyCard: "card0", framebuffer: true, modules: modules) == .open(card: "card0"))
            #expect(DisplayWait.decide(gpuCard: nil, anyCard: nil, framebuffer: true, modules: modules) == .open(card: nil))
            #expect(DisplayWait.decide(gpuCard: nil, anyCard: nil, framebuffer: false, modules: modules) == .none)
        }
    }

    @Test func withTheGraphicsHeldBackNothingIsAwaited() {
        #expect(DisplayWait.decide(gpuCard: nil, anyCard: nil, framebuffer: false, modules: .state("starting"), graphicsHeld: true) == .none)
        #expect(DisplayWait.decide(gpuCard: nil, anyCard: nil, framebuffer: true, modules: .unanswered, graphicsHeld: true) == .open(card: nil))
    }

    @Test func onlyABoundPCIOrVirtioCardIsAGPUs() {
        // Under UEFI, simpledrm's card0 is bound from the start, on the platform bus.
        let simpledrm = Card(name: "card0", bus: "platform", bound: true)
        #expect(DisplayWait.gpuCard([simpledrm]) == nil)
        #expect(DisplayWait.gpuCard([simpledrm, Card(name: "card1", bus: "pci", bound: false)]) == nil)
        #expect(DisplayWait.gpuCard([simpledrm, Card(name: "card1", bus: "pci", bound: true)]) == "card1")
        #expect(DisplayWait.gpuCard([Card(name: "card0", bus: "virtio", bound: true)]) == "card0")
        #expect(DisplayWait.gpuCard([Card(name: "card10", bus: "pci", bound: true), Card(name: "card2", bus: "pci", bound: true)]) == "card2")
        #expect(DisplayWait.gpuCard([Card(name: "card0", bus: nil, bound: true)]) == nil)
    }
}
