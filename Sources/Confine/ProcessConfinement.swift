import CShims
import LinuxOS
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// What confines one container process — its capability sets, `no_new_privs` and its seccomp filter — resolved
/// and built from the spec ahead of time (so bad input fails before the container reports `ready`), then
/// applied around the uid change in two calls:
///
///     let confinement = try ProcessConfinement(process: spec.process!, seccomp: spec.linux?.seccomp)
///     …                                   // everything else; report ready
///     try confinement.beforeUserChange()  // [seccomp if it must go early], bounding set, PR_SET_KEEPCAPS
///     setgroups / setresgid / setresuid
///     try confinement.afterUserChange()   // effective/permitted/inheritable, then ambient
///     chdir, fds, signals
///     try confinement.lastBeforeExec()    // no_new_privs, seccomp
///     execve
///
/// Seccomp is loaded last, just before exec, when `no_new_privs` is set or the process keeps CAP_SYS_ADMIN;
/// otherwise loading would need a capability the process is about to lose, so it is loaded first, before any
/// capability is dropped (runc's order). Used by the namespace tier's init and meant for the microVM guest agent.
public struct ProcessConfinement {
    public let capabilities: CapabilityPlan
    public let seccomp: SeccompFilter?
    public let noNewPrivileges: Bool

    static let capSysAdmin = 21

    public init(process: Spec.Process, seccomp profile: Spec.Seccomp?) throws {
        capabilities = try CapabilityPlan.resolve(process.capabilities)
        seccomp = try profile.map { try SeccompFilter.build($0) }
        noNewPrivileges = process.noNewPrivileges == true
    }

    /// Whether the filter is loaded before capabilities are dropped.
    public var loadsSeccompEarly: Bool {
        seccomp != nil && !noNewPrivileges && !capabilities.effective.contains(Self.capSysAdmin)
    }

    /// Runs while the process is still root with every capability: the early seccomp filter (see above), the
    /// bounding set, and PR_SET_KEEPCAPS so the permitted set survives the uid change.
    public func beforeUserChange() throws {
        if loadsSeccompEarly { try seccomp!.load() }
        try capabilities.dropBoundingSet()
        try CapabilityPlan.keepAcrossUIDChange(true)
    }

    /// Runs after setresuid: clears PR_SET_KEEPCAPS, sets the effective/permitted/inheritable and ambient sets.
    public func afterUserChange() throws {
        try CapabilityPlan.keepAcrossUIDChange(false)
        try capabilities.applyProcessSets()
    }

    /// Runs last before execve: `no_new_privs` if asked, and the seccomp filter unless it went early.
    public func lastBeforeExec() throws {
        if noNewPrivileges {
            try sys("prctl PR_SET_NO_NEW_PRIVS") { bh_prctl(38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0) }
        }
        if let seccomp, !loadsSeccompEarly { try seccomp.load() }
    }
}
