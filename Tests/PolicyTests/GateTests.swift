import Testing
import Foundation
@testable import Policy
@testable import PolicyGate

let isRoot = getuid() == 0

/// A scratch directory whose whole chain is root-owned (root-owned sticky directories such as /tmp are accepted
/// above a policy; the directory itself is 0755).
func trustedScratch(_ name: String) throws -> String {
    let dir = "/run/bulkhead-policy-tests-\(getpid())-\(name)"
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    return dir
}

@Suite(.serialized) struct GateTests {
    static let good = "version: 1\nrules:\n  - name: tenants\n    match: {has_tenant: true}\n    decide: microvm\n  - name: default\n    decide: namespace\n"

    @Test(.enabled(if: isRoot, "the trust check needs root-owned files (run as root)"))
    func trustedFileLoadsAndDecides() throws {
        let dir = try trustedScratch("ok")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.good.write(toFile: "\(dir)/policy.yaml", atomically: false, encoding: .utf8)
        chmod("\(dir)/policy.yaml", 0o644)
        let gate = try PolicyGate.load(policyPath: "\(dir)/policy.yaml", auditPath: "\(dir)/log/audit.jsonl")
        #expect(gate.policyDigest == "sha256:" + SHA256.hex(Array(Self.good.utf8)))
        let d = try gate.admit(DeploymentRequest(tenant: "acme", image: "busybox", digest: "sha256:" + String(repeating: "a", count: 64)),
                               containerID: "c1")
        #expect(d.granted == .microvm)
        let line = try String(contentsOfFile: "\(dir)/log/audit.jsonl", encoding: .utf8)
        let record = try JSONDecoder().decode(AuditRecord.self, from: Data(line.utf8))
        #expect(record.container_id == "c1" && record.tenant == "acme" && record.granted == "microvm" && record.rule == "tenants")
        #expect(record.policy_sha256 == gate.policyDigest && record.outcome == "run" && record.decided == "microvm")
        #expect(record.image_digest == "sha256:" + String(repeating: "a", count: 64))
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1)
    }

    @Test(.enabled(if: isRoot, "needs root to create files owned by another user"))
    func writableByOthersIsRefusedWithTheReason() throws {
        let dir = try trustedScratch("perm")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/policy.yaml"
        try Self.good.write(toFile: path, atomically: false, encoding: .utf8)

        chmod(path, 0o666)
        var e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(policyPath: path, auditPath: nil) }
        #expect(e?.description.contains("writable by everyone") == true)

        chmod(path, 0o664)
        chown(path, 0, 1000)
        e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(policyPath: path, auditPath: nil) }
        #expect(e?.description.contains("writable by group 1000") == true)
        chown(path, 0, 0)
        e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(policyPath: path, auditPath: nil) }
        #expect(e?.description.contains("writable by group 0, whose members need not be root") == true)

        chmod(path, 0o644)
        chown(path, 1000, 0)
        e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(policyPath: path, auditPath: nil) }
        #expect(e?.description.contains("owned by uid 1000, not root") == true)

        chown(path, 0, 0)
        chmod(dir, 0o777)
        e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(policyPath: path, auditPath: nil) }
        #expect(e?.description.contains("refusing directory \(dir) (above policy") == true)
        // Sticky and root's (like /tmp): others may add entries but cannot rename or remove root's, so allowed.
        chmod(dir, 0o1777)
        _ = try PolicyGate.load(policyPath: path, auditPath: nil)
        // Sticky but someone else's: that owner can replace any entry.
        chown(dir, 1000, 0)
        e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(policyPath: path, auditPath: nil) }
        #expect(e?.description.contains("refusing directory \(dir) (above policy") == true)
        #expect(e?.description.contains("owned by uid 1000") == true)
        chown(dir, 0, 0)
        chmod(dir, 0o755)
        _ = try PolicyGate.load(policyPath: path, auditPath: nil)

        // A symlink is judged by where it leads: the target's directory chain is checked.
        let evil = try trustedScratch("evil")
        defer { try? FileManager.default.removeItem(atPath: evil) }
        try Self.good.write(toFile: "\(evil)/p.yaml", atomically: false, encoding: .utf8)
        chmod(evil, 0o777)
        symlink("\(evil)/p.yaml", "\(dir)/link.yaml")
        e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(policyPath: "\(dir)/link.yaml", auditPath: nil) }
        #expect(e?.description.contains("refusing directory \(evil)") == true)
    }

    @Test(.enabled(if: isRoot, "the trust check needs root-owned files (run as root)"))
    func invalidPolicyFailsClosed() throws {
        let dir = try trustedScratch("bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "version: 1\nrules:\n  - name: x\n    decide: microvm\n    match: {tenant: a}\n".write(toFile: "\(dir)/policy.yaml", atomically: false, encoding: .utf8)
        let e = #expect(throws: PolicyLoadError.self) {
            try PolicyGate.load(policyPath: "\(dir)/policy.yaml", auditPath: nil)
        }
        #expect(e?.description.contains("no container starts until it is fixed") == true)
        #expect(e?.description.contains("\(dir)/policy.yaml:3:5: error: the policy has no final default") == true)
        // The same file as the default path: no fallback to the built-in policy.
        #expect(throws: PolicyLoadError.self) { try PolicyGate.load(auditPath: nil, defaultPath: "\(dir)/policy.yaml") }
    }

    @Test func missingFileGivenExplicitlyIsAnErrorNotTheBuiltIn() {
        let e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(policyPath: "/nonexistent/policy.yaml", auditPath: nil) }
        #expect(e?.description.contains("cannot read policy /nonexistent/policy.yaml") == true)
    }

    @Test func missingDefaultFileMeansTheBuiltInPolicy() throws {
        let gate = try PolicyGate.load(auditPath: nil, defaultPath: "/nonexistent/bulkhead/policy.yaml")
        #expect(gate.policy.source == "built-in")
        #expect(gate.policy.rules.map(\.name) == Policy.builtIn.rules.map(\.name))
        #expect(gate.policyDigest == "sha256:" + SHA256.hex(Array(Policy.builtInText.utf8)))
    }

    @Test(.enabled(if: isRoot, "writes under /run"))
    func tomlBesideAMissingYAMLIsAnError() throws {
        let dir = try trustedScratch("toml")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "version = 1\n".write(toFile: "\(dir)/policy.toml", atomically: false, encoding: .utf8)
        let e = #expect(throws: PolicyGateError.self) { try PolicyGate.load(auditPath: nil, defaultPath: "\(dir)/policy.yaml") }
        #expect(e?.description.contains("reads policies in YAML only") == true)
    }

    @Test func denialsAndRefusalsAreAuditedThenThrown() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bh-audit-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gate = PolicyGate(policy: Policy.builtIn, policyDigest: "sha256:x", auditPath: "\(dir)/audit.jsonl")
        let denied = #expect(throws: PolicyDenied.self) {
            try gate.admit(DeploymentRequest(tenant: "acme", privileges: Privileges(privileged: true)), containerID: "c-deny")
        }
        #expect(denied?.description.contains("denied by built-in rule 'tenant-privileged'") == true)
        let refused = #expect(throws: PolicyDenied.self) {
            try gate.admit(DeploymentRequest(tenant: "acme", requestedIsolation: .namespace), containerID: "c-refuse")
        }
        #expect(refused?.description.contains("isolation namespace refused by built-in rule 'tenants-in-microvms'") == true)
        let lines = try String(contentsOfFile: "\(dir)/audit.jsonl", encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try JSONDecoder().decode(AuditRecord.self, from: Data($0.utf8)) }
        #expect(records.map(\.outcome) == ["deny", "refused"])
        #expect(records.map(\.granted) == [nil, nil])
        #expect(records[1].requested == "namespace" && records[1].decided == "microvm")
    }

    @Test func concurrentAppendsNeverTearLines() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bh-audit-conc-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = AuditLog(path: "\(dir)/audit.jsonl")
        let big = String(repeating: "x", count: 6000)   // lines larger than PIPE_BUF
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for i in 0..<50 {
                var r = AuditRecord(decision: Policy.builtIn.decide(DeploymentRequest(tenant: "t\(worker)")),
                                    request: DeploymentRequest(tenant: "t\(worker)", image: big), containerID: "w\(worker)-\(i)",
                                    policyDigest: "sha256:x")
                r.time = "t"
                try! log.append(r)
            }
        }
        let lines = try String(contentsOfFile: "\(dir)/audit.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 400)
        let ids = Set(try lines.map { try JSONDecoder().decode(AuditRecord.self, from: Data($0.utf8)).container_id })
        #expect(ids.count == 400)
    }

    @Test func bundleRequestReadsSpecAndOwner() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bh-bundle-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        let spec = #"{"process":{"noNewPrivileges":true},"mounts":[{"destination":"/s","type":"bind","source":"/var/run"}],"linux":{"namespaces":[{"type":"pid"}]},"annotations":{"io.kubernetes.pod.namespace":"shop","bulkhead.isolation":"microvm","io.kubernetes.cri.image-name":"docker.io/shop/web:3"}}"#
        try spec.write(toFile: "\(dir)/config.json", atomically: false, encoding: .utf8)
        chmod("\(dir)/config.json", 0o644)
        let r = try DeploymentRequest.forBundle(dir)
        #expect(r.tenant == "shop" && r.requestedIsolation == .microvm && r.image == "docker.io/shop/web:3")
        #expect(r.privileges.hostMounts.contains("/var/run"))
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: "/var/run")) != nil { #expect(r.privileges.hostMounts.contains("/run")) }
        #expect(r.origin.importedBy == (getuid() == 0 ? "root" : "uid:\(getuid())"))
        #expect(r.origin.source?.hasPrefix("bundle:") == true)
        let explicit = try DeploymentRequest.forBundle(dir, tenant: "", isolation: .namespace)
        #expect(explicit.tenant == nil && explicit.requestedIsolation == .microvm)   // the higher request wins
        #expect(throws: PolicyRequestError.self) { try DeploymentRequest.forBundle("\(dir)/nope") }
    }
}
