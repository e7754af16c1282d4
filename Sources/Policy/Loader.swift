import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// A policy that could not be loaded: every problem found, each at its place in the file.
public struct PolicyLoadError: Error, Sendable, CustomStringConvertible {
    public var source: String
    public var diagnostics: [Diagnostic]

    public init(source: String, diagnostics: [Diagnostic]) {
        self.source = source
        self.diagnostics = diagnostics
    }

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }

    public var description: String {
        let errs = errors
        var text = "policy \(source) is not valid (\(errs.count) error\(errs.count == 1 ? "" : "s")); no container starts until it is fixed"
        for d in errs.prefix(20) { text += "\n  \(d)" }
        if errs.count > 20 { text += "\n  … and \(errs.count - 20) more (run `bulkhead policy check \(source)`)" }
        return text
    }
}

extension Policy {
    /// Reads and validates a policy file. Throws ``PolicyLoadError`` (every error with file:line:column) or the
    /// `SystemError` of reading it.
    public static func load(path: String) throws -> Policy {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        let bytes = try fd.readAll(limit: YAMLReader.maxBytes, path: path)
        return try parse(bytes, source: path)
    }

    /// Validates a policy from its bytes; `source` names it in messages.
    public static func parse(_ bytes: [UInt8], source: String) throws(PolicyLoadError) -> Policy {
        let (policy, diagnostics) = check(bytes, source: source)
        guard let policy else { throw PolicyLoadError(source: source, diagnostics: diagnostics) }
        return policy
    }

    public static func parse(_ text: String, source: String) throws(PolicyLoadError) -> Policy {
        try parse(Array(text.utf8), source: source)
    }

    /// Validates and lints: the policy when it has no errors, and every diagnostic (errors and warnings) in
    /// file order.
    public static func check(_ bytes: [UInt8], source: String) -> (Policy?, [Diagnostic]) {
        check(bytes, source: source, forceLibyaml: false)
    }

    /// ``check(_:source:)`` with the YAML parser chosen: `forceLibyaml` skips the fast path (for the benchmark,
    /// which measures both; the result is the same either way).
    @_spi(Bench) public static func check(_ bytes: [UInt8], source: String, forceLibyaml: Bool) -> (Policy?, [Diagnostic]) {
        let document: YAMLDocument
        do { document = try YAMLReader.parse(bytes, file: source, forceLibyaml: forceLibyaml) } catch { return (nil, [error]) }
        var loader = PolicyLoader(file: source)
        let policy = withExtendedLifetime(document) { loader.policy(document.root) }
        var diagnostics = loader.diagnostics
        if let policy { diagnostics += Lint.run(policy) }
        diagnostics.sort { ($0.location, $0.severity == .error ? 0 : 1) < ($1.location, $1.severity == .error ? 0 : 1) }
        if diagnostics.contains(where: { $0.severity == .error }) { return (nil, diagnostics) }
        var result = policy!
        result.warnings = diagnostics
        return (result, diagnostics)
    }
}

extension Policy {
    /// Whether `bytes` are YAML the fast path parses itself (else libyaml does). For the benchmark's report.
    @_spi(Bench) public static func fastPathAccepts(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { FastYAML.parse($0, file: "") } != nil
    }
}

/// Turns the YAML tree into a ``Policy``, collecting every problem instead of stopping at the first.
struct PolicyLoader {
    let file: String
    var diagnostics: [Diagnostic] = []

    init(file: String) { self.file = file }

    mutating func error(_ at: SourceLocation, _ message: String) { diagnostics.append(Diagnostic(.error, at, message)) }
    mutating func warning(_ at: SourceLocation, _ message: String) { diagnostics.append(Diagnostic(.warning, at, message)) }

    // MARK: generic shapes

    /// The entries of a mapping, each key checked against `allowed` (unknown keys are errors, with a suggestion,
    /// all reported before any value is looked at). A known key comes back as the `allowed` string itself, so no
    /// string is made for it, and the entries are walked in place, not collected into a list.
    mutating func fields(_ node: YAMLNode, _ what: @autoclosure () -> String, allowed keys: KeySet) -> KnownFields? {
        guard node.isMapping else {
            error(node.location, "\(what()) must be a mapping, found \(node.kindName)")
            return nil
        }
        var known = 0
        for e in node.entries {
            if e.key.index(in: keys) != nil { known += 1; continue }
            let allowed = keys.names
            let key = e.key.text
            var message = "unknown key '\(key)' in \(what())"
            if let near = allowed.min(by: { editDistance($0, key) < editDistance($1, key) }), editDistance(near, key) <= 2 {
                message += "; did you mean '\(near)'?"
            } else {
                message += "; allowed: \(allowed.joined(separator: ", "))"
            }
            error(e.key.location, message)
        }
        return KnownFields(entries: node.entries, keys: keys, count: known)
    }

    /// The entries of a mapping whose keys are allowed, in file order.
    struct KnownFields: Sequence, IteratorProtocol {
        var entries: YAMLNode.Entries
        let keys: KeySet
        /// How many there are.
        let count: Int

        mutating func next() -> (key: String, keyNode: YAMLNode, value: YAMLNode)? {
            while let e = entries.next() {
                if let k = e.key.index(in: keys) { return (keys.names[k], e.key, e.value) }
            }
            return nil
        }

        /// The next entry with its key's index in the `KeySet` (switching on it costs no string comparisons).
        mutating func nextIndexed() -> (index: Int, keyNode: YAMLNode, value: YAMLNode)? {
            while let e = entries.next() {
                if let k = e.key.index(in: keys) { return (k, e.key, e.value) }
            }
            return nil
        }
    }

    mutating func string(_ node: YAMLNode, _ what: @autoclosure () -> String) -> String? {
        if node.isScalar, !node.isNull {
            if let b = node.boolValue {
                error(node.location, "\(what()) must be a string, found a boolean (quote it: \"\(b)\")")
                return nil
            }
            if node.withBytes({ $0.isEmpty }) { error(node.location, "\(what()) must not be empty"); return nil }
            return node.text
        }
        error(node.location, "\(what()) must be a string, found \(node.kindName)")
        return nil
    }

    mutating func bool(_ node: YAMLNode, _ what: @autoclosure () -> String) -> Bool? {
        if let b = node.boolValue { return b }
        error(node.location, "\(what()) must be true or false, found \(node.kindName)\(scalarText(node))")
        return nil
    }

    /// A run of 1 to 18 ASCII digits as a number (no String made); nil for anything else.
    static func digits(_ b: UnsafeBufferPointer<UInt8>) -> Int? {
        guard b.count > 0 && b.count <= 18 else { return nil }
        var v = 0
        for c in b {
            guard c >= 0x30 && c <= 0x39 else { return nil }
            v = v * 10 + Int(c - 0x30)
        }
        return v
    }

    mutating func integer(_ node: YAMLNode, _ what: @autoclosure () -> String, range: ClosedRange<Int>) -> Int? {
        if node.isPlainScalar, let v = node.withBytes(Self.digits), range.contains(v) { return v }
        if node.isPlainScalar, let v = Int(node.text) {
            if range.contains(v) { return v }
            error(node.location, "\(what()) must be between \(range.lowerBound) and \(range.upperBound), found \(v)")
            return nil
        }
        error(node.location, "\(what()) must be a whole number, found \(node.kindName)\(scalarText(node))")
        return nil
    }

    func scalarText(_ node: YAMLNode) -> String {
        let s = node.text
        if node.isScalar, !s.isEmpty { return " '\(s.prefix(40))'" }
        return ""
    }

    /// A string or a list of strings (a list must not be empty); each with its node, for messages.
    mutating func strings(_ node: YAMLNode, _ what: @autoclosure () -> String) -> [(String, YAMLNode)]? {
        if node.isSequence {
            if node.count == 0 { error(node.location, "\(what()) must not be an empty list"); return nil }
            var out: [(String, YAMLNode)] = []
            out.reserveCapacity(node.count)
            var ok = true
            for item in node.items {
                if let s = string(item, "each entry of \(what())") { out.append((s, item)) } else { ok = false }
            }
            return ok ? out : nil
        }
        if let s = string(node, "\(what()) (a string or a list of strings)") { return [(s, node)] }
        return nil
    }

    /// Like ``strings(_:_:)`` (same checks, same messages), made into globs without a list in between.
    mutating func globs(_ node: YAMLNode, _ what: @autoclosure () -> String) -> [Glob]? {
        if node.isSequence {
            if node.count == 0 { error(node.location, "\(what()) must not be an empty list"); return nil }
            var out: [Glob] = []
            out.reserveCapacity(node.count)
            var ok = true
            for item in node.items {
                if let s = string(item, "each entry of \(what())") { out.append(Glob(s)) } else { ok = false }
            }
            return ok ? out : nil
        }
        if let s = string(node, "\(what()) (a string or a list of strings)") { return [Glob(s)] }
        return nil
    }

    /// `true`/`false`, or a list of allowed names.
    mutating func presence(_ node: YAMLNode, _ what: @autoclosure () -> String, validate: (String) -> String?) -> PresenceCondition? {
        if let b = node.boolValue { return .any(b) }
        if node.isMapping {
            error(node.location, "\(what()) must be true, false, or a list, found a mapping")
            return nil
        }
        guard let list = strings(node, what()) else { return nil }
        var ok = true
        for (value, at) in list { if let problem = validate(value) { error(at.location, problem); ok = false } }
        return ok ? .oneOf(list.map { Glob($0.0) }) : nil
    }

    /// Sizes: a whole number of bytes, or a number with Ki, Mi, Gi or Ti.
    mutating func size(_ node: YAMLNode, _ what: @autoclosure () -> String) -> UInt64? {
        guard node.isScalar, !node.isNull else {
            error(node.location, "\(what()) must be a size such as 512Mi or 2Gi, found \(node.kindName)")
            return nil
        }
        // The common case, digits and a unit, read from the bytes (no String made); anything else below.
        let quick: UInt64? = node.withBytes { b in
            guard b.count >= 3, b[b.count - 1] == UInt8(ascii: "i") else { return nil }
            let scale: UInt64
            switch b[b.count - 2] {
            case UInt8(ascii: "K"): scale = 1 << 10
            case UInt8(ascii: "M"): scale = 1 << 20
            case UInt8(ascii: "G"): scale = 1 << 30
            case UInt8(ascii: "T"): scale = 1 << 40
            default: return nil
            }
            guard let n = Self.digits(UnsafeBufferPointer(rebasing: b[0..<(b.count - 2)])), n > 0, UInt64(n) <= UInt64.max / scale else { return nil }
            return UInt64(n) * scale
        }
        if let quick { return quick }
        let s = node.text
        let units: [(String, UInt64)] = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40)]
        var number = Substring(s)
        var scale: UInt64 = 1
        for (suffix, value) in units where s.hasSuffix(suffix) {
            number = number.dropLast(2)
            scale = value
        }
        guard let n = UInt64(number), n > 0, n <= UInt64.max / scale else {
            error(node.location, "\(what()) must be a size such as 512Mi or 2Gi (units Ki, Mi, Gi, Ti), found '\(s.prefix(40))'")
            return nil
        }
        return n * scale
    }

    /// CPUs: a positive number with at most three decimals, as thousandths.
    mutating func cpus(_ node: YAMLNode, _ what: @autoclosure () -> String) -> Int? {
        guard node.isPlainScalar else {
            error(node.location, "\(what()) must be a number of CPUs such as 2 or 0.5, found \(node.kindName)")
            return nil
        }
        let s = node.text
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count <= 2, let whole = Int(parts[0]), whole >= 0, whole <= 4096 {
            var milli = whole * 1000
            if parts.count == 2 {
                let frac = parts[1]
                guard !frac.isEmpty, frac.count <= 3, let f = Int(frac), f >= 0 else {
                    error(node.location, "\(what()) allows at most three decimals, found '\(s)'")
                    return nil
                }
                milli += f * [100, 10, 1][frac.count - 1]
            }
            if milli > 0 { return milli }
        }
        error(node.location, "\(what()) must be a positive number of CPUs such as 2 or 0.5, found '\(s.prefix(40))'")
        return nil
    }

    mutating func enumValue<E: RawRepresentable & CaseIterable>(_ node: YAMLNode, _ what: @autoclosure () -> String, _: E.Type) -> E? where E.RawValue == String {
        // The common case, a plain or quoted name of a case, is matched on the bytes (no String made).
        if node.isScalar, !node.isNull, node.boolValue == nil {
            let found = node.withBytes { b in
                E.allCases.first { c in
                    var raw = c.rawValue
                    return raw.withUTF8 { r in r.count == b.count && (b.count == 0 || memcmp(r.baseAddress!, b.baseAddress!, b.count) == 0) }
                }
            }
            if let found, !node.withBytes({ $0.isEmpty }) { return found }
        }
        guard let s = string(node, what()) else { return nil }
        if let v = E(rawValue: s) { return v }
        error(node.location, "\(what()) must be one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), found '\(s.prefix(40))'")
        return nil
    }

    // MARK: the policy

    mutating func policy(_ root: YAMLNode) -> Policy? {
        guard let top = fields(root, "the policy", allowed: Self.policyKeys) else { return nil }
        var version: Int? = nil
        var rules: [Rule] = []
        var sawRules = false, sawVersion = false
        var defaults = (NamespaceSettings.builtIn, MicroVMSettings.builtIn, ResourceCeilings())
        for (key, _, value) in top {
            switch key {
            case "version":
                sawVersion = true
                if let v = integer(value, "version", range: 0...Int.max) {
                    if v == 1 { version = 1 } else { error(value.location, "unsupported policy version \(v); this Bulkhead reads version 1") }
                }
            case "description":
                _ = string(value, "description")
            case "defaults":
                if let d = tierSettings(value, "defaults", allowed: Self.tierKeys) {
                    defaults = (NamespaceSettings.builtIn.overlaid(by: d.0), MicroVMSettings.builtIn.overlaid(by: d.1), d.2)
                }
            case "rules":
                sawRules = true
                guard value.isSequence else {
                    error(value.location, "rules must be a list of rules, found \(value.kindName)")
                    continue
                }
                var names = NameTable(capacity: value.count)
                rules.reserveCapacity(value.count)
                for item in value.items {
                    guard let rule = rule(item) else { continue }
                    if let first = names.insert(rule.name, rules.count, in: rules) {
                        error(rule.location, "duplicate rule name '\(rule.name)' (first at line \(first.location.line)); names must be unique so decisions can be traced")
                    }
                    rules.append(rule)
                }
                if value.count == 0 { error(value.location, "rules must not be empty: a policy ends with a default rule") }
            default: break
            }
        }
        let start = root.location
        if !sawVersion {
            error(start, "missing `version: 1` at the top of the policy")
        }
        if !sawRules { error(start, "missing `rules:`; a policy is a list of rules ending with a default rule") }
        guard let version else { return nil }
        return Policy(version: version, source: file, rules: rules, defaults: defaults, index: DecisionIndex(rules), warnings: [])
    }

    static let policyKeys = KeySet(["version", "description", "defaults", "rules"])
    static let tierKeys = KeySet(["namespace", "microvm", "resources"])
    static let namespaceKeys = KeySet(["seccomp", "user_namespace", "readonly_rootfs", "capability_ceiling"])
    static let microvmKeys = KeySet(["vcpus", "memory", "hypervisor", "kernel", "hypervisor_uri"])
    static let resourceKeys = KeySet(["memory", "cpus", "pids"])

    mutating func tierSettings(_ node: YAMLNode, _ what: String, allowed: KeySet) -> (NamespaceSettings, MicroVMSettings, ResourceCeilings)? {
        guard let entries = fields(node, what, allowed: allowed) else { return nil }
        var ns = NamespaceSettings(), vm = MicroVMSettings(), res = ResourceCeilings()
        for (key, _, value) in entries {
            switch key {
            case "namespace": ns = namespaceSettings(value, "\(what).namespace") ?? ns
            case "microvm": vm = microvmSettings(value, "\(what).microvm") ?? vm
            case "resources": res = resources(value, "\(what).resources") ?? res
            default: break
            }
        }
        return (ns, vm, res)
    }

    mutating func namespaceSettings(_ node: YAMLNode, _ what: String) -> NamespaceSettings? {
        guard let entries = fields(node, what, allowed: Self.namespaceKeys) else { return nil }
        var s = NamespaceSettings()
        for (key, _, value) in entries {
            switch key {
            case "seccomp":
                if let v = string(value, "\(what).seccomp") {
                    if v == "default" || v == "unconfined" || v.hasPrefix("/") { s.seccomp = v }
                    else { error(value.location, "\(what).seccomp must be default, unconfined, or an absolute path to a seccomp profile, found '\(v.prefix(40))'") }
                }
            case "user_namespace": s.userNamespace = bool(value, "\(what).user_namespace")
            case "readonly_rootfs": s.readonlyRootfs = bool(value, "\(what).readonly_rootfs")
            case "capability_ceiling":
                if value.isSequence {
                    var caps: [String] = []
                    for item in value.items {
                        if let c = string(item, "each entry of \(what).capability_ceiling") {
                            if let problem = Self.capabilityProblem(c, allowGlob: false) { error(item.location, problem) } else { caps.append(Self.canonicalCapability(c)) }
                        }
                    }
                    s.capabilityCeiling = caps
                } else {
                    error(value.location, "\(what).capability_ceiling must be a list of capabilities (may be empty: [])")
                }
            default: break
            }
        }
        return s
    }

    mutating func microvmSettings(_ node: YAMLNode, _ what: String) -> MicroVMSettings? {
        guard let entries = fields(node, what, allowed: Self.microvmKeys) else { return nil }
        var s = MicroVMSettings()
        for (key, _, value) in entries {
            switch key {
            case "vcpus": s.vcpus = integer(value, "\(what).vcpus", range: 1...256)
            case "memory":
                if let m = size(value, "\(what).memory") {
                    if m < 64 << 20 { error(value.location, "\(what).memory must be at least 64Mi (the guest kernel and agent need it)") } else { s.memory = m }
                }
            case "hypervisor": s.hypervisor = enumValue(value, "\(what).hypervisor", HypervisorPreference.self)
            case "kernel":
                if let v = string(value, "\(what).kernel") {
                    if v == "default" || v.hasPrefix("/") { s.kernel = v }
                    else { error(value.location, "\(what).kernel must be default or an absolute path, found '\(v.prefix(40))'") }
                }
            case "hypervisor_uri":
                if let v = string(value, "\(what).hypervisor_uri") {
                    if v.contains("://"), !v.contains(where: { $0 == " " || $0 == "\n" }) { s.hypervisorURI = v }
                    else { error(value.location, "\(what).hypervisor_uri must be a libvirt connection URI such as qemu:///system, found '\(v.prefix(40))'") }
                }
            default: break
            }
        }
        return s
    }

    mutating func resources(_ node: YAMLNode, _ what: String) -> ResourceCeilings? {
        guard let entries = fields(node, what, allowed: Self.resourceKeys) else { return nil }
        var r = ResourceCeilings()
        for (key, _, value) in entries {
            switch key {
            case "memory": r.memory = size(value, "\(what).memory")
            case "cpus": r.milliCPUs = cpus(value, "\(what).cpus")
            case "pids": r.pids = integer(value, "\(what).pids", range: 1...4_194_304)
            default: break
            }
        }
        return r
    }

    static let ruleKeys = KeySet(["name", "description", "match", "decide", "allow_lower", "reason", "namespace", "microvm", "resources"])
    static let matchKeys = KeySet(["tenant", "has_tenant", "image", "digest", "imported_by", "source", "privileged",
                            "added_capabilities", "host_namespaces", "host_mounts", "devices", "no_new_privileges",
                            "annotations", "labels", "isolation_request"])

    /// `ruleKeys` and `matchKeys` by index, in the same order.
    enum RuleKey: Int { case name, description, match, decide, allowLower, reason, namespace, microvm, resources }
    enum MatchKey: Int {
        case tenant, hasTenant, image, digest, importedBy, source, privileged, addedCapabilities, hostNamespaces, hostMounts, devices,
             noNewPrivileges, annotations, labels, isolationRequest
    }

    mutating func rule(_ node: YAMLNode) -> Rule? {
        let before = diagnostics.count
        guard let entries = fields(node, "a rule", allowed: Self.ruleKeys) else { return nil }
        var name: String? = nil, description: String? = nil, verdict: Verdict? = nil, allowLower = false, reason: String? = nil
        var match: Match? = nil, hasMatch = false, locations: [(key: String, location: SourceLocation)] = []
        var ns = NamespaceSettings(), vm = MicroVMSettings(), res = ResourceCeilings()
        var allowLowerAt: SourceLocation? = nil, settingsAt: [(String, SourceLocation)] = []
        var fields = entries
        while let (k, keyAt, value) = fields.nextIndexed() {
            let key = Self.ruleKeys.names[k]
            switch RuleKey(rawValue: k)! {
            case .name:
                if let n = string(value, "rule name") {
                    if n.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }) && n.utf8.count <= 128 {
                        name = n
                    } else {
                        error(value.location, "rule name '\(n.prefix(40))' may use only letters, digits, '-', '_' and '.' (at most 128)")
                    }
                }
            case .description: description = string(value, "description")
            case .decide: verdict = enumValue(value, "decide", Verdict.self)
            case .allowLower: allowLower = bool(value, "allow_lower") ?? false; allowLowerAt = keyAt.location
            case .reason: reason = string(value, "reason")
            case .match:
                hasMatch = true
                if let (m, locs) = matchConditions(value) { match = m; locations = locs }
            case .namespace: ns = namespaceSettings(value, "namespace") ?? ns; settingsAt.append((key, keyAt.location))
            case .microvm: vm = microvmSettings(value, "microvm") ?? vm; settingsAt.append((key, keyAt.location))
            case .resources: res = resources(value, "resources") ?? res
            }
        }
        if name == nil && !diagnostics[before...].contains(where: { $0.message.contains("name") }) {
            error(node.location, "a rule needs a `name:` (decisions and the audit log name the rule)")
        }
        if verdict == nil && !diagnostics[before...].contains(where: { $0.message.contains("decide") }) {
            error(node.location, "rule '\(name ?? "?")' needs `decide: namespace | microvm | deny`")
        }
        guard let name, let verdict, diagnostics.count == before || !diagnostics[before...].contains(where: { $0.severity == .error }) else { return nil }
        if let at = allowLowerAt, allowLower, verdict != .microvm {
            warning(at, "allow_lower has no effect on a rule that decides \(verdict.rawValue) (only a microvm decision can be lowered)")
        }
        if verdict == .deny {
            for (key, at) in settingsAt { warning(at, "\(key) settings have no effect on a rule that decides deny") }
        } else if verdict == .namespace, let at = settingsAt.first(where: { $0.0 == "microvm" })?.1 {
            _ = at // microvm settings on a namespace rule apply when a deployer raises isolation: valid.
        } else if verdict == .microvm, !allowLower, let at = settingsAt.first(where: { $0.0 == "namespace" })?.1 {
            warning(at, "namespace settings have no effect: this rule decides microvm and does not allow_lower")
        }
        let conditions = match ?? Match()
        return Rule(name: name, description: description, match: conditions, isCatchAll: !hasMatch || conditions.isEmpty, verdict: verdict,
                    allowLower: allowLower, reason: reason, namespace: ns, microvm: vm, resources: res,
                    location: node.location, conditionKeys: locations)
    }

    static func canonicalCapability(_ c: String) -> String {
        let upper = c.uppercased()
        return upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
    }

    static func capabilityProblem(_ c: String, allowGlob: Bool) -> String? {
        let canon = canonicalCapability(c)
        if allowGlob && (c.contains("*") || c.contains("?")) { return nil }
        if Privileges.knownCapabilities.contains(canon) { return nil }
        return "unknown capability '\(c.prefix(40))' (write it as Linux names it, e.g. CAP_NET_ADMIN)"
    }

    mutating func matchConditions(_ node: YAMLNode) -> (Match, [(key: String, location: SourceLocation)])? {
        guard let entries = fields(node, "match", allowed: Self.matchKeys) else { return nil }
        var m = MatchConditions()
        var locations: [(key: String, location: SourceLocation)] = []
        locations.reserveCapacity(entries.count)
        var fields = entries
        while let (k, keyAt, value) = fields.nextIndexed() {
            let key = Self.matchKeys.names[k]
            locations.append((key, keyAt.location))
            switch MatchKey(rawValue: k)! {
            case .tenant: m.tenant = globs(value, "match.tenant")
            case .hasTenant: m.hasTenant = bool(value, "match.has_tenant")
            case .image:
                m.image = globs(value, "match.image")
                for g in m.image ?? [] where Self.lacksRegistryPath(g.pattern) {
                    warning(value.location, "match.image '\(g.pattern.prefix(60))' has no '/': image patterns match the full name registry/repository:tag (busybox is docker.io/library/busybox:latest), so write e.g. docker.io/library/busybox:*")
                }
            case .digest:
                if let list = strings(value, "match.digest") {
                    var ok = true
                    for (d, at) in list where !Self.isDigest(d) {
                        error(at.location, "match.digest '\(d.prefix(80))' is not a digest: write sha256: and 64 lowercase hex digits"); ok = false
                    }
                    if ok { m.digest = list.map(\.0) }
                }
            case .importedBy: m.importedBy = globs(value, "match.imported_by")
            case .source: m.source = globs(value, "match.source")
            case .privileged: m.privileged = bool(value, "match.privileged")
            case .addedCapabilities:
                m.addedCapabilities = presence(value, "match.added_capabilities") { Self.capabilityProblem($0, allowGlob: true) }
                if case .oneOf(let gs)? = m.addedCapabilities { m.addedCapabilities = .oneOf(gs.map { $0.hasWildcards ? $0 : Glob(Self.canonicalCapability($0.pattern)) }) }
            case .hostNamespaces:
                m.hostNamespaces = presence(value, "match.host_namespaces") {
                    Privileges.namespaceTypes.contains($0) ? nil : "unknown namespace type '\($0.prefix(40))'; use \(Privileges.namespaceTypes.joined(separator: ", "))"
                }
            case .hostMounts:
                m.hostMounts = presence(value, "match.host_mounts") {
                    $0.hasPrefix("/") || $0.hasPrefix("*") ? nil : "match.host_mounts entries are absolute host paths or globs such as /var/run/**, found '\($0.prefix(40))'"
                }
            case .devices:
                m.devices = presence(value, "match.devices") { _ in nil }
            case .noNewPrivileges: m.noNewPrivileges = bool(value, "match.no_new_privileges")
            case .annotations: m.annotations = keyedGlobs(value, "match.annotations")
            case .labels: m.labels = keyedGlobs(value, "match.labels")
            case .isolationRequest:
                if let list = strings(value, "match.isolation_request") {
                    var ok = true
                    for (v, at) in list where !["none", "namespace", "microvm"].contains(v) {
                        error(at.location, "match.isolation_request entries are none, namespace or microvm, found '\(v.prefix(40))'"); ok = false
                    }
                    if ok { m.isolationRequest = list.map(\.0) }
                }
            }
        }
        return (Match(m), locations)
    }

    mutating func keyedGlobs(_ node: YAMLNode, _ what: String) -> [String: [Glob]]? {
        guard node.isMapping else {
            error(node.location, "\(what) must be a mapping of key: value-glob, found \(node.kindName)")
            return nil
        }
        if node.count == 0 { error(node.location, "\(what) must not be empty"); return nil }
        var out = [String: [Glob]](minimumCapacity: node.count)
        for (keyNode, value) in node.entries {
            let key = keyNode.text
            if let g = globs(value, "\(what).\(key)") { out[key] = g }
        }
        return out.count == node.count ? out : nil
    }

    /// An image pattern without '/' (and not starting with `**`): it cannot match a full image name.
    static func lacksRegistryPath(_ pattern: String) -> Bool {
        var copy = pattern
        let ascii: Bool? = copy.withUTF8 { u in
            var slash = false
            for b in u {
                if b >= 0x80 { return nil }   // not ASCII: ask String (grapheme clusters)
                if b == UInt8(ascii: "/") { slash = true }
            }
            return !slash && !(u.count >= 2 && u[0] == UInt8(ascii: "*") && u[1] == UInt8(ascii: "*"))
        }
        if let ascii { return ascii }
        return !pattern.contains("/") && !pattern.hasPrefix("**")
    }

    static func isDigest(_ s: String) -> Bool {
        guard s.hasPrefix("sha256:") else { return false }
        let hex = s.utf8.dropFirst(7)
        return hex.count == 64 && hex.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

/// Rule names seen so far, for the duplicate check: a small open-addressing table of rule numbers keyed by an
/// FNV-1a hash of the name (cheaper than hashing each name with SipHash into a `[String: SourceLocation]`).
struct NameTable {
    private var slots: [Int32]
    private var hashes: [UInt64]

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size *= 2 }
        slots = [Int32](repeating: -1, count: size)
        hashes = [UInt64](repeating: 0, count: size)
    }

    /// Records `name` as rule `index` (of those in `rules`, or the one being added); returns the rule that had
    /// the name until now, if any.
    mutating func insert(_ name: String, _ index: Int, in rules: [Rule]) -> Rule? {
        var copy = name
        let h = copy.withUTF8 { u in
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in u { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            return h
        }
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: (h &* 0x9e37_79b9_7f4a_7c15) >> 32) & mask
        while true {
            let e = slots[i]
            if e < 0 { slots[i] = Int32(index); hashes[i] = h; return nil }
            if hashes[i] == h && rules[Int(e)].name == name { slots[i] = Int32(index); return rules[Int(e)] }
            i = (i + 1) & mask
        }
    }
}

/// Levenshtein distance, for "did you mean" on unknown keys (keys are short).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    if abs(a.count - b.count) > 3 { return 99 }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
