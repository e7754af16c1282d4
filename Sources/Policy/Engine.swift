/// One condition of a rule checked against a request: whether it held, and why, in words.
public struct ConditionResult: Sendable, Hashable, Codable {
    public var key: String
    public var matched: Bool
    public var detail: String
    public var location: SourceLocation?
}

extension SourceLocation: Codable {
    public init(from decoder: any Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3, let col = Int(parts[parts.count - 1]), let line = Int(parts[parts.count - 2]) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not file:line:column"))
        }
        self.init(file: parts[..<(parts.count - 2)].joined(separator: ":"), line: line, column: col)
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// How one rule fared against a request.
public struct RuleTrace: Sendable, Hashable, Codable {
    public var rule: String
    public var location: SourceLocation
    public var matched: Bool
    public var conditions: [ConditionResult]
}

/// What happens to a deployment.
public enum Outcome: String, Sendable, Hashable, Codable {
    /// Runs in ``Decision/granted``.
    case run
    /// The matching rule says deny.
    case deny
    /// The deployer asked for less isolation than the rule gives, and the rule does not allow lowering.
    case refused
}

/// The settings a granted tier runs with (the rule's, over the policy's `defaults`, over Bulkhead's own).
public struct TierSettings: Sendable, Hashable, Codable {
    public var namespace: NamespaceSettings?
    public var microvm: MicroVMSettings?
    public var resources: ResourceCeilings
}

/// A decision, with everything needed to explain it.
public struct Decision: Sendable, Hashable, Codable {
    public var outcome: Outcome
    /// The tier the deployment runs in (nil unless `outcome == .run`).
    public var granted: Tier?
    public var requested: Tier?
    /// What the matching rule decides before any request is applied.
    public var ruleVerdict: Verdict
    public var rule: String
    public var ruleLocation: SourceLocation
    public var ruleReason: String?
    public var allowLower: Bool
    /// The matching rule's conditions, each matched (else it would not have matched).
    public var conditions: [ConditionResult]
    /// Every rule evaluated, in order, up to and including the match (only when asked for with `explain`).
    public var trace: [RuleTrace]?
    public var settings: TierSettings?
    /// One sentence: what was decided and why.
    public var summary: String
    public var policy: String
}

/// A request with the derived values rules look at computed once.
struct PreparedRequest {
    let request: DeploymentRequest
    let imageName: String?
    let addedCapabilities: [String]
    let hostMounts: [String]
    /// UTF-8 of the strings most rules look at, so matching does not re-encode them per rule.
    let tenantBytes: [UInt8]?
    let imageBytes: [UInt8]?

    init(_ r: DeploymentRequest) {
        request = r
        imageName = r.image.map { ImageName(parsing: $0).canonical }
        addedCapabilities = r.privileges.addedCapabilities.map(PolicyLoader.canonicalCapability)
        hostMounts = r.privileges.hostMounts.map(SpecPrivileges.normalisePath)
        tenantBytes = r.tenant.map { Array($0.utf8) }
        imageBytes = imageName.map { Array($0.utf8) }
    }
}

extension Policy {
    /// Decides for one deployment: first matching rule wins, then the deployer's request is applied (raising is
    /// always honoured; lowering only with `allow_lower: true`). With `explain`, the decision carries a trace of
    /// every rule tried.
    public func decide(_ request: DeploymentRequest, explain: Bool = false) -> Decision {
        let prepared = PreparedRequest(request)
        var trace: [RuleTrace]? = explain ? [] : nil
        if explain {
            // Every rule in order, for the trace.
            for rule in rules {
                let conditions = Self.conditions(rule, prepared, details: true)
                let matched = conditions.allSatisfy(\.matched)
                trace!.append(RuleTrace(rule: rule.name, location: rule.location, matched: matched, conditions: conditions))
                if matched { return decision(rule, prepared, conditions: conditions, trace: trace) }
            }
        } else {
            // Only the rules that could match (by the tenant/image prefix index), still in order.
            for i in index.candidates(tenant: prepared.tenantBytes, image: prepared.imageBytes) {
                let rule = rules[i]
                if Self.matches(rule.match, prepared) {
                    return decision(rule, prepared, conditions: Self.conditions(rule, prepared, details: true), trace: nil)
                }
            }
        }
        // Unreachable for a loaded policy (it ends with a catch-all); fail closed all the same.
        let at = SourceLocation(file: source, line: 1, column: 1)
        return Decision(outcome: .deny, granted: nil, requested: request.requestedIsolation, ruleVerdict: .deny,
                        rule: "(none)", ruleLocation: at, ruleReason: "no rule matched", allowLower: false,
                        conditions: [], trace: trace, settings: nil,
                        summary: "deny: no rule of \(source) matched (a policy must end with a default rule)", policy: source)
    }

    private func decision(_ rule: Rule, _ p: PreparedRequest, conditions: [ConditionResult], trace: [RuleTrace]?) -> Decision {
        let requested = p.request.requestedIsolation
        let at = "rule '\(rule.name)' (\(rule.location))"
        var outcome = Outcome.run
        var granted: Tier? = nil
        var summary: String
        switch rule.verdict {
        case .deny:
            outcome = .deny
            summary = "deny by \(at)" + (rule.reason.map { ": \($0)" } ?? "")
        case .namespace, .microvm:
            let tier = rule.verdict.tier!
            if let r = requested, r > tier {
                granted = r
                summary = "\(r.rawValue) by \(at): the rule gives \(tier.rawValue), raised to \(r.rawValue) on the deployer's request"
            } else if let r = requested, r < tier {
                if rule.allowLower {
                    granted = r
                    summary = "\(r.rawValue) by \(at): the rule gives \(tier.rawValue), lowered to \(r.rawValue) on the deployer's request (the rule has allow_lower: true)"
                } else {
                    outcome = .refused
                    summary = "refused by \(at): the deployer asked for \(r.rawValue), but the rule gives \(tier.rawValue) and does not allow lowering (allow_lower: true)"
                }
            } else {
                granted = tier
                summary = "\(tier.rawValue) by \(at)"
                if let reason = rule.reason { summary += ": \(reason)" }
            }
        }
        var settings: TierSettings? = nil
        if let g = granted {
            settings = TierSettings(
                namespace: g == .namespace ? defaults.namespace.overlaid(by: rule.namespace) : nil,
                microvm: g == .microvm ? defaults.microvm.overlaid(by: rule.microvm) : nil,
                resources: defaults.resources.overlaid(by: rule.resources))
        }
        return Decision(outcome: outcome, granted: granted, requested: requested, ruleVerdict: rule.verdict, rule: rule.name,
                        ruleLocation: rule.location, ruleReason: rule.reason, allowLower: rule.allowLower,
                        conditions: conditions, trace: trace, settings: settings, summary: summary, policy: source)
    }

    // MARK: conditions

    /// The fast test (no strings built).
    static func matches(_ m: Match, _ p: PreparedRequest) -> Bool {
        let r = p.request
        if let v = m.hasTenant, (r.tenant != nil) != v { return false }
        if let v = m.privileged, r.privileges.privileged != v { return false }
        if let g = m.tenant { guard let t = p.tenantBytes, anyMatch(g, bytes: t) else { return false } }
        if let d = m.digest { guard let rd = r.digest, d.contains(rd) else { return false } }
        if let g = m.image { guard let n = p.imageBytes, anyMatch(g, bytes: n) else { return false } }
        if let g = m.importedBy { guard let v = r.origin.importedBy, anyMatch(g, v) else { return false } }
        if let g = m.source { guard let v = r.origin.source, anyMatch(g, v) else { return false } }
        if let v = m.noNewPrivileges, r.privileges.noNewPrivileges != v { return false }
        if let c = m.addedCapabilities, !presence(c, p.addedCapabilities) { return false }
        if let c = m.hostNamespaces, !presence(c, r.privileges.hostNamespaces) { return false }
        if let c = m.hostMounts, !presence(c, p.hostMounts) { return false }
        if let c = m.devices, !presence(c, r.privileges.devices) { return false }
        if let a = m.annotations, !keyed(a, r.annotations) { return false }
        if let a = m.labels, !keyed(a, r.labels) { return false }
        if let i = m.isolationRequest, !i.contains(r.requestedIsolation?.rawValue ?? "none") { return false }
        return true
    }

    static func anyMatch(_ globs: [Glob], bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { b in globs.contains { $0.matches(bytes: b) } }
    }

    static func anyMatch(_ globs: [Glob], _ subject: String) -> Bool {
        var s = subject
        return s.withUTF8 { bytes in globs.contains { $0.matches(bytes: bytes) } }
    }

    static func presence(_ c: PresenceCondition, _ values: [String]) -> Bool {
        switch c {
        case .any(let v): return values.isEmpty != v
        case .oneOf(let globs): return values.contains { anyMatch(globs, $0) }
        }
    }

    static func keyed(_ conditions: [String: [Glob]], _ values: [String: String]) -> Bool {
        conditions.allSatisfy { key, globs in values[key].map { anyMatch(globs, $0) } ?? false }
    }

    /// Each condition of `rule`, matched or not, in words.
    static func conditions(_ rule: Rule, _ p: PreparedRequest, details: Bool) -> [ConditionResult] {
        let m = rule.match, r = p.request
        var out: [ConditionResult] = []
        func add(_ key: String, _ matched: Bool, _ detail: String) {
            out.append(ConditionResult(key: key, matched: matched, detail: detail, location: rule.conditionLocation(key)))
        }
        func list(_ g: [Glob]) -> String { g.count == 1 ? "'\(g[0].pattern)'" : "one of " + g.map { "'\($0.pattern)'" }.joined(separator: ", ") }
        func quoted(_ v: [String]) -> String { v.isEmpty ? "none" : v.joined(separator: ", ") }
        func firstMatch(_ g: [Glob], _ s: String) -> Glob? { g.first { $0.matches(s) } }

        if rule.isCatchAll { add("(default)", true, "a rule without conditions matches every deployment") }
        if let v = m.hasTenant {
            let ok = (r.tenant != nil) == v
            add("has_tenant", ok, r.tenant.map { "tenant is '\($0)'" } ?? "no tenant given")
        }
        if let g = m.tenant {
            if let t = r.tenant {
                let hit = firstMatch(g, t)
                add("tenant", hit != nil, hit.map { "tenant '\(t)' matches '\($0.pattern)'" } ?? "tenant '\(t)' does not match \(list(g))")
            } else { add("tenant", false, "no tenant given (wanted \(list(g)))") }
        }
        if let d = m.digest {
            if let rd = r.digest { add("digest", d.contains(rd), d.contains(rd) ? "digest \(rd) is listed" : "digest \(rd) is not listed") }
            else { add("digest", false, "the image digest is not known") }
        }
        if let g = m.image {
            if let n = p.imageName {
                let hit = firstMatch(g, n)
                add("image", hit != nil, hit.map { "image \(n) matches '\($0.pattern)'" } ?? "image \(n) does not match \(list(g))")
            } else { add("image", false, "the image name is not known") }
        }
        if let g = m.importedBy {
            if let v = r.origin.importedBy {
                let hit = firstMatch(g, v)
                add("imported_by", hit != nil, hit != nil ? "imported by \(v)" : "imported by \(v), not \(list(g))")
            } else { add("imported_by", false, "who imported the image is not known") }
        }
        if let g = m.source {
            if let v = r.origin.source {
                let hit = firstMatch(g, v)
                add("source", hit != nil, hit.map { "origin \(v) matches '\($0.pattern)'" } ?? "origin \(v) does not match \(list(g))")
            } else { add("source", false, "the image's origin is not known") }
        }
        if let v = m.privileged {
            add("privileged", r.privileges.privileged == v, r.privileges.privileged ? "the spec is privileged" : "the spec is not privileged")
        }
        if let v = m.noNewPrivileges {
            add("no_new_privileges", r.privileges.noNewPrivileges == v, "noNewPrivileges is \(r.privileges.noNewPrivileges)")
        }
        func presenceDetail(_ key: String, _ c: PresenceCondition, _ values: [String], _ noun: String) {
            let ok = presence(c, values)
            switch c {
            case .any(let want):
                add(key, ok, values.isEmpty ? "no \(noun)" : "\(noun): \(quoted(values))" + (want ? "" : " (wanted none)"))
            case .oneOf(let g):
                let hits = values.filter { anyMatch(g, $0) }
                add(key, ok, hits.isEmpty ? "\(noun): \(quoted(values)); none matches \(list(g))" : "\(noun) \(quoted(hits)) match \(list(g))")
            }
        }
        if let c = m.addedCapabilities { presenceDetail("added_capabilities", c, p.addedCapabilities, "added capabilities") }
        if let c = m.hostNamespaces { presenceDetail("host_namespaces", c, r.privileges.hostNamespaces, "host namespaces") }
        if let c = m.hostMounts { presenceDetail("host_mounts", c, p.hostMounts, "host bind mounts") }
        if let c = m.devices { presenceDetail("devices", c, r.privileges.devices, "devices") }
        func keyedDetail(_ key: String, _ conditions: [String: [Glob]], _ values: [String: String]) {
            for (k, g) in conditions.sorted(by: { $0.key < $1.key }) {
                if let v = values[k] {
                    let ok = anyMatch(g, v)
                    add("\(key).\(k)", ok, ok ? "\(k)=\(v) matches \(list(g))" : "\(k)=\(v) does not match \(list(g))")
                } else { add("\(key).\(k)", false, "\(k) is not set") }
            }
        }
        if let a = m.annotations { keyedDetail("annotations", a, r.annotations) }
        if let a = m.labels { keyedDetail("labels", a, r.labels) }
        if let i = m.isolationRequest {
            let v = r.requestedIsolation?.rawValue ?? "none"
            add("isolation_request", i.contains(v), "the deployer asked for \(v == "none" ? "no particular tier" : v)")
        }
        return out
    }
}
