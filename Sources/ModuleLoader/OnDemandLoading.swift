import SpiritCore

/// The loader installed for OnDemandModules by stage 1, `spirit-mount` and
/// `spirit nodus attach`: a filesystem's modules are loaded at its first
/// mount, nbd at the first attach, rather than at every boot (the initramfs
/// carries them; research/boot-performance.md: what finds no image costs
/// every boot). The index is read at the first load and kept.
public enum OnDemandLoading {
    public static func install(console: Console) {
        let cached = Monitor()
        nonisolated(unsafe) var index: ModuleIndex?
        OnDemandModules.install { names, why in
            cached.withLock {
                let release = Kernel.release()
                if index == nil {
                    do {
                        index = try ModuleIndex.load(release: release)
                    } catch {
                        console.warning("\(error): no modules can be loaded for \(why)")
                        return
                    }
                }
                guard let index else { return }
                let plan = index.plan(names)
                for name in plan.missing { console.warning("module \(name): not found for kernel \(release), wanted for \(why)") }
                for result in ParallelLoader(loading: ModuleLoading(release: release)).load(plan) {
                    switch result.outcome {
                    case .loaded: console.debug("loaded \(result.module.name) for \(why)")
                    case .alreadyLoaded, .notForThisMachine: break
                    case .failed(let message): console.warning(message + " (for \(why))")
                    }
                }
            }
        }
    }
}
