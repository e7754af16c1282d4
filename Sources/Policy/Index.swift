/// Rules by the literal prefixes of their globs on one field (tenant or image). A glob can only match a string
/// that starts with its literal prefix, and only cover a glob whose prefix extends its own, so the rules worth
/// trying for a string are those without a condition on the field plus those indexed under one of the string's
/// prefixes. Used by the decision path (so a 1,000-rule policy is not scanned rule by rule) and by the
/// shadowed-rule lint.
///
/// Prefixes are keyed by their 64-bit FNV-1a hash: a collision only adds candidates, which are then checked in
/// full, so it can cost time but never change a result. The hashes live in a small open-addressing table of
/// their own (the key is already a hash, so it is not hashed again: a lookup per byte of a subject stays cheap).
struct PrefixIndex: Sendable {
    var unconstrained: [Int] = []
    /// Open addressing, linear probing: `slots[i]` is an index into `keys`/`heads`, or -1.
    private var slots: [Int32] = []
    private var keys: [UInt64] = []
    /// Each key's rules as a linked list through `entryRule`/`entryNext` (newest first; -1 ends it): flat arrays
    /// instead of one small array per prefix.
    private var heads: [Int32] = []
    private var entryRule: [Int32] = []
    private var entryNext: [Int32] = []

    static let fnvOffset: UInt64 = 0xcbf2_9ce4_8422_2325
    static let fnvPrime: UInt64 = 0x100_0000_01b3

    static func hash(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBufferPointer { u in
            var h = fnvOffset
            for b in u { h = (h ^ UInt64(b)) &* fnvPrime }
            return h
        }
    }

    /// The slot where `h` is, or the empty slot where it would go (`slots` must not be full).
    @inline(__always)
    private func probe(_ h: UInt64) -> Int {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: (h &* 0x9e37_79b9_7f4a_7c15) >> 32) & mask
        while true {
            let e = slots[i]
            if e < 0 || keys[Int(e)] == h { return i }
            i = (i + 1) & mask
        }
    }

    private func list(_ h: UInt64) -> Int? {
        if slots.isEmpty { return nil }
        let e = slots[probe(h)]
        return e < 0 ? nil : Int(e)
    }

    private mutating func grow() {
        let size = max(16, slots.count * 2)
        slots = [Int32](repeating: -1, count: size)
        for (n, h) in keys.enumerated() { slots[probe(h)] = Int32(n) }
    }

    mutating func add(_ rule: Int, _ globs: [Glob]?) {
        guard let globs else { unconstrained.append(rule); return }
        for g in globs {
            let h = Self.hash(g.prefix)
            let n: Int
            if let existing = list(h) {
                n = existing
            } else {
                if (keys.count + 1) * 2 > slots.count { grow() }
                n = keys.count
                slots[probe(h)] = Int32(n)
                keys.append(h)
                heads.append(-1)
            }
            entryRule.append(Int32(rule))
            entryNext.append(heads[n])
            heads[n] = Int32(entryRule.count - 1)
        }
    }

    /// Candidates for a glob (its literal prefix) or a subject string's bytes; unsorted, may repeat. Only rules
    /// numbered below `below` (the shadowed-rule lint asks for earlier rules only).
    func candidates(forBytes p: [UInt8], below: Int = .max) -> [Int] {
        var out: [Int] = []
        collect(forBytes: p, below: below, into: &out)
        return out
    }

    /// ``candidates(forBytes:below:)`` into `out` (emptied first, its storage kept).
    func collect(forBytes p: [UInt8], below: Int = .max, into out: inout [Int]) {
        out.removeAll(keepingCapacity: true)
        if below == .max { out.append(contentsOf: unconstrained) } else {
            for r in unconstrained where r < below { out.append(r) }
        }
        if keys.isEmpty { return }
        // One walk over the subject's bytes, the table read through unsafe buffers (no bounds checks, no
        // reference counting per probe).
        slots.withUnsafeBufferPointer { slots in
            keys.withUnsafeBufferPointer { keys in
                heads.withUnsafeBufferPointer { heads in
                    entryRule.withUnsafeBufferPointer { entryRule in
                        entryNext.withUnsafeBufferPointer { entryNext in
                            let mask = slots.count - 1
                            func visit(_ h: UInt64) {
                                var i = Int(truncatingIfNeeded: (h &* 0x9e37_79b9_7f4a_7c15) >> 32) & mask
                                while true {
                                    let e = slots[i]
                                    if e < 0 { return }
                                    if keys[Int(e)] == h { break }
                                    i = (i + 1) & mask
                                }
                                var entry = heads[Int(slots[i])]
                                while entry >= 0 {
                                    let rule = Int(entryRule[Int(entry)])
                                    if rule < below { out.append(rule) }
                                    entry = entryNext[Int(entry)]
                                }
                            }
                            var h = Self.fnvOffset
                            visit(h)
                            p.withUnsafeBufferPointer { p in
                                for b in p {
                                    h = (h ^ UInt64(b)) &* Self.fnvPrime
                                    visit(h)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func candidates(for glob: Glob, below: Int = .max) -> [Int] { candidates(forBytes: glob.literal ?? glob.prefix, below: below) }

    func collect(for glob: Glob, below: Int, into out: inout [Int]) {
        collect(forBytes: glob.literal ?? glob.prefix, below: below, into: &out)
    }
}

/// The index a policy keeps for deciding.
struct DecisionIndex: Sendable {
    var tenant = PrefixIndex()
    var image = PrefixIndex()

    init(_ rules: [Rule]) {
        for (i, r) in rules.enumerated() {
            tenant.add(i, r.match.tenant)
            image.add(i, r.match.image)
        }
    }

    /// The rules that could match, in policy order (a superset of those that do).
    func candidates(tenant t: [UInt8]?, image n: [UInt8]?) -> [Int] {
        // A request without tenant (image) can only match rules without a tenant (image) condition.
        let byTenant = t.map { tenant.candidates(forBytes: $0) } ?? tenant.unconstrained
        let byImage = n.map { image.candidates(forBytes: $0) } ?? image.unconstrained
        var list = byTenant.count <= byImage.count ? byTenant : byImage
        list.sort()
        return list
    }
}
