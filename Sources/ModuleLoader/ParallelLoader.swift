import Dispatch
import Glibc
import SpiritCore

/// Loads a plan's modules in parallel, each once its dependencies have
/// finished (LoadSchedule).
public struct ParallelLoader: Sendable {
    public let loading: ModuleLoading
    /// How many modules load at once: 1 loads one after another.
    public let jobs: Int

    /// By default twice the CPUs: many module inits wait (for a device, a
    /// firmware answer, async work) rather than compute. Measured in a
    /// 2-vCPU VM, 65 modules: 1 at once 3041 ms, 2 2358, 4 1981, 8 2081,
    /// 16 2283 (kmod's modprobe -a: 3115).
    public init(loading: ModuleLoading, jobs: Int = 0) {
        self.loading = loading
        self.jobs = jobs > 0 ? jobs : 2 * max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    public struct Result: Sendable {
        public var module: PlannedModule
        public var outcome: ModuleLoading.Outcome
    }

    /// Loads every module of `plan` not in `skip`; returns each outcome,
    /// in the plan's order. Each module starts as soon as a worker is free
    /// and its dependencies have finished (LoadSchedule): no wave waits
    /// for its slowest module (a NIC's probe) before the next can start.
    public func load(_ plan: LoadPlan, skip: Set<String> = []) -> [Result] {
        let pending = plan.modules.filter { !skip.contains($0.name) }
        guard jobs > 1 && pending.count > 1 else {
            // The plan's order is a dependency order.
            return pending.map { Result(module: $0, outcome: self.loading.load($0, parameters: $0.parameters)) }
        }
        final class Shared: @unchecked Sendable {
            let monitor = Monitor()
            var schedule: LoadSchedule
            var outcomes: [ModuleLoading.Outcome]
            init(_ modules: [PlannedModule]) {
                schedule = LoadSchedule(modules)
                outcomes = Array(repeating: .alreadyLoaded, count: modules.count)
            }
        }
        let shared = Shared(pending)
        let loading = self.loading
        DispatchQueue.concurrentPerform(iterations: min(jobs, pending.count)) { _ in
            while true {
                let next: Int? = shared.monitor.withLock {
                    while true {
                        if let index = shared.schedule.next() { return index }
                        // Nothing ready and nothing loading: all done.
                        if shared.schedule.running == 0 { return nil }
                        shared.monitor.wait(untilBootMicros: Kernel.bootTimeMicros() + 1_000_000)
                    }
                }
                guard let index = next else { return }
                let outcome = loading.load(pending[index], parameters: pending[index].parameters)
                shared.monitor.withLock {
                    shared.outcomes[index] = outcome
                    shared.schedule.finish(index)
                }
                shared.monitor.broadcast()
            }
        }
        return zip(pending, shared.outcomes).map { Result(module: $0, outcome: $1) }
    }
}

/// Which module of a plan loads next, with no I/O: one whose dependencies
/// earlier in the plan have all finished (loaded or not: a failed one is
/// the kernel's to report, as with modprobe), the first such in the plan's
/// order (the priority order). Only dependencies that come earlier count,
/// as in LoadPlan.waves, so a softdep cycle cannot stall the schedule.
public struct LoadSchedule: Sendable {
    var waiting: [Int]
    var dependents: [[Int]]
    /// Ready to load, in plan order.
    var ready: [Int]
    public private(set) var running = 0
    public private(set) var finished = 0

    public init(_ modules: [PlannedModule]) {
        var position: [String: Int] = [:]
        waiting = Array(repeating: 0, count: modules.count)
        dependents = Array(repeating: [], count: modules.count)
        for (index, module) in modules.enumerated() {
            for dependency in Set(module.dependencies) {
                guard let earlier = position[dependency] else { continue }
                waiting[index] += 1
                dependents[earlier].append(index)
            }
            position[module.name] = index
        }
        let counts = waiting
        ready = modules.indices.filter { counts[$0] == 0 }
    }

    /// The next module to start, or nil when none is ready now.
    public mutating func next() -> Int? {
        guard !ready.isEmpty else { return nil }
        running += 1
        return ready.removeFirst()
    }

    /// `index` has finished: what waited only for it becomes ready.
    public mutating func finish(_ index: Int) {
        running -= 1
        finished += 1
        for dependent in dependents[index] {
            waiting[dependent] -= 1
            if waiting[dependent] == 0 {
                ready.insert(dependent, at: ready.firstIndex(where: { $0 > dependent }) ?? ready.endIndex)
            }
        }
    }
}
