import Dispatch
import Glibc
import SpiritCore

/// Loads a plan wave by wave, the modules of a wave in parallel: each wave
/// needs only modules of earlier waves (see LoadPlan.waves).
public struct ParallelLoader: Sendable {
    public let loading: ModuleLoading

    public init(loading: ModuleLoading) {
        self.loading = loading
    }

    public struct Result: Sendable {
        public var module: PlannedModule
        public var outcome: ModuleLoading.Outcome
    }

    /// Loads every module of `plan` not in `skip`; returns each outcome.
    public func load(_ plan: LoadPlan, skip: Set<String> = []) -> [Result] {
        var results: [Result] = []
        for wave in plan.waves {
            let pending = wave.filter { !skip.contains($0.name) }
            guard !pending.isEmpty else { continue }
            // Each slot is written by exactly one iteration.
            nonisolated(unsafe) let outcomes = UnsafeMutableBufferPointer<ModuleLoading.Outcome>.allocate(capacity: pending.count)
            outcomes.initialize(repeating: .alreadyLoaded)
            DispatchQueue.concurrentPerform(iterations: pending.count) { i in
                outcomes[i] = loading.load(pending[i], parameters: pending[i].parameters)
            }
            results += zip(pending, outcomes).map { Result(module: $0, outcome: $1) }
            outcomes.deallocate()
        }
        return results
    }
}
