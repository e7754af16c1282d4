#if canImport(Glibc)
import Glibc
#endif

/// A shell-like glob: `*` matches any run of characters except `/`, `**` any run including `/`, `?` one character
/// except `/`, `\x` the character x. Everything else matches itself.
///
/// Matching simulates the pattern as a small automaton over the subject's bytes (a bit set of positions), so it
/// takes time proportional to subject × pattern length at worst, whatever the pattern: no backtracking blow-up.
public final class Glob: Sendable, Hashable, CustomStringConvertible {
    enum Token: Sendable, Hashable { case byte(UInt8), one, star, doubleStar }

    public let pattern: String
    /// The pattern as tokens (empty for a literal, which is matched by equality).
    let tokens: [Token]
    /// The pattern's bytes when it has no wildcard (then matching is equality).
    let literal: [UInt8]?
    /// The literal bytes before the first wildcard (a cheap first test).
    let prefix: [UInt8]
    /// The pattern is `**` alone (matches everything).
    let matchesEverything: Bool
    /// The pattern is a literal prefix followed by a single trailing `**`.
    let isPrefixAndDoubleStar: Bool

    public init(_ pattern: String) {
        self.pattern = pattern
        var tokens: [Token] = []
        var prefix: [UInt8] = []
        var wild = false
        var copy = pattern
        copy.withUTF8 { u in
            // Many patterns in a policy have no wildcard or escape: a literal, matched by equality, needs no tokens.
            var special = false
            for b in u where b == UInt8(ascii: "\\") || b == UInt8(ascii: "*") || b == UInt8(ascii: "?") {
                special = true
                break
            }
            if !special {
                prefix = Array(u)
                return
            }
            // Tokens and prefix are written into scratch space first and copied into arrays of their exact size
            // (cheaper than growing arrays element by element).
            withUnsafeTemporaryAllocation(of: Token.self, capacity: u.count) { t in
                // What the last token is: 0 a byte (or none), 1 `*`, 2 `**` (runs of stars collapse into one token).
                var last = 0
                var i = 0
                var n = 0
                while i < u.count {
                    let b = u[i]
                    i += 1
                    switch b {
                    case UInt8(ascii: "\\"):
                        var c = b
                        if i < u.count { c = u[i]; i += 1 }
                        t.initializeElement(at: n, to: .byte(c)); n += 1
                        last = 0
                    case UInt8(ascii: "*"):
                        wild = true
                        if i < u.count && u[i] == UInt8(ascii: "*") {
                            while i < u.count && u[i] == UInt8(ascii: "*") { i += 1 }
                            if last != 2 { t.initializeElement(at: n, to: .doubleStar); n += 1; last = 2 }
                        } else if last == 0 {
                            t.initializeElement(at: n, to: .star); n += 1
                            last = 1
                        }
                    case UInt8(ascii: "?"):
                        wild = true
                        t.initializeElement(at: n, to: .one); n += 1
                        last = 0
                    default:
                        t.initializeElement(at: n, to: .byte(b)); n += 1
                        last = 0
                    }
                }
                let written = UnsafeBufferPointer(rebasing: t[0..<n])
                tokens = Array(written)
                // The literal bytes before the first wildcard.
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: n) { p in
                    var leading = 0
                    while leading < n, case .byte(let b) = written[leading] { p.initializeElement(at: leading, to: b); leading += 1 }
                    prefix = Array(UnsafeBufferPointer(rebasing: p[0..<leading]))
                }
            }
        }
        self.tokens = tokens
        self.prefix = prefix
        self.literal = wild ? nil : prefix
        self.matchesEverything = tokens.count == 1 && tokens[0] == .doubleStar
        self.isPrefixAndDoubleStar = tokens.count == prefix.count + 1 && tokens.last == .doubleStar
    }

    public var description: String { pattern }
    public var hasWildcards: Bool { literal == nil }

    public static func == (a: Glob, b: Glob) -> Bool { a.pattern == b.pattern }
    public func hash(into h: inout Hasher) { h.combine(pattern) }

    public func matches(_ subject: String) -> Bool {
        var s = subject
        return s.withUTF8 { matches(bytes: $0) }
    }

    func matches(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if let literal { return literal.count == bytes.count && Glob.equal(literal, bytes, count: literal.count) }
        if bytes.count < prefix.count || !Glob.equal(prefix, bytes, count: prefix.count) { return false }
        if tokens.count < 64 { return matchSmall(bytes) }
        return matchLarge(bytes)
    }

    private static let slash = UInt8(ascii: "/")

    @inline(__always)
    static func equal(_ a: [UInt8], _ b: UnsafeBufferPointer<UInt8>, count: Int) -> Bool {
        a.withUnsafeBufferPointer { a in
            guard count > 0 else { return true }
            return memcmp(a.baseAddress!, b.baseAddress!, count) == 0
        }
    }

    /// Positions as bits of one word (patterns of fewer than 64 tokens: nearly all).
    private func matchSmall(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = tokens.count
        func close(_ s: UInt64) -> UInt64 {
            var s = s
            var i = 0
            while i < n {
                if s & (1 << UInt64(i)) != 0 {
                    switch tokens[i] { case .star, .doubleStar: s |= 1 << UInt64(i + 1); default: break }
                }
                i += 1
            }
            return s
        }
        var state = close(1)
        for c in bytes {
            var next: UInt64 = 0
            var bits = state
            while bits != 0 {
                let i = bits.trailingZeroBitCount
                bits &= bits - 1
                if i == n { continue }
                switch tokens[i] {
                case .byte(let b): if b == c { next |= 1 << UInt64(i + 1) }
                case .one: if c != Glob.slash { next |= 1 << UInt64(i + 1) }
                case .star: if c != Glob.slash { next |= 1 << UInt64(i) }
                case .doubleStar: next |= 1 << UInt64(i)
                }
            }
            if next == 0 { return false }
            state = close(next)
        }
        return state & (1 << UInt64(n)) != 0
    }

    private func matchLarge(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = tokens.count
        func close(_ s: inout [Bool]) {
            for i in 0..<n where s[i] {
                switch tokens[i] { case .star, .doubleStar: s[i + 1] = true; default: break }
            }
        }
        var state = [Bool](repeating: false, count: n + 1)
        state[0] = true
        close(&state)
        for c in bytes {
            var next = [Bool](repeating: false, count: n + 1)
            var any = false
            for i in 0..<n where state[i] {
                switch tokens[i] {
                case .byte(let b): if b == c { next[i + 1] = true; any = true }
                case .one: if c != Glob.slash { next[i + 1] = true; any = true }
                case .star: if c != Glob.slash { next[i] = true; any = true }
                case .doubleStar: next[i] = true; any = true
                }
            }
            if !any { return false }
            close(&next)
            state = next
        }
        return state[n]
    }

    /// True when every string this glob matches is also matched by `other` — decided only in the easy cases
    /// (equal patterns, `other` is `**`, or this one is a literal that `other` matches); false when unsure.
    /// Used to find shadowed rules, where "unsure" must mean "not shadowed".
    func isCovered(by other: Glob) -> Bool {
        if other.matchesEverything { return true }
        if other.literal != nil { return other.literal == literal }
        if !prefix.starts(with: other.prefix) && !(literal?.starts(with: other.prefix) ?? false) { return false }
        if other.pattern == pattern { return true }
        if let literal { return literal.withUnsafeBufferPointer { other.matches(bytes: $0) } }
        // `prefix**` covers any pattern whose literal prefix starts with that prefix.
        return other.isPrefixAndDoubleStar && prefix.starts(with: other.prefix)
    }
}
