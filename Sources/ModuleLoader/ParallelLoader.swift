import Glibc
import SpiritCore

/// Loads a plan as a dependency graph: each module as soon as the modules
/// it needs have loaded (not after a whole wave), at most `jobs` at once,
/// and of the modules ready, the one at the head of the longest remaining
/// chain first (a chain's length by its modules' file sizes: under TCG a
/// load's cost grows with the module's size, research/boot-performance.md
/// section 4). Waves with fixed strands kept a vCPU idle behind a strand
/// that drew two large modules, and held a chain's next module back until
/// the slowest module of the wave was in.
public struct ParallelLoader: Sendable {
    public let loading: ModuleLoading
    /// How many modules load at once: 1 loads one after another.
    public let jobs: Int

    /// By default twice the CPUs: many module inits wait (for a device, a
    /// firmware answer, async work) rather than compute. Measured in a
    /// 2-vCPU VM, 65 modules, in waves: 1 at once 3041 ms, 2 2358, 4 1981,
    /// 8 2081, 16 2283 (kmod's modprobe -a: 3115).
    public init(loading: ModuleLoading, jobs: Int = 0) {
        self.loading = loading
        self.jobs = jobs > 0 ? jobs : 2 * max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    public struct Result: Sendable {
        public var module: PlannedModule
        public var outcome: ModuleLoading.Outcome
    }

    /// Loads every module of `plan` not in `skip`; returns each outcome, in
    /// the plan's order.
    public func load(_ plan: LoadPlan, skip: Set<String> = []) -> [Result] {
        let pending = plan.modules.filter { !skip.contains($0.name) }
        let loading = self.loading
        let outcomes = Self.run(pending, jobs: jobs, cost: loading.cost) { loading.load($0, parameters: $0.parameters) }
        return zip(pending, outcomes).map { Result(module: $0, outcome: $1) }
    }

    /// The schedule, apart from the kernel: `modules` in dependency order
    /// (a module after those it needs, as LoadPlan has them), `cost` of one
    /// (its size), `load` one. A module whose dependency failed is still
    /// tried, as modprobe would: the kernel says what is missing. A
    /// dependency outside `modules` counts as there. Returns the outcomes in
    /// the order of `modules`.
    static func run(_ modules: [PlannedModule], jobs: Int, cost: (PlannedModule) -> Int,
                    load: @escaping @Sendable (PlannedModule) -> ModuleLoading.Outcome) -> [ModuleLoading.Outcome] {
        let graph = Graph(modules, cost: cost)
        if jobs <= 1 || modules.count <= 1 {
            // One at a time, still longest chain first.
            var state = graph.start()
            var outcomes = [ModuleLoading.Outcome](repeating: .alreadyLoaded, count: modules.count)
            while let next = state.take() {
                outcomes[next] = load(modules[next])
                state.finish(next)
            }
            return outcomes
        }
        let shared = SharedSchedule(graph.start(), count: modules.count)
        let workers = min(jobs, modules.count)
        let work: @Sendable () -> Void = {
            while let next = shared.take() {
                shared.finish(next, load(modules[next]))
            }
        }
        var started = 1
        for _ in 1..<workers {
            // Without another thread, this one does all the work.
            if (try? Threads.start(work)) != nil { started += 1 }
        }
        work()
        return shared.waitForAll(workers: started)
    }

    /// The dependency graph of a plan, with each module's rank: its cost
    /// plus the longest chain of modules that wait for it.
    struct Graph {
        var waitingFor: [Int]
        var dependents: [[Int]]
        var rank: [Int]

        init(_ modules: [PlannedModule], cost: (PlannedModule) -> Int) {
            var number: [String: Int] = [:]
            for (i, module) in modules.enumerated() { number[module.name] = i }
            waitingFor = Array(repeating: 0, count: modules.count)
            dependents = Array(repeating: [], count: modules.count)
            for (i, module) in modules.enumerated() {
                for dependency in Set(module.dependencies) {
                    // Only what comes earlier: a dependency cycle in
                    // modules.dep must not leave both waiting (the waves did the same).
                    guard let d = number[dependency], d < i else { continue }
                    dependents[d].append(i)
                    waitingFor[i] += 1
                }
            }
            rank = Array(repeating: 0, count: modules.count)
            // Dependents come later in a plan: from the end back, each rank is final when read.
            for i in modules.indices.reversed() {
                rank[i] = cost(modules[i]) + (dependents[i].map { rank[$0] }.max() ?? 0)
            }
        }

        func start() -> State {
            State(graph: self, ready: waitingFor.indices.filter { waitingFor[$0] == 0 }, waitingFor: waitingFor)
        }
    }

    /// Which modules are ready and which still wait.
    struct State {
        let graph: Graph
        var ready: [Int]
        var waitingFor: [Int]

        /// The ready module of the highest rank (the plan's order breaks ties).
        mutating func take() -> Int? {
            guard let best = ready.indices.max(by: { (graph.rank[ready[$0]], -ready[$0]) < (graph.rank[ready[$1]], -ready[$1]) })
            else { return nil }
            return ready.remove(at: best)
        }

        mutating func finish(_ module: Int) {
            for dependent in graph.dependents[module] {
                waitingFor[dependent] -= 1
                if waitingFor[dependent] == 0 { ready.append(dependent) }
            }
        }
    }

    /// The state the worker threads share, behind one lock.
    final class SharedSchedule: @unchecked Sendable {
        let monitor = Monitor()
        var state: State
        var outcomes: [ModuleLoading.Outcome]
        var done = 0
        var running = 0
        var workersEnded = 0

        init(_ state: State, count: Int) {
            self.state = state
            outcomes = Array(repeating: .alreadyLoaded, count: count)
        }

        /// The next module to load; waits while none is ready but some are
        /// loading (their dependents will be); nil when all are done.
        func take() -> Int? {
            monitor.withLock { () -> Int? in
                while true {
                    if let next = state.take() {
                        running += 1
                        return next
                    }
                    if done == outcomes.count || running == 0 {
                        workersEnded += 1
                        monitor.broadcast()
                        return nil
                    }
                    monitor.wait(untilBootMicros: Kernel.bootTimeMicros() + 1_000_000)
                }
            }
        }

        func finish(_ module: Int, _ outcome: ModuleLoading.Outcome) {
            monitor.withLock {
                outcomes[module] = outcome
                done += 1
                running -= 1
                state.finish(module)
            }
            monitor.broadcast()
        }

        /// After the calling thread's own share: waits until every worker
        /// has seen the end.
        func waitForAll(workers: Int) -> [ModuleLoading.Outcome] {
            monitor.withLock { () -> [ModuleLoading.Outcome] in
                while workersEnded < workers {
                    monitor.wait(untilBootMicros: Kernel.bootTimeMicros() + 1_000_000)
                }
                return outcomes
            }
        }
    }
}
