import FoundationEssentials
import LinuxOS
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Bulkhead's default seccomp profile (policies/seccomp/default.json, compiled in): refuse by default with
/// EPERM; allow the ordinary syscall set; `clone` only without namespace flags, `clone3` answered with ENOSYS
/// (so the C library falls back to `clone`, whose flags can be checked); keyrings (`keyctl`, `add_key`,
/// `request_key`), `bpf`, `perf_event_open`, `kexec_*`, `open_by_handle_at`, module loading, `mount`,
/// `umount2`, `unshare`, `setns`, `ptrace`, `reboot`, clock setting and the like are refused.
///
/// As Docker does, a container that holds a capability gets the syscalls that capability exists for
/// (`profile(for:)`): CAP_SYS_ADMIN brings mount, unshare, setns, any clone flags…; CAP_SYS_PTRACE brings ptrace.
/// The keyring syscalls stay refused whatever the capabilities.
public enum DefaultSeccomp {
    /// The profile as compiled in.
    public static var profile: Spec.Seccomp {
        // The text is valid: a test decodes it and checks it equals policies/seccomp/default.json.
        // swiftlint:disable:next force_try
        try! JSONDecoder().decode(Spec.Seccomp.self, from: Data(profileText.utf8))
    }

    /// Syscalls allowed only to a container that holds the capability (Docker's grouping).
    public static let byCapability: [(capability: String, syscalls: [String])] = [
        ("CAP_SYS_ADMIN", ["bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                           "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
                           "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
                           "umount2", "unshare"]),
        ("CAP_SYS_BOOT", ["reboot"]),
        ("CAP_SYS_CHROOT", ["chroot"]),
        ("CAP_SYS_MODULE", ["delete_module", "init_module", "finit_module"]),
        ("CAP_SYS_PACCT", ["acct"]),
        ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
        ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
        ("CAP_SYS_TIME", ["settimeofday", "stime", "clock_settime", "clock_settime64"]),
        ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
        ("CAP_SYS_NICE", ["get_mempolicy", "mbind", "set_mempolicy", "migrate_pages", "move_pages"]),
        ("CAP_SYSLOG", ["syslog"]),
        ("CAP_BPF", ["bpf"]),
        ("CAP_PERFMON", ["perf_event_open"]),
    ]

    /// The default profile widened for the capabilities in `capabilities`' bounding set (the most the process
    /// can ever hold).
    public static func profile(for capabilities: Spec.Capabilities?) -> Spec.Seccomp {
        var profile = profile
        let held = Set((capabilities?.bounding ?? []).map { $0.uppercased().hasPrefix("CAP_") ? $0.uppercased() : "CAP_" + $0.uppercased() })
        var extra: [String] = []
        for (cap, calls) in byCapability where held.contains(cap) {
            for c in calls where !extra.contains(c) { extra.append(c) }
        }
        guard !extra.isEmpty else { return profile }
        // Rules already naming these syscalls (the flag-checked clone, clone3's ENOSYS) give way to the allow.
        var rules: [Spec.Seccomp.Syscall] = []
        for var rule in profile.syscalls ?? [] {
            let plainAllow = rule.action == "SCMP_ACT_ALLOW" && (rule.args ?? []).isEmpty
            if !plainAllow { rule.names.removeAll { extra.contains($0) } }
            if !rule.names.isEmpty { rules.append(rule) }
        }
        rules.append(Spec.Seccomp.Syscall(names: extra, action: "SCMP_ACT_ALLOW"))
        profile.syscalls = rules
        return profile
    }

    /// Reads a seccomp profile file (the `linux.seccomp` object of a runtime spec, as Docker and podman write
    /// them). Errors name the file and the JSON path.
    public static func load(path: String) throws -> Spec.Seccomp {
        let bytes: [UInt8]
        do {
            let fd = try FileDescriptor.open(path, O_RDONLY)
            bytes = try fd.readAll(limit: 16 << 20, path: path)
        } catch let e as SystemError {
            throw ConfineError("seccomp profile \(path): \(e.reason) (give the path of a JSON seccomp profile)")
        }
        do {
            return try JSONDecoder().decode(Spec.Seccomp.self, from: Data(bytes))
        } catch let e as DecodingError {
            throw ConfineError("seccomp profile \(path): \(Spec.describe(e))")
        } catch {
            throw ConfineError("seccomp profile \(path): not JSON (\(error))")
        }
    }
}
