import SpiritCommands
import SpiritCore

// The initramfs's /bin/spirit (`spirit-boot`): the stage-1 boot worker, PID
// 1's helpers, the rescue tools and every command that works before the
// system image is up, without the daemons of stage 2 (the HUD, the VM
// manager, the AI runtime, the supervisor…), which only the system image's
// full `spirit` carries. Same dispatch, same commands, same words.
//
// argv comes from the early constructor (see early.c).
MultiCall.main(Kernel.processArguments() ?? CommandLine.arguments, stageTwo: nil)
