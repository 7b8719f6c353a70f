import SpiritCommands
import SpiritCore

// PID 1 is spirit-init (Sources/SpiritPID1), its own small binary; it
// starts this one for everything else.
//
// The full multi-call binary, the system image's /bin/spirit: the commands
// of the boot binary (SpiritCommands' MultiCall, the same dispatch) and
// those of a running system, each with what runs it. The result is the
// exit status (0, 100 for a usage error, 111 for a system failure).
func stageTwo(_ command: StageTwoCommand) -> MultiCall.Command {
    switch command {
    case .supervise: return SuperviseCommand.run
    case .ctl: return ControlCommand.run
    case .layer: return LayerCommand.run
    case .serve: return NetbootCommand.run
    case .nexus: return NexusCommand.run
    case .vm: return VMCommand.run
    case .sentinel: return SentinelCommand.run
    case .metrics: return MetricsCommand.run
    case .gpu: return GPUCommand.run
    case .ai: return AICommand.run
    case .ask: return AskCommand.run
    case .persist: return PersistCommand.run
    case .upgrade: return UpgradeCommand.run
    }
}

// argv comes from the early constructor (see early.c).
MultiCall.main(Kernel.processArguments() ?? CommandLine.arguments, stageTwo: stageTwo)
