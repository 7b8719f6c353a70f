/// fnmatch(3) without flags, as kmod matches modules.alias patterns against
/// a modalias: `*` any run of characters, `?` one, `[...]` a set (with
/// ranges, and `!` or `^` to negate), `\` escapes the next character.
/// Written here because the static binary has no libc fnmatch contract to
/// test against; the oracle test compares it with libkmod on every alias.
public func globMatch(_ pattern: some StringProtocol, _ text: some StringProtocol) -> Bool {
    let p = Array(pattern.utf8)
    let t = Array(text.utf8)
    var pi = 0
    var ti = 0
    var starP = -1
    var starT = 0
    while ti < t.count {
        if pi < p.count {
            switch p[pi] {
            case UInt8(ascii: "*"):
                starP = pi
                starT = ti
                pi += 1
                continue
            case UInt8(ascii: "?"):
                pi += 1
                ti += 1
                continue
            case UInt8(ascii: "["):
                if let (matched, next) = matchSet(p, pi, t[ti]) {
                    if matched {
                        pi = next
                        ti += 1
                        continue
                    }
                } else if t[ti] == UInt8(ascii: "[") {
                    // An unterminated set is a literal '['.
                    pi += 1
                    ti += 1
                    continue
                }
            case UInt8(ascii: "\\") where pi + 1 < p.count:
                if p[pi + 1] == t[ti] {
                    pi += 2
                    ti += 1
                    continue
                }
            default:
                if p[pi] == t[ti] {
                    pi += 1
                    ti += 1
                    continue
                }
            }
        }
        guard starP >= 0 else { return false }
        pi = starP + 1
        starT += 1
        ti = starT
    }
    while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}

/// Matches `c` against the set starting at p[start] (`[`). Returns whether
/// it matched and the index after the set, or nil if the set is not closed.
private func matchSet(_ p: [UInt8], _ start: Int, _ c: UInt8) -> (Bool, Int)? {
    var i = start + 1
    var negate = false
    if i < p.count, p[i] == UInt8(ascii: "!") || p[i] == UInt8(ascii: "^") {
        negate = true
        i += 1
    }
    var matched = false
    var first = true
    while i < p.count {
        if p[i] == UInt8(ascii: "]"), !first {
            return (matched != negate, i + 1)
        }
        first = false
        var low = p[i]
        if low == UInt8(ascii: "\\"), i + 1 < p.count {
            i += 1
            low = p[i]
        }
        if i + 2 < p.count, p[i + 1] == UInt8(ascii: "-"), p[i + 2] != UInt8(ascii: "]") {
            var high = p[i + 2]
            var skip = 3
            if high == UInt8(ascii: "\\"), i + 3 < p.count {
                high = p[i + 3]
                skip = 4
            }
            if low <= c, c <= high { matched = true }
            i += skip
        } else {
            if low == c { matched = true }
            i += 1
        }
    }
    return nil
}
