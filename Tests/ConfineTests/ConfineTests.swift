import Confine
import Foundation
import OCIRuntime
import Testing

/// Spec → capability sets and spec → seccomp filter, without loading anything into this process (the tests
/// in RuntimeTests/ConfinementTests.swift check what real containers end up with).
struct CapabilityPlanTests {
    @Test func namesResolveToTheKernelsNumbers() throws {
        let plan = try CapabilityPlan.resolve(Spec.Capabilities(
            bounding: ["CAP_CHOWN", "cap_kill", "CAP_NET_BIND_SERVICE"], effective: ["CAP_KILL"],
            inheritable: ["CAP_KILL"], permitted: ["CAP_KILL", "CAP_CHOWN"], ambient: ["CAP_KILL", "CAP_CHOWN"]))
        #expect(plan.bounding.bits == 1 << 0 | 1 << 5 | 1 << 10)
        #expect(plan.effective.bits == 1 << 5)
        #expect(plan.permitted.bits == 1 << 0 | 1 << 5)
        #expect(plan.inheritable.bits == 1 << 5)
        // CAP_CHOWN is ambient in the spec but not inheritable: the kernel cannot raise it; it is left out.
        #expect(plan.ambient.bits == 1 << 5)
        #expect(plan.ambientSkipped == ["CAP_CHOWN"])
    }

    @Test func noCapabilitiesSectionMeansNone() throws {
        let plan = try CapabilityPlan.resolve(nil)
        #expect(plan == CapabilityPlan())
        #expect(plan.bounding.bits == 0 && plan.permitted.bits == 0)
    }

    @Test(arguments: [("bounding", 3, "CAP_BOGUS"), ("ambient", 0, "NET_ADMIN"), ("permitted", 1, "CAP_"), ("effective", 0, "12")])
    func anUnknownNameIsRefusedNamingTheFieldAndValue(_ set: String, _ index: Int, _ bad: String) throws {
        var names = ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"]
        names.insert(bad, at: min(index, names.count))
        var caps = Spec.Capabilities()
        switch set {
        case "bounding": caps.bounding = names
        case "ambient": caps.ambient = names
        case "permitted": caps.permitted = names
        default: caps.effective = names; caps.permitted = ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"]
        }
        let error = #expect(throws: ConfineError.self) { try CapabilityPlan.resolve(caps) }
        #expect(error?.message.contains("process.capabilities.\(set)[\(index)]") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("\"\(bad)\"") == true, "\(error?.message ?? "")")
    }

    @Test func effectiveOutsidePermittedIsRefused() throws {
        let error = #expect(throws: ConfineError.self) {
            try CapabilityPlan.resolve(Spec.Capabilities(effective: ["CAP_KILL"], permitted: []))
        }
        #expect(error?.message.contains("CAP_KILL is not in process.capabilities.permitted") == true)
    }

    @Test func namesRoundTrip() throws {
        #expect(CapabilityPlan.name(of: 21) == "CAP_SYS_ADMIN")
        let all = CapabilityPlan.allNames
        #expect(all.count == CapabilityPlan.kernelLastCapability + 1)
        for (i, name) in all.enumerated() { #expect(try CapabilityPlan.number(of: name, field: "x") == i) }
    }
}

struct SeccompFilterTests {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    @Test func theCompiledInProfileIsPoliciesSeccompDefaultJSON() throws {
        let file = try String(contentsOfFile: Self.packageRoot + "/policies/seccomp/default.json", encoding: .utf8)
        #expect(DefaultSeccomp.profileText + "\n" == file, "run scripts/embed-seccomp-profile after editing policies/seccomp/default.json")
        let fromFile = try DefaultSeccomp.load(path: Self.packageRoot + "/policies/seccomp/default.json")
        #expect(fromFile == DefaultSeccomp.profile)
    }

    @Test func theDefaultProfileBuildsAndRefusesWhatItShould() throws {
        let profile = DefaultSeccomp.profile
        #expect(profile.defaultAction == "SCMP_ACT_ERRNO" && profile.defaultErrnoRet == 1)
        let allowed = Set((profile.syscalls ?? []).filter { $0.action == "SCMP_ACT_ALLOW" && $0.args == nil }.flatMap(\.names))
        for refused in ["keyctl", "add_key", "request_key", "bpf", "perf_event_open", "kexec_load", "kexec_file_load",
                        "open_by_handle_at", "init_module", "finit_module", "delete_module", "mount", "umount2",
                        "unshare", "setns", "ptrace", "clone", "clone3", "reboot", "pivot_root", "io_uring_setup"] {
            #expect(!allowed.contains(refused), "\(refused) is allowed unconditionally")
        }
        for ordinary in ["read", "write", "openat", "execve", "exit_group", "futex", "mmap", "rt_sigaction", "socket"] {
            #expect(allowed.contains(ordinary), "\(ordinary) is not allowed")
        }
        let filter = try SeccompFilter.build(profile)
        #expect(filter.ignoredSyscalls.isEmpty, "libseccomp does not know \(filter.ignoredSyscalls)")
        #if arch(x86_64)
        // The kernel here can only report x86_64, x86 and x32: the ARM entries of the portable profile are left out.
        #expect(filter.skippedArchitectures == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        #endif
        #expect(filter.ruleCount > 300)
    }

    @Test func capabilitiesWidenTheDefaultProfileAsDockerDoes() throws {
        let plain = Set(DefaultSeccomp.profile.syscalls!.filter { $0.action == "SCMP_ACT_ALLOW" && $0.args == nil }.flatMap(\.names))
        let admin = DefaultSeccomp.profile(for: Spec.Capabilities(bounding: ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]))
        let widened = Set(admin.syscalls!.filter { $0.action == "SCMP_ACT_ALLOW" && $0.args == nil }.flatMap(\.names))
        for call in ["mount", "umount2", "unshare", "setns", "clone", "clone3", "ptrace"] {
            #expect(!plain.contains(call) && widened.contains(call), "\(call)")
        }
        for call in ["keyctl", "add_key", "request_key", "kexec_load", "init_module"] { #expect(!widened.contains(call)) }
        // clone3's ENOSYS and the flag-checked clone give way to the plain allow (libseccomp refuses both at once).
        #expect(!admin.syscalls!.contains { $0.action != "SCMP_ACT_ALLOW" && $0.names.contains("clone3") })
        _ = try SeccompFilter.build(admin)
        #expect(DefaultSeccomp.profile(for: nil) == DefaultSeccomp.profile)
    }

    func refusal(_ profile: Spec.Seccomp) -> String {
        do { _ = try SeccompFilter.build(profile); return "" } catch { return "\(error)" }
    }

    @Test func badInputIsRefusedNamingTheFieldAndValue() throws {
        let rule = { (names: [String], action: String) in Spec.Seccomp.Syscall(names: names, action: action) }
        var p = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", syscalls: [rule(["getpid"], "SCMP_ACT_ERRNO"), rule(["read", "nosuchcall"], "SCMP_ACT_KILL")])
        var m = refusal(p)
        #expect(m.contains("linux.seccomp.syscalls[1].names[1]") && m.contains("\"nosuchcall\""), "\(m)")

        p = Spec.Seccomp(defaultAction: "SCMP_ACT_BOGUS")
        m = refusal(p)
        #expect(m.contains("linux.seccomp.defaultAction") && m.contains("SCMP_ACT_BOGUS"), "\(m)")

        p = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"])
        m = refusal(p)
        #expect(m.contains("linux.seccomp.architectures[1]") && m.contains("SCMP_ARCH_VAX"), "\(m)")

        p = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", flags: ["SECCOMP_FILTER_FLAG_NOPE"])
        m = refusal(p)
        #expect(m.contains("linux.seccomp.flags[0]") && m.contains("SECCOMP_FILTER_FLAG_NOPE"), "\(m)")

        p = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", syscalls: [Spec.Seccomp.Syscall(names: ["personality"], action: "SCMP_ACT_ERRNO",
                                                                                          args: [.init(index: 0, value: 1, op: "SCMP_CMP_ALMOST")])])
        m = refusal(p)
        #expect(m.contains("linux.seccomp.syscalls[0].args[0].op") && m.contains("SCMP_CMP_ALMOST"), "\(m)")

        p = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", syscalls: [Spec.Seccomp.Syscall(names: ["personality"], action: "SCMP_ACT_ERRNO",
                                                                                          args: [.init(index: 6, value: 1, op: "SCMP_CMP_EQ")])])
        #expect(refusal(p).contains("linux.seccomp.syscalls[0].args[0].index 6"))

        p = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", syscalls: [rule(["getpid"], "SCMP_ACT_NOTIFY")])
        #expect(refusal(p).contains("linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY"))
        p = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW")
        p.listenerPath = "/run/agent.sock"
        #expect(refusal(p).contains("linux.seccomp.listenerPath"))
    }

    @Test func anUnknownNameInAnAllowRuleUnderARefusingDefaultIsLeftOut() throws {
        let p = Spec.Seccomp(defaultAction: "SCMP_ACT_ERRNO", syscalls: [Spec.Seccomp.Syscall(names: ["read", "syscall_from_the_future"], action: "SCMP_ACT_ALLOW")])
        let filter = try SeccompFilter.build(p)
        #expect(filter.ignoredSyscalls == ["syscall_from_the_future"])
        #expect(filter.ruleCount == 1)
    }

    @Test func everyActionComparisonAndFlagBuilds() throws {
        var rules: [Spec.Seccomp.Syscall] = []
        for (i, action) in ["SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
                            "SCMP_ACT_TRACE", "SCMP_ACT_LOG"].enumerated() {
            rules.append(.init(names: [["getpid", "getppid", "getuid", "getgid", "geteuid", "getegid", "gettid"][i]], action: action, errnoRet: 7))
        }
        for (i, op) in ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT"].enumerated() {
            rules.append(.init(names: ["personality"], action: "SCMP_ACT_ERRNO", errnoRet: UInt32(10 + i), args: [.init(index: 0, value: UInt64(100 * i), op: op)]))
        }
        rules.append(.init(names: ["personality"], action: "SCMP_ACT_ERRNO", errnoRet: 30,
                           args: [.init(index: 0, value: 0xff00, valueTwo: 0x5500, op: "SCMP_CMP_MASKED_EQ")]))
        // Two conditions on one argument: one rule per condition.
        rules.append(.init(names: ["kill"], action: "SCMP_ACT_ERRNO", args: [.init(index: 1, value: 9, op: "SCMP_CMP_EQ"), .init(index: 1, value: 15, op: "SCMP_CMP_EQ")]))
        let p = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
                             flags: ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"], syscalls: rules)
        let filter = try SeccompFilter.build(p)
        #expect(filter.ruleCount == 7 + 6 + 1 + 2)
    }

    @Test func aProfileFileWithAWrongTypeNamesThePath() throws {
        let path = NSTemporaryDirectory() + "bh-seccomp-\(getpid()).json"
        defer { unlink(path) }
        try #"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":"one"}]}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let error = #expect(throws: ConfineError.self) { try DefaultSeccomp.load(path: path) }
        #expect(error?.message.contains("syscalls[0].errnoRet") == true, "\(error?.message ?? "")")
    }
}
