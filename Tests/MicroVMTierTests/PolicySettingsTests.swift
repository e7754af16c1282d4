import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The policy's microVM settings and resource ceilings reach the VM: guest memory and vCPUs come from the rule.
/// (The `hypervisor` setting — the kvm driver, and an unusable /dev/kvm as an error naming the rule — is covered
/// by KVMDriverTests and DriverSelectionTests.)
@Suite(.serialized) struct MicroVMPolicySettingsTests {
    static func writePolicy(_ s: Tier.Scratch, _ microvm: String) throws -> String {
        try Tier.writePolicy(s, rule: "sized-vm", microvm: microvm, extra: "    resources:\n      pids: 321")
    }

    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func guestMemoryAndVCPUsComeFromThePolicy() throws {
        let s = try Tier.Scratch("sized", args: ["sh", "-c", "busybox grep MemTotal /proc/meminfo; busybox nproc"])
        let policy = try Self.writePolicy(s, "      vcpus: 2\n      memory: 160Mi")
        let r = try Tier.run(s.globals + ["run", "--policy", policy, "--audit-log", s.dir + "/audit.jsonl",
                                          "--tenant", "acme", "-b", s.bundle, "sized"])
        #expect(r.code == 0, "stderr: \(r.stderr)")
        let lines = r.text.split(separator: "\n").map(String.init)
        let kB = lines.first.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) } ?? 0
        // MemTotal is the guest memory less what the kernel reserves: between 100 MiB and 160 MiB.
        #expect(kB > 100 * 1024 && kB <= 160 * 1024, "guest MemTotal \(kB) kB for a 160 MiB VM: \(r.text)")
        #expect(lines.dropFirst().first == "2", "guest nproc: \(r.text)")
    }

    /// The policy's `hypervisor_uri` is the libvirt connection the backend opens (none runs at this address here,
    /// so the error names it); `--hypervisor-uri` overrides it.
    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(5)))
    func thePolicysHypervisorURIIsUsed() throws {
        let s = try Tier.Scratch("uri", args: ["true"])
        let policy = try Self.writePolicy(s, "      hypervisor_uri: \"qemu+unix:///system?socket=\(s.dir)/no-libvirtd.sock\"")
        let r = try Tier.run(s.globals + ["run", "--policy", policy, "--audit-log", s.dir + "/audit.jsonl",
                                          "--tenant", "acme", "-b", s.bundle, "uri"])
        #expect(r.code != 0)
        #expect(r.stderr.contains("\(s.dir)/no-libvirtd.sock"), "stderr: \(r.stderr)")
        #expect(try Tier.run(s.globals + ["list", "-q"]).text.isEmpty, "the failed container is left behind")
    }
}
