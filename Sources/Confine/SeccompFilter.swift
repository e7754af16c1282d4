import CSeccomp
import CShims
import LinuxOS
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A seccomp filter built by libseccomp from `linux.seccomp`, ready to load.
///
/// Built before the container reports `ready` (so bad input fails `create`), loaded last, just before exec.
/// Every refusal names the field and the value (`linux.seccomp.syscalls[2].names[0]: …`).
///
/// Choices worth knowing:
/// - `no_new_privs` is set only when the spec says so (libseccomp's own default of setting it on load is
///   turned off); without it, loading needs CAP_SYS_ADMIN, so the caller loads the filter before it drops
///   capabilities (runc's order).
/// - A syscall name libseccomp does not know is refused, except in a rule that only *allows* (ALLOW or LOG)
///   under a default action that refuses: leaving such a rule out cannot grant anything, and profiles written
///   for newer kernels (containers-common, moby) list names an older libseccomp lacks. Those names are
///   reported in `ignoredSyscalls`. runc ignores every unknown name; a refusing rule that silently disappeared
///   would weaken the profile, so Bulkhead refuses it.
/// - A rule whose action equals the default action is redundant and skipped (libseccomp refuses it).
/// - Several conditions on the same argument become one rule per condition (libseccomp cannot AND two
///   conditions on one argument; runc does the same).
/// - Seccomp user notification (`listenerPath`, `SCMP_ACT_NOTIFY`) is not implemented and is refused.
/// - An architecture the running kernel can never report (aarch64 on an x86_64 host) is validated but not added:
///   its rules could never match, and each extra architecture multiplies libseccomp's work (the default
///   profile's five architectures cost ≈2–3× the build and load time of the three an x86_64 kernel runs).
///   A syscall from an architecture missing from the filter meets libseccomp's bad-architecture action (kill).
public final class SeccompFilter {
    let context: scmp_filter_ctx
    /// Names from allow-only rules that libseccomp does not know and that were left out.
    public private(set) var ignoredSyscalls: [String] = []
    /// The number of rules added to the filter.
    public private(set) var ruleCount = 0
    /// Architectures of the profile that this kernel cannot run, left out of the filter.
    public private(set) var skippedArchitectures: [String] = []

    init(context: scmp_filter_ctx) { self.context = context }
    deinit { seccomp_release(context) }

    static let actionAllow: UInt32 = 0x7fff_0000
    static let actionLog: UInt32 = 0x7ffc_0000

    /// The libseccomp action for an OCI action name, or an error naming `field`.
    /// ERRNO and TRACE without `errnoRet` return EPERM (runc's rule: a rule does not inherit `defaultErrnoRet`).
    public static func action(_ name: String, errnoRet: UInt32?, field: String) throws -> UInt32 {
        let defaultErrno = UInt32(EPERM)
        switch name {
        case "SCMP_ACT_ALLOW": return actionAllow
        case "SCMP_ACT_ERRNO": return 0x0005_0000 | ((errnoRet ?? defaultErrno) & 0xffff)
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return 0x0000_0000
        case "SCMP_ACT_KILL_PROCESS": return 0x8000_0000
        case "SCMP_ACT_TRAP": return 0x0003_0000
        case "SCMP_ACT_TRACE": return 0x7ff0_0000 | ((errnoRet ?? defaultErrno) & 0xffff)
        case "SCMP_ACT_LOG": return actionLog
        case "SCMP_ACT_NOTIFY":
            throw ConfineError("\(field): SCMP_ACT_NOTIFY (seccomp user notification) is not supported by Bulkhead; use another action")
        default:
            throw ConfineError("\(field): unknown seccomp action \"\(name)\" (use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG)")
        }
    }

    static func isPermissive(_ action: UInt32) -> Bool { action == actionAllow || action == actionLog }

    static func compare(_ op: String, field: String) throws -> scmp_compare {
        switch op {
        case "SCMP_CMP_NE": return SCMP_CMP_NE
        case "SCMP_CMP_LT": return SCMP_CMP_LT
        case "SCMP_CMP_LE": return SCMP_CMP_LE
        case "SCMP_CMP_EQ": return SCMP_CMP_EQ
        case "SCMP_CMP_GE": return SCMP_CMP_GE
        case "SCMP_CMP_GT": return SCMP_CMP_GT
        case "SCMP_CMP_MASKED_EQ": return SCMP_CMP_MASKED_EQ
        default:
            throw ConfineError("\(field): unknown comparison \"\(op)\" (use SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT or SCMP_CMP_MASKED_EQ)")
        }
    }

    /// libseccomp's architecture token for an OCI name (`SCMP_ARCH_X86_64` → x86_64), or an error naming `field`.
    static func architecture(_ name: String, field: String) throws -> UInt32 {
        guard name.hasPrefix("SCMP_ARCH_") else {
            throw ConfineError("\(field): unknown architecture \"\(name)\" (architectures look like SCMP_ARCH_X86_64)")
        }
        let token = seccomp_arch_resolve_name(String(name.dropFirst(10)).lowercased())
        guard token != 0 else { throw ConfineError("\(field): unknown architecture \"\(name)\" (libseccomp does not know it)") }
        return token
    }

    /// What a native architecture's kernel can run (its compat ABIs), by libseccomp name.
    static let runnable: [String: [String]] = [
        "x86_64": ["x86_64", "x86", "x32"], "aarch64": ["aarch64", "arm"], "ppc64le": ["ppc64le", "ppc64", "ppc"],
        "ppc64": ["ppc64", "ppc"], "s390x": ["s390x", "s390"], "riscv64": ["riscv64"],
        "mips64": ["mips64", "mips64n32", "mips"], "mipsel64": ["mipsel64", "mipsel64n32", "mipsel"],
    ]

    /// The architecture tokens the running kernel can report, or nil when the native architecture is not in the
    /// table (then nothing is left out).
    static let runnableTokens: Set<UInt32>? = {
        let native = seccomp_arch_native()
        guard let entry = runnable.first(where: { seccomp_arch_resolve_name($0.key) == native }) else { return nil }
        return Set(entry.value.map { seccomp_arch_resolve_name($0) })
    }()

    /// Builds the filter for `profile`. `field` is where the profile came from, for messages.
    public static func build(_ profile: Spec.Seccomp, field: String = "linux.seccomp") throws -> SeccompFilter {
        if let listener = profile.listenerPath, !listener.isEmpty {
            throw ConfineError("\(field).listenerPath \"\(listener)\": seccomp user notification is not supported by Bulkhead; remove listenerPath and any SCMP_ACT_NOTIFY rule")
        }
        let defaultAction = try action(profile.defaultAction, errnoRet: profile.defaultErrnoRet,
                                       field: "\(field).defaultAction")
        guard let ctx = seccomp_init(defaultAction) else {
            throw ConfineError("\(field): libseccomp could not create a filter with default action \(profile.defaultAction)")
        }
        let filter = SeccompFilter(context: ctx)
        func attr(_ a: scmp_filter_attr, _ v: UInt32, _ what: String) throws {
            let r = seccomp_attr_set(ctx, a, v)
            if r != 0 { throw ConfineError("\(what): \(String(cString: strerror(-r)))") }
        }
        // no_new_privs only when the spec asks for it (the caller sets it).
        try attr(SCMP_FLTATR_CTL_NNP, 0, "\(field): turn off libseccomp's no_new_privs on load")
        for (i, flag) in (profile.flags ?? []).enumerated() {
            let f = "\(field).flags[\(i)]"
            switch flag {
            case "SECCOMP_FILTER_FLAG_TSYNC": try attr(SCMP_FLTATR_CTL_TSYNC, 1, "\(f) \(flag)")
            case "SECCOMP_FILTER_FLAG_LOG": try attr(SCMP_FLTATR_CTL_LOG, 1, "\(f) \(flag)")
            case "SECCOMP_FILTER_FLAG_SPEC_ALLOW": try attr(SCMP_FLTATR_CTL_SSB, 1, "\(f) \(flag)")
            default:
                throw ConfineError("\(f): unknown or unsupported seccomp flag \"\(flag)\" (supported: SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW)")
            }
        }
        for (i, arch) in (profile.architectures ?? []).enumerated() {
            let token = try architecture(arch, field: "\(field).architectures[\(i)]")
            if let runnable = runnableTokens, !runnable.contains(token) { filter.skippedArchitectures.append(arch); continue }
            let r = seccomp_arch_add(ctx, token)
            if r != 0 && r != -EEXIST {
                throw ConfineError("\(field).architectures[\(i)] \"\(arch)\": \(String(cString: strerror(-r)))")
            }
        }
        for (i, rule) in (profile.syscalls ?? []).enumerated() {
            let rf = "\(field).syscalls[\(i)]"
            let act = try action(rule.action, errnoRet: rule.errnoRet, field: "\(rf).action")
            var conditions: [scmp_arg_cmp] = []
            for (j, arg) in (rule.args ?? []).enumerated() {
                let af = "\(rf).args[\(j)]"
                guard arg.index < 6 else { throw ConfineError("\(af).index \(arg.index): a syscall has arguments 0 to 5") }
                let op = try compare(arg.op, field: "\(af).op")
                conditions.append(scmp_arg_cmp(arg: arg.index, op: op, datum_a: arg.value, datum_b: arg.valueTwo ?? 0))
            }
            if rule.names.isEmpty { throw ConfineError("\(rf).names is empty: name the syscalls the rule applies to") }
            // One rule per condition when an argument is compared twice (libseccomp ANDs only distinct arguments).
            let indices = conditions.map(\.arg)
            let groups: [[scmp_arg_cmp]] = Set(indices).count == indices.count ? [conditions] : conditions.map { [$0] }
            for (k, name) in rule.names.enumerated() {
                let nf = "\(rf).names[\(k)]"
                let number = name.isEmpty ? __NR_SCMP_ERROR : seccomp_syscall_resolve_name(name)
                if number == __NR_SCMP_ERROR {
                    if isPermissive(act) && !isPermissive(defaultAction) { filter.ignoredSyscalls.append(name); continue }
                    throw ConfineError("\(nf): unknown syscall \"\(name)\" (libseccomp \(libseccompVersion) does not know it; fix the name or remove it from the rule)")
                }
                if act == defaultAction { continue }
                for group in groups {
                    let r = group.withUnsafeBufferPointer { seccomp_rule_add_array(ctx, act, number, UInt32($0.count), $0.baseAddress) }
                    if r != 0 {
                        throw ConfineError("\(nf) \"\(name)\": libseccomp refused the rule: \(String(cString: strerror(-r)))")
                    }
                    filter.ruleCount += 1
                }
            }
        }
        return filter
    }

    /// Loads the filter on the calling thread (and every thread with TSYNC).
    public func load() throws {
        let r = seccomp_load(context)
        if r != 0 {
            throw ConfineError("load the seccomp filter: \(String(cString: strerror(-r)))"
                               + (r == -EACCES || r == -EPERM ? " (without no_new_privs, loading needs CAP_SYS_ADMIN)" : ""))
        }
    }

    /// The filter as classic BPF (`struct sock_filter` array bytes), for a loader that cannot call libseccomp: the
    /// microVM guest agent builds it in Swift and its C clone/exec child installs it with prctl(PR_SET_SECCOMP).
    public func exportBPF() throws -> [UInt8] {
        let fd = bh_memfd("seccomp-bpf")
        guard fd >= 0 else { throw ConfineError("memfd_create for the seccomp filter: \(String(cString: strerror(errno)))") }
        let file = FileDescriptor(adopting: fd)
        let r = seccomp_export_bpf(context, fd)
        if r != 0 { throw ConfineError("export the seccomp filter: \(String(cString: strerror(-r)))") }
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw ConfineError("rewind the exported seccomp filter: \(String(cString: strerror(errno)))") }
        return try file.readAll(limit: 1 << 20)
    }

    /// "2.5.4"
    public static var libseccompVersion: String {
        guard let v = seccomp_version() else { return "?" }
        return "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.micro)"
    }
}
