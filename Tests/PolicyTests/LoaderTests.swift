import Testing
import Foundation
@testable import Policy

/// Loading and linting: every problem reported at its file:line:column.
@Suite struct LoaderTests {
    func diagnostics(_ text: String) -> [Diagnostic] {
        Policy.check(Array(text.utf8), source: "p.yaml").1
    }

    func errors(_ text: String) -> [String] {
        diagnostics(text).filter { $0.severity == .error }.map(\.description)
    }

    @Test func minimalPolicyLoads() throws {
        let p = try Policy.parse("version: 1\nrules:\n  - name: default\n    decide: namespace\n", source: "p.yaml")
        #expect(p.rules.count == 1)
        #expect(p.rules[0].isCatchAll)
        #expect(p.warnings.isEmpty)
    }

    @Test func unknownKeysAreErrorsWithLocationAndSuggestion() {
        let e = errors("""
            version: 1
            rules:
              - name: a
                match:
                  tenent: acme
                decide: microvm
              - name: default
                decide: microvm
                alow_lower: true
            """)
        #expect(e.contains("p.yaml:5:7: error: unknown key 'tenent' in match; did you mean 'tenant'?"))
        #expect(e.contains("p.yaml:9:5: error: unknown key 'alow_lower' in a rule; did you mean 'allow_lower'?"))
    }

    @Test func wrongTypesAreErrors() {
        let e = errors("""
            version: 1
            rules:
              - name: a
                match:
                  privileged: "true"
                  tenant: {x: 1}
                decide: microvm
                microvm: {vcpus: two, memory: 12Xi}
              - name: default
                decide: maybe
            """)
        #expect(e.contains { $0.hasPrefix("p.yaml:5:19: error: match.privileged must be true or false, found a string") })
        #expect(e.contains { $0.hasPrefix("p.yaml:6:15: error: match.tenant (a string or a list of strings) must be a string, found a mapping") })
        #expect(e.contains { $0.hasPrefix("p.yaml:8:22: error: microvm.vcpus must be a whole number") })
        #expect(e.contains { $0.hasPrefix("p.yaml:8:35: error: microvm.memory must be a size") })
        #expect(e.contains { $0.hasPrefix("p.yaml:10:13: error: decide must be one of namespace, microvm, deny") })
    }

    @Test func missingVersionAndWrongVersion() {
        #expect(errors("rules:\n  - name: d\n    decide: deny\n").contains("p.yaml:1:1: error: missing `version: 1` at the top of the policy"))
        #expect(errors("version: 2\nrules:\n  - name: d\n    decide: deny\n").contains { $0.hasPrefix("p.yaml:1:10: error: unsupported policy version 2") })
    }

    @Test func finalDefaultIsRequired() {
        let e = errors("""
            version: 1
            rules:
              - name: only-tenants
                match: {has_tenant: true}
                decide: microvm
            """)
        #expect(e.contains { $0.hasPrefix("p.yaml:3:5: error: the policy has no final default") })
    }

    @Test func catchAllBeforeTheEndMakesLaterRulesUnreachable() {
        let e = errors("""
            version: 1
            rules:
              - name: everything
                decide: namespace
              - name: tenants
                match: {has_tenant: true}
                decide: microvm
              - name: default
                decide: microvm
            """)
        #expect(e.contains { $0.hasPrefix("p.yaml:5:5: error: rule 'tenants' is unreachable: rule 'everything' (line 3)") })
        #expect(e.contains { $0.hasPrefix("p.yaml:8:5: error: rule 'default' is unreachable") })
    }

    @Test func shadowedRulesAreWarnings() throws {
        let text = """
            version: 1
            rules:
              - name: acme
                match: {tenant: "acme-*"}
                decide: microvm
              - name: acme-web
                match: {tenant: acme-web, image: "docker.io/acme/**"}
                decide: namespace
              - name: other
                match: {tenant: "beta-*", privileged: true}
                decide: deny
              - name: other-narrower
                match: {tenant: "beta-1", privileged: false}
                decide: deny
              - name: default
                decide: microvm
            """
        let d = diagnostics(text)
        #expect(d.map(\.description) == ["p.yaml:6:5: warning: rule 'acme-web' is shadowed: rule 'acme' (line 3) matches every deployment it matches, so it never decides; reorder or remove it"])
        // Warnings do not stop loading.
        #expect(try Policy.parse(text, source: "p.yaml").warnings.count == 1)
    }

    @Test func contradictionsAndSettingsWithoutEffectAreWarnings() {
        let d = diagnostics("""
            version: 1
            rules:
              - name: never
                match: {tenant: x, has_tenant: false}
                decide: deny
                namespace: {readonly_rootfs: true}
              - name: ns
                match: {image: busybox}
                decide: namespace
                allow_lower: true
              - name: default
                decide: microvm
            """).map(\.description)
        #expect(d.contains { $0.hasPrefix("p.yaml:4:13: warning: rule 'never' can never match") })
        #expect(d.contains { $0.hasPrefix("p.yaml:6:5: warning: namespace settings have no effect on a rule that decides deny") })
        #expect(d.contains { $0.hasPrefix("p.yaml:8:20: warning: match.image 'busybox' has no '/'") })
        #expect(d.contains { $0.hasPrefix("p.yaml:10:5: warning: allow_lower has no effect on a rule that decides namespace") })
    }

    @Test func duplicateKeysAndNamesAreErrors() {
        let e = errors("""
            version: 1
            rules:
              - name: a
                name: b
                decide: deny
              - name: d
                decide: deny
              - name: d
                decide: deny
            """)
        #expect(e.contains("p.yaml:4:5: error: duplicate key 'name' (first at line 3, column 5)"))
    }

    @Test func duplicateRuleNames() {
        let e = errors("version: 1\nrules:\n  - name: d\n    match: {privileged: true}\n    decide: deny\n  - name: d\n    decide: deny\n")
        #expect(e.contains { $0.hasPrefix("p.yaml:6:5: error: duplicate rule name 'd' (first at line 3)") })
    }

    @Test func yamlFeaturesThatHideMeaningAreRefused() {
        #expect(errors("version: 1\nx: &a 1\n").contains { $0.contains("anchors") })
        #expect(errors("version: 1\nrules:\n  - &r {name: d, decide: deny}\n  - *r\n").contains { $0.contains("anchors") })
        #expect(errors("version: !!int 1\n").contains { $0.contains("tags") })
        #expect(errors("version: 1\n---\nversion: 1\n").contains { $0.contains("one YAML document") })
        #expect(errors("? [a, b]\n: 1\n").contains { $0.contains("mapping key must be a plain word") })
    }

    @Test func syntaxErrorsAreLocated() {
        let e = errors("version: 1\nrules:\n  - name: d\n   decide: deny\n\tbad\n")
        #expect(e.count == 1)
        #expect(e[0].hasPrefix("p.yaml:4:"))
        #expect(e[0].contains("YAML syntax error"))
        #expect(errors("") == ["p.yaml:1:1: error: the file is empty; a policy starts with `version: 1`"])
        #expect(errors("# only a comment\n").first?.contains("no YAML document") == true)
    }

    @Test func valuesAreValidated() {
        let e = errors("""
            version: 1
            rules:
              - name: a
                match:
                  digest: sha256:abc
                  added_capabilities: [CAP_NOPE]
                  host_namespaces: [pidd]
                  host_mounts: [relative/path]
                  isolation_request: [vm]
                decide: deny
              - name: "bad name!"
                decide: deny
            """)
        #expect(e.contains { $0.hasPrefix("p.yaml:5:15: error: match.digest 'sha256:abc' is not a digest") })
        #expect(e.contains { $0.hasPrefix("p.yaml:6:28: error: unknown capability 'CAP_NOPE'") })
        #expect(e.contains { $0.hasPrefix("p.yaml:7:25: error: unknown namespace type 'pidd'") })
        #expect(e.contains { $0.hasPrefix("p.yaml:8:21: error: match.host_mounts entries are absolute host paths") })
        #expect(e.contains { $0.hasPrefix("p.yaml:9:27: error: match.isolation_request entries are none, namespace or microvm") })
        #expect(e.contains { $0.hasPrefix("p.yaml:11:11: error: rule name 'bad name!' may use only") })
    }

    @Test func aHypervisorURIMustBeAURI() throws {
        let e = #expect(throws: PolicyLoadError.self) {
            try Policy.parse("version: 1\nrules:\n  - name: default\n    decide: microvm\n    microvm: {hypervisor_uri: system}\n", source: "p.yaml")
        }
        #expect(e?.description.contains("p.yaml:5:31: error: microvm.hypervisor_uri must be a libvirt connection URI") == true, "\(e?.description ?? "")")
    }

    @Test func settingsAreReadAndMerged() throws {
        let p = try Policy.parse("""
            version: 1
            defaults:
              namespace: {user_namespace: true, capability_ceiling: []}
              microvm: {vcpus: 2, memory: 1Gi, hypervisor: libvirt, hypervisor_uri: "qemu:///system"}
              resources: {memory: 4Gi, cpus: 1.5, pids: 100}
            rules:
              - name: default
                decide: microvm
                allow_lower: true
                microvm: {memory: 512Mi, kernel: /boot/vmlinux}
                namespace: {readonly_rootfs: true, seccomp: /etc/bulkhead/strict.json}
                resources: {pids: 50}
            """, source: "p.yaml")
        let vm = p.decide(DeploymentRequest())
        #expect(vm.settings?.microvm == MicroVMSettings(vcpus: 2, memory: 512 << 20, hypervisor: .libvirt, kernel: "/boot/vmlinux",
                                                        hypervisorURI: "qemu:///system"))
        #expect(vm.settings?.resources == ResourceCeilings(memory: 4 << 30, milliCPUs: 1500, pids: 50))
        let ns = p.decide(DeploymentRequest(requestedIsolation: .namespace))
        #expect(ns.granted == .namespace)
        #expect(ns.settings?.namespace == NamespaceSettings(seccomp: "/etc/bulkhead/strict.json", userNamespace: true,
                                                            readonlyRootfs: true, capabilityCeiling: []))
    }

    @Test func builtInPolicyIsValidAndEqualToPoliciesDefault() throws {
        let p = Policy.builtIn
        #expect(p.warnings.isEmpty)
        let file = try String(contentsOfFile: repoRoot + "/policies/default.yaml", encoding: .utf8)
        #expect(file == Policy.builtInText + "\n")
    }
}
