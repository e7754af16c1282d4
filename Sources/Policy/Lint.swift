/// Checks on the rule list as a whole: the final default, rules that can never match.
enum Lint {
    static func run(_ policy: Policy) -> [Diagnostic] {
        var out: [Diagnostic] = []
        let rules = policy.rules
        guard let last = rules.last else { return out }

        // A catch-all anywhere but last hides every rule after it: an error, like an unreachable firewall rule.
        if let firstCatchAll = rules.firstIndex(where: \.isCatchAll), firstCatchAll < rules.count - 1 {
            let c = rules[firstCatchAll]
            for r in rules[(firstCatchAll + 1)...] {
                out.append(Diagnostic(.error, r.location,
                    "rule '\(r.name)' is unreachable: rule '\(c.name)' (line \(c.location.line)) has no conditions and matches every deployment before it; move the default to the end"))
            }
        }
        if !last.isCatchAll {
            out.append(Diagnostic(.error, last.location,
                "the policy has no final default: the last rule ('\(last.name)') has conditions; end the rules with one without `match:`, e.g. `- name: default` / `decide: microvm`"))
        }

        // Rules that can never match on their own.
        for r in rules {
            if r.match.hasTenant == false, r.match.tenant != nil {
                out.append(Diagnostic(.warning, r.conditionLocation("tenant") ?? r.location,
                    "rule '\(r.name)' can never match: it asks for a tenant and for has_tenant: false"))
            }
        }

        // Shadowed rules: an earlier rule whose conditions are implied by a later rule's conditions matches
        // everything the later one would — the later one is dead. Candidates are found through the policy's
        // index of the rules' tenant and image globs by literal prefix (a glob can only cover one whose prefix
        // extends its own), kept to the rules before the later one, so large policies are not compared pair by pair.
        let summaries = rules.map { KeyMask($0.match) }
        let index = policy.index
        // Two lists reused for every rule (cleared, their storage kept): no allocation per rule.
        var byTenant: [Int] = [], byImage: [Int] = []
        for j in rules.indices where !rules[j].isCatchAll {
            let later = rules[j]
            /// The first earlier rule among `candidates` (ascending) that covers this one, reported.
            func report<C: Sequence<Int>>(_ candidates: C) {
                for i in candidates where !rules[i].isCatchAll {
                    // Quick reject: every key that constrains rule i must be implied by some key of rule j.
                    if summaries[i].bits & ~summaries[j].implied != 0 { continue }
                    if covers(rules[i].match, later.match) {
                        out.append(Diagnostic(.warning, later.location,
                            "rule '\(later.name)' is shadowed: rule '\(rules[i].name)' (line \(rules[i].location.line)) matches every deployment it matches, so it never decides; reorder or remove it"))
                        return
                    }
                }
            }
            // Either list is a superset of the rules that can cover this one; the image list is only worth
            // walking when the tenant list is not already short.
            let tenant = later.match.tenant.map { index.tenant.collect(for: $0[0], below: j, into: &byTenant) } != nil
            let image = !(tenant && byTenant.count <= 2)
                && later.match.image.map { index.image.collect(for: $0[0], below: j, into: &byImage) } != nil
            if tenant && (!image || byTenant.count <= byImage.count) {
                byTenant.sort()
                report(byTenant)
            } else if image {
                byImage.sort()
                report(byImage)
            } else {
                report(0..<j)
            }
        }
        return out
    }

    /// Which condition keys a match uses (bits), and which keys' conditions it implies.
    struct KeyMask {
        var bits: UInt32 = 0
        var implied: UInt32 = 0
        init(_ m: Match) {
            func set(_ present: Bool, _ bit: UInt32) { if present { bits |= 1 << bit } }
            set(m.tenant != nil, 0); set(m.hasTenant != nil, 1); set(m.image != nil, 2); set(m.digest != nil, 3)
            set(m.importedBy != nil, 4); set(m.source != nil, 5); set(m.privileged != nil, 6)
            set(m.addedCapabilities != nil, 7); set(m.hostNamespaces != nil, 8); set(m.hostMounts != nil, 9)
            set(m.devices != nil, 10); set(m.noNewPrivileges != nil, 11); set(m.annotations != nil, 12)
            set(m.labels != nil, 13); set(m.isolationRequest != nil, 14)
            implied = bits
            if m.tenant != nil { implied |= 1 << 1 }   // a tenant glob implies has_tenant: true
        }
    }

    /// True when every deployment that `later` matches is also matched by `earlier` (decided conservatively:
    /// false when unsure).
    static func covers(_ earlier: Match, _ later: Match) -> Bool {
        func globsCover(_ a: [Glob]?, _ b: [Glob]?) -> Bool {
            guard let a else { return true }
            guard let b else { return false }
            return b.allSatisfy { g in a.contains { g.isCovered(by: $0) } }
        }
        func equal<T: Equatable>(_ a: T?, _ b: T?) -> Bool { a == nil || a == b }
        func presenceCovers(_ a: PresenceCondition?, _ b: PresenceCondition?) -> Bool {
            guard let a else { return true }
            guard let b else { return false }
            switch (a, b) {
            case (.any(let x), .any(let y)): return x == y
            case (.any(true), .oneOf): return true
            case (.oneOf(let xs), .oneOf(let ys)): return globsCover(xs, ys)
            default: return false
            }
        }
        func keyedCover(_ a: [String: [Glob]]?, _ b: [String: [Glob]]?) -> Bool {
            guard let a else { return true }
            guard let b else { return false }
            return a.allSatisfy { key, globs in globsCover(globs, b[key]) }
        }
        if let h = earlier.hasTenant {
            let laterHas = later.hasTenant ?? (later.tenant != nil ? true : nil)
            if laterHas != h { return false }
        }
        if let d = earlier.digest {
            guard let ld = later.digest, ld.allSatisfy(d.contains) else { return false }
        }
        if let r = earlier.isolationRequest {
            guard let lr = later.isolationRequest, lr.allSatisfy(r.contains) else { return false }
        }
        return globsCover(earlier.tenant, later.tenant) && globsCover(earlier.image, later.image)
            && globsCover(earlier.importedBy, later.importedBy) && globsCover(earlier.source, later.source)
            && equal(earlier.privileged, later.privileged) && equal(earlier.noNewPrivileges, later.noNewPrivileges)
            && presenceCovers(earlier.addedCapabilities, later.addedCapabilities)
            && presenceCovers(earlier.hostNamespaces, later.hostNamespaces)
            && presenceCovers(earlier.hostMounts, later.hostMounts) && presenceCovers(earlier.devices, later.devices)
            && keyedCover(earlier.annotations, later.annotations) && keyedCover(earlier.labels, later.labels)
    }
}
