@testable import ModuleLoader
import SpiritCore
import Testing

@Suite struct ParallelLoaderTests {
    /// A chain a → b → c of small modules, a big module x on its own, and
    /// y, which needs x and c.
    static let modules = [
        PlannedModule(name: "a", path: "a.ko"), PlannedModule(name: "b", path: "b.ko", dependencies: ["a"]),
        PlannedModule(name: "c", path: "c.ko", dependencies: ["b"]), PlannedModule(name: "x", path: "x.ko"),
        PlannedModule(name: "y", path: "y.ko", dependencies: ["x", "c", "not-in-the-plan"]),
        PlannedModule(name: "z", path: "z.ko"),
    ]
    static let sizes = ["a": 10, "b": 10, "c": 10, "x": 100, "y": 5, "z": 1]

    /// Records the order of loads, and whether each started after all it needs.
    final class Recorder: @unchecked Sendable {
        let monitor = Monitor()
        var finished: Set<String> = []
        var order: [String] = []
        var early: [String] = []

        func load(_ module: PlannedModule, failing: Set<String> = []) -> ModuleLoading.Outcome {
            monitor.withLock {
                order.append(module.name)
                if module.dependencies.contains(where: { ParallelLoaderTests.sizes[$0] != nil && !finished.contains($0) }) {
                    early.append(module.name)
                }
            }
            Kernel.sleep(milliseconds: 2)
            monitor.withLock { _ = finished.insert(module.name) }
            return failing.contains(module.name) ? .failed(module.name) : .loaded
        }
    }

    @Test func oneAtATimeTakesTheLongestChainFirst() {
        let recorder = Recorder()
        let outcomes = ParallelLoader.run(Self.modules, jobs: 1, cost: { Self.sizes[$0.name]! }) { recorder.load($0) }
        // Ranks: x 105, a 35, b 25, c 15, y 5, z 1.
        #expect(recorder.order == ["x", "a", "b", "c", "y", "z"])
        #expect(outcomes == Array(repeating: .loaded, count: 6))
    }

    @Test func inParallelEachModuleWaitsOnlyForWhatItNeeds() {
        for jobs in [2, 3, 4, 8] {
            let recorder = Recorder()
            let outcomes = ParallelLoader.run(Self.modules, jobs: jobs, cost: { Self.sizes[$0.name]! }) {
                recorder.load($0, failing: ["b"])
            }
            #expect(recorder.early.isEmpty, "jobs \(jobs): \(recorder.early) started before what they need")
            #expect(Set(recorder.order) == Set(Self.sizes.keys) && recorder.order.count == 6, "jobs \(jobs): \(recorder.order)")
            #expect(Array(recorder.order.prefix(2)).sorted() == ["a", "x"], "jobs \(jobs): the two chains' heads first: \(recorder.order)")
            // In the plan's order; c is still tried after b failed, as modprobe would.
            #expect(outcomes == [.loaded, .failed("b"), .loaded, .loaded, .loaded, .loaded], "jobs \(jobs)")
        }
    }

    @Test func aDependencyCycleDoesNotHang() {
        let cycle = [PlannedModule(name: "p", path: "p.ko", dependencies: ["q"]), PlannedModule(name: "q", path: "q.ko", dependencies: ["p"])]
        let recorder = Recorder()
        let outcomes = ParallelLoader.run(cycle, jobs: 4, cost: { _ in 1 }) { recorder.load($0) }
        #expect(outcomes == [.loaded, .loaded])
    }

    @Test func nothingToLoad() {
        #expect(ParallelLoader.run([], jobs: 4, cost: { _ in 1 }) { _ in .loaded }.isEmpty)
    }
}
