import Testing
import Foundation
@testable import Policy

/// The example policies under policies/ with their case tables, through the library and through the CLI.
@Suite struct ExamplePolicyTests {
    static let examples = ["default", "saas-multitenant", "dev-laptop"]

    @Test(arguments: examples)
    func caseTablePasses(_ name: String) throws {
        let policy = try Policy.load(path: "\(repoRoot)/policies/\(name).yaml")
        #expect(policy.warnings.isEmpty, "\(policy.warnings)")
        let table = try CaseTable.load(path: "\(repoRoot)/policies/\(name).cases.yaml")
        #expect(table.cases.count >= 7)
        let results = table.run(against: policy)
        for r in results where !r.passed {
            Issue.record("\(r.testCase.name): expected \(r.testCase.expect) got \(r.got) — \(r.decision.summary)")
        }
        // Every rule of the example is exercised by at least one case.
        let used = Set(results.map(\.decision.rule))
        for rule in policy.rules { #expect(used.contains(rule.name), "no case reaches rule '\(rule.name)' of \(name)") }
    }

    @Test func aWrongExpectationFailsWithADiffLikeReport() throws {
        let policy = try Policy.load(path: "\(repoRoot)/policies/default.yaml")
        let table = try CaseTable.parse(Array("""
            version: 1
            cases:
              - name: tenant wrongly expected as a container
                request: {tenant: acme}
                expect: namespace
              - name: right
                request: {tenant: acme}
                expect: microvm
                rule: tenants-in-microvms
              - name: right tier, wrong rule
                request: {tenant: acme}
                expect: microvm
                rule: default
            """.utf8), source: "c.yaml")
        let results = table.run(against: policy)
        #expect(results.map(\.passed) == [false, true, false])
        let report = CaseTable.report(results, policy: "default.yaml")
        #expect(report.contains("FAIL  tenant wrongly expected as a container (c.yaml:3:5)\n-     expected: namespace\n+     got:      microvm by rule 'tenants-in-microvms'"))
        #expect(report.contains("-     expected: microvm by rule 'default'"))
        #expect(report.hasSuffix("policy test: 2 of 3 cases failed (default.yaml)\n"))
    }

    @Test func caseTablesAreStrictToo() {
        #expect(throws: PolicyLoadError.self) {
            try CaseTable.parse(Array("version: 1\ncases:\n  - name: x\n    expect: vm\n    requets: {}\n".utf8), source: "c.yaml")
        }
    }
}

/// The built CLI (`bulkhead policy …`) on the example files.
@Suite struct PolicyCLITests {
    static var binary: String? {
        for p in ["\(repoRoot)/.build/debug/bulkhead", "\(repoRoot)/.build/release/bulkhead"]
        where FileManager.default.isExecutableFile(atPath: p) { return p }
        return nil
    }

    func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        guard let binary = Self.binary else {
            Issue.record("no built bulkhead binary under .build/ (run `swift build` first)")
            return (-1, "", "")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: repoRoot)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test func policyTestRunsTheSaasCaseTable() throws {
        let r = try run(["policy", "test", "policies/saas-multitenant.yaml", "policies/saas-multitenant.cases.yaml"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("ok    customer workload from the Kubernetes namespace runs in a microVM: microvm (rule customers-in-microvms)"))
        #expect(r.out.hasSuffix("policy test: all 16 cases passed (policies/saas-multitenant.yaml)\n"))
    }

    @Test func policyTestExitsOneOnMismatch() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bh-cli-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases = dir.appendingPathComponent("c.yaml")
        try "version: 1\ncases:\n  - name: wrong\n    request: {tenant: acme}\n    expect: namespace\n".write(to: cases, atomically: true, encoding: .utf8)
        let r = try run(["policy", "test", "policies/default.yaml", cases.path])
        #expect(r.status == 1)
        #expect(r.out.contains("-     expected: namespace\n+     got:      microvm by rule 'tenants-in-microvms'"))
    }

    @Test func policyCheckReportsLocatedErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bh-cli-check-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("p.yaml")
        try "version: 1\nrules:\n  - name: x\n    decide: microvm\n    vcpus: 2\n".write(to: file, atomically: true, encoding: .utf8)
        let r = try run(["policy", "check", file.path])
        #expect(r.status == 1)
        #expect(r.out.contains("\(file.path):5:5: error: unknown key 'vcpus' in a rule"))
        let ok = try run(["policy", "check", "policies/dev-laptop.yaml"])
        #expect(ok.status == 0 && ok.out == "policies/dev-laptop.yaml: valid policy, version 1, 5 rules\n")
    }

    @Test func explainPrintsJSON() throws {
        // The built-in policy (no --policy, and no /etc/bulkhead/policy.yaml is expected on a test host; if one
        // exists the decision is still explained, only the rule may differ).
        let r = try run(["policy", "explain", "--tenant", "acme", "--format", "json", "docker.io/acme/app:1"])
        #expect(r.status == 0, "\(r.err)")
        let json = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        let decision = json?["decision"] as? [String: Any]
        #expect(decision?["rule"] != nil)
        #expect((decision?["trace"] as? [Any])?.isEmpty == false)
        #expect((json?["request"] as? [String: Any])?["tenant"] as? String == "acme")
    }
}

/// policies/policy.schema.json accepts the examples and rejects what the loader rejects (checked with Python's
/// jsonschema when it is installed).
@Suite struct PolicySchemaTests {
    static let pythonReady: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import yaml, jsonschema"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    @Test(.enabled(if: pythonReady, "needs python3 with PyYAML and jsonschema (python3-yaml, pip jsonschema)"))
    func schemaAgreesWithTheLoaderOnExamples() throws {
        let script = """
            import json, sys, yaml, jsonschema
            s = json.load(open('policies/policy.schema.json'))
            jsonschema.Draft202012Validator.check_schema(s)
            for f in ['default', 'saas-multitenant', 'dev-laptop']:
                jsonschema.validate(yaml.safe_load(open('policies/%s.yaml' % f)), s)
            bad = [{'version': 1, 'rules': [{'name': 'x', 'decide': 'vm'}]},
                   {'version': 1, 'rules': [{'name': 'x', 'decide': 'deny', 'match': {'tenent': 'a'}}]},
                   {'version': 2, 'rules': [{'name': 'x', 'decide': 'deny'}]}]
            for b in bad:
                try:
                    jsonschema.validate(b, s)
                    sys.exit('schema accepted %r' % b)
                except jsonschema.ValidationError:
                    pass
            print('ok')
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script]
        p.currentDirectoryURL = URL(fileURLWithPath: repoRoot)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0 && text == "ok\n", "\(text)")
    }
}
