import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// A table of deployments and the decisions a policy must give them: CI for the policy itself
/// (`bulkhead policy test POLICY CASES`).
public struct CaseTable: Sendable {
    public struct Case: Sendable {
        public var name: String
        public var location: SourceLocation
        public var request: DeploymentRequest
        /// `namespace`, `microvm`, `deny` or `refused`.
        public var expect: String
        public var expectRule: String?
    }

    public struct Result: Sendable {
        public var testCase: Case
        public var decision: Decision
        public var passed: Bool
        /// What was decided, in the table's words: the granted tier, `deny` or `refused`.
        public var got: String
    }

    public var source: String
    public var cases: [Case]

    /// Reads a case table; a case's `spec:` path is relative to the table's directory.
    public static func load(path: String) throws -> CaseTable {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        let bytes = try fd.readAll(limit: YAMLReader.maxBytes, path: path)
        let dir = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        return try parse(bytes, source: path, baseDirectory: dir)
    }

    public static func parse(_ bytes: [UInt8], source: String, baseDirectory: String = ".") throws -> CaseTable {
        let document: YAMLDocument
        do { document = try YAMLReader.parse(bytes, file: source) } catch { throw PolicyLoadError(source: source, diagnostics: [error]) }
        defer { withExtendedLifetime(document) {} }
        let root = document.root
        var l = PolicyLoader(file: source)
        var cases: [Case] = []
        var specErrors: [Diagnostic] = []
        if let top = l.fields(root, "the case table", allowed: Self.tableKeys) {
            for (key, _, value) in top {
                switch key {
                case "version":
                    if let v = l.integer(value, "version", range: 0...Int.max), v != 1 { l.error(value.location, "unsupported case table version \(v); use 1") }
                case "policy": _ = l.string(value, "policy")
                case "cases":
                    guard value.isSequence else { l.error(value.location, "cases must be a list"); continue }
                    for item in value.items {
                        if let c = parseCase(item, &l, baseDirectory: baseDirectory, specErrors: &specErrors) { cases.append(c) }
                    }
                default: break
                }
            }
        }
        let all = l.diagnostics + specErrors
        if all.contains(where: { $0.severity == .error }) { throw PolicyLoadError(source: source, diagnostics: all) }
        return CaseTable(source: source, cases: cases)
    }

    private static let tableKeys = KeySet(["version", "policy", "cases"])
    private static let caseKeys = KeySet(["name", "request", "expect", "rule"])
    private static let requestKeys = KeySet(["tenant", "image", "digest", "imported_by", "source", "isolation",
                                             "annotations", "labels", "spec", "privileges"])
    private static let privilegeKeys = KeySet(["privileged", "added_capabilities", "host_namespaces",
                                               "host_mounts", "devices", "no_new_privileges"])

    private static func parseCase(_ node: YAMLNode, _ l: inout PolicyLoader, baseDirectory: String, specErrors: inout [Diagnostic]) -> Case? {
        let before = l.diagnostics.count
        guard let entries = l.fields(node, "a case", allowed: Self.caseKeys) else { return nil }
        var name: String? = nil, expect: String? = nil, rule: String? = nil
        var request = DeploymentRequest()
        for (key, _, value) in entries {
            switch key {
            case "name": name = l.string(value, "name")
            case "expect":
                if let e = l.string(value, "expect") {
                    if ["namespace", "microvm", "deny", "refused"].contains(e) { expect = e }
                    else { l.error(value.location, "expect must be namespace, microvm, deny or refused, found '\(e.prefix(40))'") }
                }
            case "rule": rule = l.string(value, "rule")
            case "request": request = parseRequest(value, &l, baseDirectory: baseDirectory, specErrors: &specErrors) ?? request
            default: break
            }
        }
        if name == nil { l.error(node.location, "a case needs a name") }
        if expect == nil && !l.diagnostics[before...].contains(where: { $0.message.hasPrefix("expect") }) {
            l.error(node.location, "case '\(name ?? "?")' needs `expect: namespace | microvm | deny | refused`")
        }
        guard let name, let expect, !l.diagnostics[before...].contains(where: { $0.severity == .error }) else { return nil }
        return Case(name: name, location: node.location, request: request, expect: expect, expectRule: rule)
    }

    private static func parseRequest(_ node: YAMLNode, _ l: inout PolicyLoader, baseDirectory: String, specErrors: inout [Diagnostic]) -> DeploymentRequest? {
        guard let entries = l.fields(node, "request", allowed: Self.requestKeys) else { return nil }
        var r = DeploymentRequest()
        var tenant: String? = nil, isolation: Tier? = nil
        var specAnnotations: [String: String] = [:]
        for (key, _, value) in entries {
            switch key {
            case "tenant":
                if value.isScalar, !value.isPlainScalar, value.textIs("") { tenant = "" } else { tenant = l.string(value, "tenant") }
            case "image": r.image = l.string(value, "image")
            case "digest": r.digest = l.string(value, "digest")
            case "imported_by": r.origin.importedBy = l.string(value, "imported_by")
            case "source": r.origin.source = l.string(value, "source")
            case "isolation": isolation = l.enumValue(value, "isolation", Tier.self)
            case "annotations": r.annotations = stringMap(value, "annotations", &l)
            case "labels": r.labels = stringMap(value, "labels", &l)
            case "spec":
                guard let path = l.string(value, "spec") else { continue }
                let full = path.hasPrefix("/") ? path : baseDirectory + "/" + path
                do {
                    let fd = try FileDescriptor.open(full, O_RDONLY)
                    let (p, a) = try SpecPrivileges.read(configJSON: try fd.readAll(path: full))
                    r.privileges = p
                    specAnnotations = a
                } catch {
                    specErrors.append(Diagnostic(.error, value.location, "cannot read spec \(full): \(error)"))
                }
            case "privileges":
                guard let fields = l.fields(value, "privileges", allowed: Self.privilegeKeys) else { continue }
                for (k, _, v) in fields {
                    switch k {
                    case "privileged": r.privileges.privileged = l.bool(v, k) ?? false
                    case "no_new_privileges": r.privileges.noNewPrivileges = l.bool(v, k) ?? true
                    case "added_capabilities": r.privileges.addedCapabilities = stringList(v, k, &l)
                    case "host_namespaces": r.privileges.hostNamespaces = stringList(v, k, &l)
                    case "host_mounts": r.privileges.hostMounts = stringList(v, k, &l)
                    case "devices": r.privileges.devices = stringList(v, k, &l)
                    default: break
                    }
                }
            default: break
            }
        }
        r.annotations = specAnnotations.merging(r.annotations) { $1 }
        r.tenant = DeploymentRequest.resolveTenant(explicit: tenant, annotations: r.annotations)
        do { r.requestedIsolation = try DeploymentRequest.resolveIsolation(explicit: isolation, annotations: r.annotations) }
        catch { l.error(node.location, error.description) }
        return r
    }

    private static func stringList(_ node: YAMLNode, _ what: String, _ l: inout PolicyLoader) -> [String] {
        if node.isSequence, node.count == 0 { return [] }
        return l.strings(node, what)?.map(\.0) ?? []
    }

    private static func stringMap(_ node: YAMLNode, _ what: String, _ l: inout PolicyLoader) -> [String: String] {
        guard node.isMapping else { l.error(node.location, "\(what) must be a mapping"); return [:] }
        var out: [String: String] = [:]
        for (keyNode, v) in node.entries {
            let k = keyNode.text
            if v.isScalar { out[k] = v.text } else { l.error(v.location, "\(what).\(k) must be a string") }
        }
        return out
    }

    /// Runs every case against `policy`.
    public func run(against policy: Policy) -> [Result] {
        cases.map { c in
            let d = policy.decide(c.request, explain: false)
            let got: String
            switch d.outcome {
            case .run: got = d.granted!.rawValue
            case .deny: got = "deny"
            case .refused: got = "refused"
            }
            let passed = got == c.expect && (c.expectRule == nil || c.expectRule == d.rule)
            return Result(testCase: c, decision: d, passed: passed, got: got)
        }
    }

    /// A diff-like report: one line per passing case, a -expected/+got pair per failing one, and a total.
    public static func report(_ results: [Result], policy: String) -> String {
        var out = ""
        for r in results {
            let c = r.testCase
            if r.passed {
                out += "ok    \(c.name): \(r.got) (rule \(r.decision.rule))\n"
            } else {
                out += "FAIL  \(c.name) (\(c.location))\n"
                out += "-     expected: \(c.expect)" + (c.expectRule.map { " by rule '\($0)'" } ?? "") + "\n"
                out += "+     got:      \(r.got) by rule '\(r.decision.rule)' (\(r.decision.ruleLocation))\n"
                out += "      because:  \(r.decision.summary)\n"
            }
        }
        let failed = results.filter { !$0.passed }.count
        out += failed == 0 ? "policy test: all \(results.count) cases passed (\(policy))\n"
                           : "policy test: \(failed) of \(results.count) cases failed (\(policy))\n"
        return out
    }
}
