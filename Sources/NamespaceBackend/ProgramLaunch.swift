import CShims
import Confine
import LinuxOS
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// The container's program, resolved before `ready` (so a missing binary fails `create`, not `start`), and
/// the last steps before exec: rlimits, OOM score, umask, bounding set, groups, gid, uid, capabilities, cwd,
/// no_new_privs, seccomp, fds, signals. Capabilities and the seccomp filter are resolved and built here too,
/// before `ready`, so an unknown capability or syscall name fails `create` (or `exec`).
struct ProgramLaunch {
    let process: Spec.Process
    let path: String
    let arguments: [String]
    let environment: [String]
    let confinement: ProcessConfinement

    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    init(process: Spec.Process, seccomp: Spec.Seccomp?) throws {
        self.process = process
        confinement = try step("confine the process") { try ProcessConfinement(process: process, seccomp: seccomp) }
        arguments = process.args ?? []
        guard let first = arguments.first, !first.isEmpty else { throw InitError("find the program", "process.args is empty") }
        var env = process.env ?? []
        if !env.contains(where: { $0.hasPrefix("HOME=") }) {
            env.append("HOME=" + (Self.home(of: process.user.uid) ?? "/"))
        }
        environment = env
        if first.contains("/") {
            var resolved = first
            if !first.hasPrefix("/") { resolved = (process.cwd.hasSuffix("/") ? process.cwd : process.cwd + "/") + first }
            guard Self.isExecutable(resolved) else {
                throw InitError("find the program", "\(first): no such executable file in the container")
            }
            path = first
        } else {
            let search = env.last(where: { $0.hasPrefix("PATH=") }).map { String($0.dropFirst(5)) } ?? Self.defaultPath
            var found: String?
            for dir in search.split(separator: ":", omittingEmptySubsequences: false) {
                let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + first
                if Self.isExecutable(candidate) { found = candidate; break }
            }
            guard let found else {
                throw InitError("find the program", "executable file \"\(first)\" not found in $PATH (\(search)) of the container")
            }
            path = found
        }
    }

    static func isExecutable(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return st.st_mode & S_IFMT == S_IFREG && st.st_mode & 0o111 != 0
    }

    /// The home directory of `uid` from the container's /etc/passwd.
    static func home(of uid: UInt32) -> String? {
        guard let fd = try? FileDescriptor.open("/etc/passwd", O_RDONLY), let bytes = try? fd.readAll(limit: 4 << 20) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count >= 7, UInt32(f[2]) == uid { return String(f[5]) }
        }
        return nil
    }

    static let rlimitNames: [String: Int32] = [
        "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4, "RLIMIT_RSS": 5,
        "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
        "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
    ]

    /// Checks what can be checked before `ready`.
    static func validate(_ process: Spec.Process) throws {
        for r in process.rlimits ?? [] where rlimitNames[r.type] == nil {
            throw InitError("rlimits", "process.rlimits: unknown type \"\(r.type)\"")
        }
    }

    /// Never returns: execs the program or reports the failure on stderr and exits 127.
    func exec(preserveFds: Int) -> Never {
        do {
            for r in process.rlimits ?? [] {
                guard let resource = Self.rlimitNames[r.type] else { throw InitError("rlimits", "unknown rlimit \(r.type)") }
                try step("set \(r.type) to \(r.soft)/\(r.hard)") {
                    try sys("prlimit", r.type) { bh_prlimit(resource, r.soft, r.hard) }
                }
            }
            if let adj = process.oomScoreAdj {
                try step("set oom_score_adj \(adj)") {
                    let fd = try FileDescriptor.open("/proc/self/oom_score_adj", O_WRONLY)
                    try fd.writeAll(String(adj))
                }
            }
            let user = process.user
            try step("drop capabilities from the bounding set") { try confinement.beforeUserChange() }
            try step("set the groups \(user.additionalGids ?? [])") {
                let groups = (user.additionalGids ?? []).map { gid_t($0) }
                if bh_setgroups(groups.count, groups) != 0 && !(errno == EPERM && groups.isEmpty) {
                    throw SystemError(operation: "setgroups", errno: errno)
                }
            }
            try step("set gid \(user.gid)") { try sys("setresgid", nil) { bh_setresgid(user.gid, user.gid, user.gid) } }
            try step("set uid \(user.uid)") { try sys("setresuid", nil) { bh_setresuid(user.uid, user.uid, user.uid) } }
            try step("set the capabilities") { try confinement.afterUserChange() }
            try step("change to the working directory \(process.cwd)") { try sys("chdir", process.cwd) { chdir(process.cwd) } }
            umask(mode_t(process.user.umask ?? 0o022))
            _ = bh_cloexec_from(3 + Int32(preserveFds))
            for fd in 3..<(3 + Int32(preserveFds)) {
                let flags = fcntl(fd, F_GETFD)
                if flags >= 0 { _ = bh_fcntl_int(fd, F_SETFD, flags & ~FD_CLOEXEC) }
            }
            bh_reset_signals()
            let argv = arguments.map { strdup($0) } + [nil]
            let envp = environment.map { strdup($0) } + [nil]
            // Last: no_new_privs, then the seccomp filter (what runs after it must be allowed by it: only execve).
            try step("set no_new_privs and the seccomp filter") { try confinement.lastBeforeExec() }
            execve(path, argv, envp)
            throw InitError("exec \(path)", String(cString: strerror(errno)))
        } catch {
            ContainerInit.fatal("bulkhead init: \(error)")
        }
    }
}
