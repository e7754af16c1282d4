import Testing
import Foundation
@testable import Policy

@Suite struct EngineTests {
    static let policy = try! Policy.parse("""
        version: 1
        rules:
          - name: deny-sockets
            match: {host_mounts: ["/run/**.sock", "/var/run/**.sock"]}
            decide: deny
            reason: no engine sockets
          - name: acme
            match: {tenant: "acme-*"}
            decide: microvm
          - name: beta
            match: {tenant: beta}
            decide: microvm
            allow_lower: true
          - name: ops
            match:
              has_tenant: false
              image: "registry.example.com/ops/**"
              annotations: {team: "sre-*"}
            decide: namespace
          - name: default
            decide: microvm
        """, source: "t.yaml")

    func decide(_ r: DeploymentRequest) -> Decision { Self.policy.decide(r) }

    @Test func firstMatchWinsAndNamesTheRule() {
        let d = decide(DeploymentRequest(tenant: "acme-1"))
        #expect(d.outcome == .run && d.granted == .microvm && d.rule == "acme")
        #expect(d.ruleLocation.description == "t.yaml:7:5")
        #expect(d.conditions == [ConditionResult(key: "tenant", matched: true, detail: "tenant 'acme-1' matches 'acme-*'",
                                                 location: SourceLocation(file: "t.yaml", line: 8, column: 13))])
    }

    @Test func raisingIsAlwaysHonoured() {
        let d = decide(DeploymentRequest(image: "registry.example.com/ops/api:1", annotations: ["team": "sre-core"],
                                         requestedIsolation: .microvm))
        #expect(d.rule == "ops" && d.ruleVerdict == .namespace && d.granted == .microvm)
        #expect(d.summary.contains("raised to microvm on the deployer's request"))
    }

    @Test func loweringNeedsAllowLowerElseItIsRefusedNotDowngraded() {
        let refused = decide(DeploymentRequest(tenant: "acme-1", requestedIsolation: .namespace))
        #expect(refused.outcome == .refused && refused.granted == nil && refused.rule == "acme")
        let lowered = decide(DeploymentRequest(tenant: "beta", requestedIsolation: .namespace))
        #expect(lowered.outcome == .run && lowered.granted == .namespace && lowered.rule == "beta")
        #expect(lowered.summary.contains("allow_lower"))
    }

    @Test func denyIgnoresRequests() {
        let priv = Privileges(hostMounts: ["/var/run/docker.sock"])
        for req: Tier? in [nil, .namespace, .microvm] {
            let d = decide(DeploymentRequest(tenant: "beta", requestedIsolation: req, privileges: priv))
            #expect(d.outcome == .deny && d.granted == nil && d.rule == "deny-sockets")
            #expect(d.summary.contains("no engine sockets"))
        }
    }

    @Test func allConditionsMustHold() {
        // Missing the annotation: falls through to the default.
        let d = decide(DeploymentRequest(image: "registry.example.com/ops/api:1"))
        #expect(d.rule == "default")
        let explained = Self.policy.decide(DeploymentRequest(image: "registry.example.com/ops/api:1"), explain: true)
        let ops = explained.trace!.first { $0.rule == "ops" }!
        #expect(!ops.matched)
        #expect(ops.conditions.map(\.matched) == [true, true, false])
        #expect(ops.conditions[2].detail == "team is not set")
        #expect(explained.trace!.count == 5)
    }

    @Test func tenantResolutionOrder() {
        let a = ["io.kubernetes.pod.namespace": "k8s-pod", "io.kubernetes.cri.sandbox-namespace": "k8s-sandbox"]
        #expect(DeploymentRequest.resolveTenant(explicit: nil, annotations: a) == "k8s-sandbox")
        #expect(DeploymentRequest.resolveTenant(explicit: nil, annotations: a.merging(["bulkhead.tenant": "bh"]) { $1 }) == "bh")
        #expect(DeploymentRequest.resolveTenant(explicit: "cli", annotations: a) == "cli")
        #expect(DeploymentRequest.resolveTenant(explicit: "", annotations: a) == nil)
        #expect(DeploymentRequest.resolveTenant(explicit: nil, annotations: ["bulkhead.tenant": ""]) == nil)
    }

    @Test func isolationRequestResolution() throws {
        #expect(try DeploymentRequest.resolveIsolation(explicit: nil, annotations: ["bulkhead.isolation": "microvm"]) == .microvm)
        #expect(try DeploymentRequest.resolveIsolation(explicit: .namespace, annotations: ["bulkhead.isolation": "microvm"]) == .microvm)
        #expect(try DeploymentRequest.resolveIsolation(explicit: .microvm, annotations: ["bulkhead.isolation": "namespace"]) == .microvm)
        #expect(throws: PolicyRequestError.self) { try DeploymentRequest.resolveIsolation(explicit: nil, annotations: ["bulkhead.isolation": "vm"]) }
    }

    @Test func imageNamesAreNormalised() {
        #expect(ImageName(parsing: "busybox").canonical == "docker.io/library/busybox:latest")
        #expect(ImageName(parsing: "acme/app:1").canonical == "docker.io/acme/app:1")
        #expect(ImageName(parsing: "localhost:5000/app").canonical == "localhost:5000/app:latest")
        #expect(ImageName(parsing: "quay.io/org/app@sha256:abc").canonical == "quay.io/org/app")
        #expect(ImageName(parsing: "quay.io/org/app:v2@sha256:abc").canonical == "quay.io/org/app:v2")
        #expect(ImageName(parsing: "index.docker.io/library/nginx:1").canonical == "docker.io/library/nginx:1")
    }

    @Test func globs() {
        #expect(Glob("docker.io/*/app:*").matches("docker.io/acme/app:1"))
        #expect(!Glob("docker.io/*:*").matches("docker.io/acme/app:1"))
        #expect(Glob("docker.io/**").matches("docker.io/acme/app:1"))
        #expect(Glob("/run/**.sock").matches("/run/containerd/containerd.sock"))
        #expect(Glob("/run/**.sock").matches("/run/x.sock"))
        #expect(!Glob("/run/**.sock").matches("/run/x.socks"))
        #expect(Glob("a?c").matches("abc") && !Glob("a?c").matches("a/c"))
        #expect(Glob("a\\*").matches("a*") && !Glob("a\\*").matches("ab"))
        #expect(Glob("").matches("") && !Glob("").matches("x"))
        // No exponential blow-up: 60 stars against a long non-matching subject finishes at once.
        let hard = Glob(String(repeating: "*a", count: 30) + "b")
        #expect(!hard.matches(String(repeating: "a", count: 5000)))
        let long = Glob(String(repeating: "*a", count: 50) + "**b")
        #expect(long.matches(String(repeating: "a", count: 200) + "b"))
        #expect(!long.matches(String(repeating: "a", count: 200)))
    }

    @Test func privilegesFromASpec() throws {
        let spec = """
            {"ociVersion":"1.2.0",
             "process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_NET_ADMIN"],"effective":["CAP_CHOWN"],
                                        "ambient":["cap_sys_admin"]},"noNewPrivileges":false},
             "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                       {"destination":"/sock","type":"bind","source":"/var/./run//docker.sock","options":["rbind"]},
                       {"destination":"/data","source":"/srv/data","options":["bind","ro"]},
                       {"destination":"/tmp","type":"tmpfs","source":"tmpfs"}],
             "linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"},{"type":"mount"},
                                    {"type":"ipc"},{"type":"uts"},{"type":"cgroup"}],
                      "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}],
                      "resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"access":"rwm"}]}},
             "annotations":{"bulkhead.tenant":"acme","other":"x"}}
            """
        let (p, a) = try SpecPrivileges.read(configJSON: Array(spec.utf8))
        #expect(p.addedCapabilities == ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
        #expect(p.privileged)
        #expect(p.noNewPrivileges == false)
        #expect(p.hostNamespaces == ["network", "user"])
        #expect(p.hostMounts == ["/var/run/docker.sock", "/srv/data"])
        #expect(p.devices == ["/dev/fuse", "*"])
        #expect(a == ["bulkhead.tenant": "acme", "other": "x"])

        let minimal = try SpecPrivileges.read(configJSON: Array(#"{"ociVersion":"1.2.0"}"#.utf8)).privileges
        #expect(minimal.hostNamespaces == Privileges.namespaceTypes)
        #expect(!minimal.privileged && minimal.addedCapabilities.isEmpty && minimal.noNewPrivileges == false)

        #expect(throws: PolicyRequestError.self) { try SpecPrivileges.read(configJSON: Array("{".utf8)) }
        #expect(throws: PolicyRequestError.self) { try SpecPrivileges.read(configJSON: Array(#"{"process":{"noNewPrivileges":"yes"}}"#.utf8)) }
    }

    @Test func devicesAllowAllNeedsTheLastRuleToAllow() throws {
        let spec = #"{"linux":{"resources":{"devices":[{"allow":true,"access":"rwm"},{"allow":false,"access":"rwm"}]}}}"#
        let p = try SpecPrivileges.read(configJSON: Array(spec.utf8)).privileges
        #expect(p.devices.isEmpty && !p.privileged)
    }

    @Test func pathsAreNormalised() {
        #expect(SpecPrivileges.normalisePath("/var/./run//docker.sock") == "/var/run/docker.sock")
        #expect(SpecPrivileges.normalisePath("/srv/../etc/shadow/") == "/etc/shadow")
        #expect(SpecPrivileges.normalisePath("/../..") == "/")
    }
}
