import Testing
import Foundation
@testable import Policy
@testable import BulkheadCommands
import OCIRuntime

/// Random rule sets, written out as YAML and loaded, against random runtime specs and requests.
///
/// "What the policy allows" is defined here independently of the engine, from the generated rules themselves:
/// the governing rule R is the first rule whose conditions all hold (evaluated by the naive reference matcher
/// below). The policy allows tier t for the deployment iff R does not say deny and either t ≥ R's tier, or
/// t = namespace < R's tier, R has `allow_lower: true` and the deployer asked for namespace.
///
/// Properties, for every (policy, deployment):
/// 1. the engine's decision names R;
/// 2. when it runs, it runs in a tier the policy allows — never less isolated;
/// 3. a deny rule never runs, a refused request never runs, and a request for more isolation is always honoured;
/// 4. the explained trace agrees with the fast path;
/// 5. a rule the linter calls shadowed never decides.
@Suite struct PropertyTests {
    struct Cond { var key: String; var yaml: String; var holds: (Ref) -> Bool }
    struct RRule { var name: String; var conds: [Cond]; var verdict: Verdict; var allowLower: Bool }

    /// The deployment as the reference sees it (computed from the generated spec, not through SpecPrivileges).
    struct Ref {
        var tenant: String?; var image: String?; var importedBy: String?; var requested: Tier?
        var annotations: [String: String]; var caps: Set<String>; var privileged: Bool; var hostNS: Set<String>
        var mounts: [String]; var devices: [String]; var nnp: Bool
    }

    /// Naive recursive glob (fine for the short strings here): * excludes '/', ** does not.
    static func glob(_ p: Substring, _ s: Substring) -> Bool {
        if p.isEmpty { return s.isEmpty }
        if p.hasPrefix("**") { let rest = p.dropFirst(2); return s.indices.contains { glob(rest, s[$0...]) } || glob(rest, s[s.endIndex...]) }
        if p.first == "*" {
            let rest = p.dropFirst()
            var i = s.startIndex
            while true {
                if glob(rest, s[i...]) { return true }
                if i == s.endIndex || s[i] == "/" { return false }
                i = s.index(after: i)
            }
        }
        guard let c = s.first else { return false }
        if p.first == "?" { return c != "/" && glob(p.dropFirst(), s.dropFirst()) }
        return p.first == c && glob(p.dropFirst(), s.dropFirst())
    }
    static func any(_ pats: [String], _ v: String?) -> Bool { v.map { v in pats.contains { glob($0[...], v[...]) } } ?? false }
    static func yamlList(_ v: [String]) -> String { "[" + v.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
    static func canonical(_ image: String?) -> String? {
        guard let image else { return nil }
        let known = ["busybox": "docker.io/library/busybox:latest", "quay.io/x/app:2": "quay.io/x/app:2",
                     "docker.io/acme/app:1": "docker.io/acme/app:1", "localhost/dev:1": "localhost/dev:1"]
        return known[image]!
    }

    static func randomCondition(_ rng: inout SplitMix64) -> Cond {
        func pick<T>(_ a: [T]) -> T { a.randomElement(using: &rng)! }
        func presence(_ key: String, _ lists: [[String]], _ values: @escaping (Ref) -> [String]) -> Cond {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: return Cond(key: key, yaml: "true") { !values($0).isEmpty }
            case 1: return Cond(key: key, yaml: "false") { values($0).isEmpty }
            default:
                let l = pick(lists)
                return Cond(key: key, yaml: yamlList(l)) { r in values(r).contains { any(l, $0) } }
            }
        }
        switch Int.random(in: 0..<12, using: &rng) {
        case 0: let l = pick([["acme"], ["acme-*"], ["beta", "c?"], ["*"]]); return Cond(key: "tenant", yaml: yamlList(l)) { any(l, $0.tenant) }
        case 1: let b = Bool.random(using: &rng); return Cond(key: "has_tenant", yaml: "\(b)") { ($0.tenant != nil) == b }
        case 2:
            let l = pick([["docker.io/library/**"], ["quay.io/*/app:*"], ["docker.io/acme/app:1", "localhost/**"], ["**"]])
            return Cond(key: "image", yaml: yamlList(l)) { any(l, canonical($0.image)) }
        case 3: let l = pick([["root"], ["uid:*"]]); return Cond(key: "imported_by", yaml: yamlList(l)) { any(l, $0.importedBy) }
        case 4: let b = Bool.random(using: &rng); return Cond(key: "privileged", yaml: "\(b)") { $0.privileged == b }
        case 5: return presence("added_capabilities", [["CAP_NET_ADMIN"], ["CAP_SYS_*"]]) { Array($0.caps.subtracting(Privileges.defaultCapabilities)) }
        case 6: return presence("host_namespaces", [["pid"], ["network", "ipc"], ["user"]]) { Array($0.hostNS) }
        case 7: return presence("host_mounts", [["/var/run/**"], ["/etc", "/etc/**"]]) { $0.mounts }
        case 8: return presence("devices", [["/dev/fuse"], ["*"]]) { $0.devices }
        case 9: let b = Bool.random(using: &rng); return Cond(key: "no_new_privileges", yaml: "\(b)") { $0.nnp == b }
        case 10: let l = pick([["sre-*"], ["dev"]]); return Cond(key: "annotations", yaml: "{team: \(yamlList(l))}") { any(l, $0.annotations["team"]) }
        default:
            let l = pick([["none"], ["namespace"], ["microvm", "none"]])
            return Cond(key: "isolation_request", yaml: yamlList(l)) { l.contains($0.requested?.rawValue ?? "none") }
        }
    }

    static func randomRules(_ rng: inout SplitMix64) -> [RRule] {
        var rules: [RRule] = []
        for i in 0..<Int.random(in: 0...8, using: &rng) {
            var conds: [Cond] = []
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let c = randomCondition(&rng)
                if !conds.contains(where: { $0.key == c.key }) { conds.append(c) }
            }
            let verdict = Verdict.allCases.randomElement(using: &rng)!
            rules.append(RRule(name: "r\(i)", conds: conds, verdict: verdict, allowLower: verdict == .microvm && Bool.random(using: &rng)))
        }
        let last = Verdict.allCases.randomElement(using: &rng)!
        rules.append(RRule(name: "default", conds: [], verdict: last, allowLower: last == .microvm && Bool.random(using: &rng)))
        return rules
    }

    static func yaml(_ rules: [RRule]) -> String {
        var out = "version: 1\nrules:\n"
        for r in rules {
            out += "  - name: \(r.name)\n"
            if !r.conds.isEmpty {
                out += "    match:\n"
                for c in r.conds { out += "      \(c.key): \(c.yaml)\n" }
            }
            out += "    decide: \(r.verdict.rawValue)\n"
            if r.allowLower { out += "    allow_lower: true\n" }
        }
        return out
    }

    /// A random runtime spec (JSON) and the reference's reading of it.
    static func randomDeployment(_ rng: inout SplitMix64) -> (DeploymentRequest, Ref) {
        func pick<T>(_ a: [T]) -> T { a.randomElement(using: &rng)! }
        let caps = Set(["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_TIME", "CAP_SYS_PTRACE"].filter { _ in Bool.random(using: &rng) })
        let listed = Privileges.namespaceTypes.filter { _ in Int.random(in: 0..<4, using: &rng) > 0 }
        let joined = listed.filter { _ in Int.random(in: 0..<8, using: &rng) == 0 }
        let mounts = ["/var/run/docker.sock", "/srv/data", "/etc", "/etc/passwd", "/var/./run/x.sock"].filter { _ in Int.random(in: 0..<4, using: &rng) == 0 }
        let devices = ["/dev/fuse", "/dev/kvm"].filter { _ in Int.random(in: 0..<4, using: &rng) == 0 }
        let allowAll = Int.random(in: 0..<6, using: &rng) == 0
        let nnp = Bool.random(using: &rng)
        var annotations: [String: String] = [:]
        if let team = pick([nil, "sre-core", "dev"]) { annotations["team"] = team }
        let tenantAnnotation: String? = pick([nil, nil, "acme-2", "c9"])
        if let t = tenantAnnotation { annotations["io.kubernetes.pod.namespace"] = t }
        let isolationAnnotation: Tier? = pick([nil, nil, nil, .namespace, .microvm])
        if let i = isolationAnnotation { annotations["bulkhead.isolation"] = i.rawValue }

        let spec: [String: Any] = [
            "ociVersion": "1.2.0",
            "process": ["capabilities": ["bounding": Array(caps).sorted(), "permitted": Array(caps).sorted()], "noNewPrivileges": nnp,
                        "user": ["uid": 0, "gid": 0], "args": ["/bin/true"], "cwd": "/"],
            "root": ["path": "rootfs"],
            "mounts": mounts.map { ["destination": "/m", "type": "bind", "source": $0, "options": ["rbind"]] }
                + [["destination": "/proc", "type": "proc", "source": "proc"]],
            "linux": [
                "namespaces": listed.map { joined.contains($0) ? ["type": $0, "path": "/proc/1/ns/x"] : ["type": $0] },
                "devices": devices.map { ["path": $0, "type": "c", "major": 1, "minor": 1] },
                "resources": ["devices": [["allow": false, "access": "rwm"]] + (allowAll ? [["allow": true, "access": "rwm"]] : [])],
            ],
            "annotations": annotations,
        ]
        let json = try! JSONSerialization.data(withJSONObject: spec)
        let (privileges, specAnnotations) = try! SpecPrivileges.read(configJSON: Array(json))
        // create/run decide from the spec the runtime decoded (no second read of config.json): the same privileges.
        let runtimeSpec = try! JSONDecoder().decode(OCIRuntime.Spec.self, from: json)   // types only; validation is not the point here
        let facts = PolicyAdmission.facts(of: runtimeSpec)
        #expect(SpecPrivileges.privileges(of: facts) == privileges)
        #expect(facts.annotations == specAnnotations)

        let explicitTenant: String? = pick([nil, nil, "acme", "beta", "", "c1"])
        let explicitIsolation: Tier? = pick([nil, nil, .namespace, .microvm])
        var request = DeploymentRequest(image: pick([nil, "busybox", "quay.io/x/app:2", "docker.io/acme/app:1", "localhost/dev:1"]),
                                        origin: ImageOrigin(importedBy: pick([nil, "root", "uid:1000"])),
                                        annotations: specAnnotations, privileges: privileges)
        request.tenant = DeploymentRequest.resolveTenant(explicit: explicitTenant, annotations: specAnnotations)
        request.requestedIsolation = try! DeploymentRequest.resolveIsolation(explicit: explicitIsolation, annotations: specAnnotations)

        // The reference reading, straight from what was generated.
        let refTenant: String? = explicitTenant.map { $0.isEmpty ? nil : $0 } ?? tenantAnnotation
        let refRequested: Tier? = [explicitIsolation, isolationAnnotation].compactMap { $0 }.max()
        let hostNS = Set(Privileges.namespaceTypes.filter { !listed.contains($0) || joined.contains($0) })
        let normalised = mounts.map { $0 == "/var/./run/x.sock" ? "/var/run/x.sock" : $0 }
        let ref = Ref(tenant: refTenant, image: request.image, importedBy: request.origin.importedBy, requested: refRequested,
                      annotations: annotations, caps: caps,
                      privileged: !caps.isDisjoint(with: ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]) || allowAll,
                      hostNS: hostNS, mounts: normalised, devices: devices + (allowAll ? ["*"] : []), nnp: nnp)
        return (request, ref)
    }

    @Test func neverLessIsolatedThanThePolicyAllows() throws {
        var rng = SplitMix64(seed: 0xB01C_4EAD)
        var outcomes: [String: Int] = [:]
        for _ in 0..<300 {
            let rules = Self.randomRules(&rng)
            let text = Self.yaml(rules)
            let loaded = Policy.check(Array(text.utf8), source: "prop.yaml")
            guard let policy = loaded.0 else {
                Issue.record("generated policy did not load: \(loaded.1)\n\(text)")
                continue
            }
            let shadowed = Set(policy.warnings.compactMap { w -> String? in
                guard w.message.contains("is shadowed") else { return nil }
                return w.message.split(separator: "'")[1].description
            })
            for _ in 0..<40 {
                let (request, ref) = Self.randomDeployment(&rng)
                #expect(request.tenant == ref.tenant && request.requestedIsolation == ref.requested)
                let governing = rules.first { $0.conds.allSatisfy { $0.holds(ref) } }!
                let d = policy.decide(request)

                // 1. the governing rule decides.
                #expect(d.rule == governing.name, "\(text)\n\(request)")
                // 2. never less isolated than allowed.
                if d.outcome == .run, let g = d.granted {
                    #expect(governing.verdict != .deny)
                    let ruleTier = governing.verdict.tier!
                    let allowed = g >= ruleTier || (g == .namespace && governing.allowLower && ref.requested == .namespace)
                    #expect(allowed, "granted \(g) under rule \(governing.name) (\(governing.verdict)), requested \(String(describing: ref.requested))")
                }
                // 3. deny never runs; refusals only when lowering without allow_lower; raising honoured.
                if governing.verdict == .deny { #expect(d.outcome == .deny) }
                if let r = ref.requested, let t = governing.verdict.tier {
                    if r > t { #expect(d.granted == r) }
                    if r < t { #expect(d.outcome == (governing.allowLower ? .run : .refused)) }
                }
                // 4. the explanation agrees.
                let e = policy.decide(request, explain: true)
                #expect(e.rule == d.rule && e.outcome == d.outcome && e.granted == d.granted)
                #expect(e.trace!.last!.matched && e.trace!.dropLast().allSatisfy { !$0.matched })
                #expect(e.conditions.allSatisfy { $0.matched })
                // 5. shadowed rules never decide.
                #expect(!shadowed.contains(d.rule), "rule \(d.rule) was linted as shadowed but decided\n\(text)")
                outcomes[d.outcome.rawValue + (d.granted.map { "/\($0.rawValue)" } ?? ""), default: 0] += 1
            }
        }
        // The generator reaches every kind of outcome (else the properties above test little).
        for key in ["run/namespace", "run/microvm", "deny", "refused"] { #expect((outcomes[key] ?? 0) > 200, "\(outcomes)") }
    }

    @Test func referenceGlobAgreesWithGlob() {
        var rng = SplitMix64(seed: 7)
        let alphabet: [Character] = ["a", "b", "/", "*", "?"]
        for _ in 0..<20_000 {
            let p = String((0..<Int.random(in: 0...7, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            let s = String((0..<Int.random(in: 0...8, using: &rng)).map { _ in ["a", "b", "/"].randomElement(using: &rng)! as Character })
            #expect(Glob(p).matches(s) == Self.glob(p[...], s[...]), "pattern \(p) subject \(s)")
        }
    }
}
