import CKVM
import CSeccomp
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Per-thread-role seccomp filters (libseccomp), Firecracker-style: anything not listed kills the process.
/// Filters are built up front and each thread loads its own (seccomp filters are per thread without TSYNC).
public final class SeccompPolicy: @unchecked Sendable {
    /// System calls every VMM thread makes (memory management by the Swift runtime and malloc, futexes,
    /// signal returns, thread exit, clocks).
    public static let common = [
        "read", "write", "readv", "writev", "close", "futex", "mmap", "munmap", "mprotect", "madvise", "brk", "mremap",
        "rt_sigreturn", "rt_sigprocmask", "sigaltstack", "exit", "exit_group", "clock_gettime", "gettimeofday",
        "gettid", "getpid", "sched_yield", "nanosleep", "clock_nanosleep", "restart_syscall", "rseq", "set_robust_list",
        "getrandom", "tgkill", "fstat", "newfstatat", "lseek",
    ]
    /// The main thread waits for the VM (poll, signalfd) and at the end leaves its cgroup (openat, unlinkat) and
    /// joins the other threads.
    public static let main = ["poll", "ppoll", "openat", "unlinkat", "fcntl", "dup", "sched_getaffinity"]
    /// vCPU threads: KVM_RUN and friends (ioctl filtered by request below), serial output, eventfd signalling.
    public static let vcpu: [String] = []
    /// The device thread: epoll, disk I/O, console sockets.
    public static let io = ["epoll_create1", "epoll_wait", "epoll_pwait", "epoll_ctl", "pread64", "pwrite64", "fsync", "fdatasync",
                            "sendto", "recvfrom", "poll", "ppoll"]

    let filters: [ThreadRole: scmp_filter_ctx]

    init(filters: [ThreadRole: scmp_filter_ctx]) { self.filters = filters }

    deinit { for (_, ctx) in filters { seccomp_release(ctx) } }

    /// Builds the three filters. `BULKHEAD_SECCOMP=log` makes violations logged instead of fatal (debugging).
    public static func filters(for jail: VMJail? = nil) throws -> SeccompPolicy {
        let logOnly = getenv("BULKHEAD_SECCOMP").map { String(cString: $0) } == "log"
        let defaultAction = logOnly ? UInt32(SCMP_ACT_LOG) : UInt32(SCMP_ACT_KILL_PROCESS)
        var made: [ThreadRole: scmp_filter_ctx] = [:]
        for role in ThreadRole.allCases {
            guard let ctx = seccomp_init(defaultAction) else { throw KVMError("seccomp_init failed") }
            made[role] = ctx
            var names = common
            switch role {
            case .main: names += main
            case .vcpu: names += vcpu
            case .io: names += io
            }
            for name in names {
                let number = seccomp_syscall_resolve_name(name)
                guard number != __NR_SCMP_ERROR else { continue } // not on this architecture
                let r = seccomp_rule_add_array(ctx, UInt32(SCMP_ACT_ALLOW), number, 0, nil)
                guard r == 0 else { throw KVMError("seccomp rule for \(name): \(String(cString: strerror(-r)))") }
            }
            let ioctl = seccomp_syscall_resolve_name("ioctl")
            for request in ioctlRequests(role) {
                do {
                    var cmp = scmp_arg_cmp(arg: 1, op: SCMP_CMP_EQ, datum_a: UInt64(request), datum_b: 0)
                    let r = seccomp_rule_add_array(ctx, UInt32(SCMP_ACT_ALLOW), ioctl, 1, &cmp)
                    guard r == 0 else { throw KVMError("seccomp ioctl rule: \(String(cString: strerror(-r)))") }
                }
            }
        }
        return SeccompPolicy(filters: made)
    }

    /// The only ioctls each role may make: vCPUs run and raise the UART's line; the I/O thread raises it for
    /// serial input; the main thread reads registers for the exit report.
    public static func ioctlRequests(_ role: ThreadRole) -> [UInt] {
        switch role {
        case .vcpu: return [bh_kvm_req_run(), bh_kvm_req_irq_line(), bh_kvm_req_get_regs(), bh_kvm_req_get_sregs()]
        case .io: return [bh_kvm_req_irq_line()]
        case .main: return [bh_kvm_req_get_regs()]
        }
    }

    /// Loads `role`'s filter on the calling thread.
    public func install(_ role: ThreadRole) throws {
        guard let ctx = filters[role] else { return }
        let r = seccomp_load(ctx)
        guard r == 0 else { throw KVMError("seccomp_load for the \(role.rawValue) thread: \(String(cString: strerror(-r)))") }
    }
}
