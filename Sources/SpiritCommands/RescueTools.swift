import BootCascade
import Glibc
import ModuleLoader
import Overlay
import SpiritCore

/// The rescue shell's tools, links to the multi-call binary
/// (`spirit-diag` runs `spirit diag`): what a person at a machine that
/// found no system image needs to see why and to go on.
enum RescueTools {
    static let names = ["diag", "mount", "fetch", "usb", "net"]

    static func run(_ tool: String, _ arguments: [String]) -> Int32 {
        switch tool {
        case "diag": return diag(arguments)
        case "mount": return mount(arguments)
        case "fetch": return fetch(arguments)
        case "usb": return usb(arguments)
        case "net": return NodusCommand.net(arguments)
        default: return Usage.fail("unknown rescue tool '\(tool)' (tools: \(names.map { "spirit-" + $0 }.joined(separator: ", ")))")
        }
    }
}

