import Glibc
import SpiritCore

/// A fresh directory under /tmp for a fixture tree.
func fixtureDirectory(_ name: String) throws -> String {
    let path = "/tmp/spirit-test-\(name)-\(getpid())"
    try Kernel.makeDirectory(path, parents: true)
    return path
}
