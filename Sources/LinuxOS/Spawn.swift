import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Starting and reaping processes. posix_spawn(3) does the fork and exec inside libc, so no Swift code runs
/// in the child of a possibly multithreaded process.
public enum ChildProcess {
    /// Spawns `path` with `arguments` (argv[0] included) and `environment`. `fds` maps a source fd of this
    /// process to the fd number it gets in the child (0, 1, 2 are inherited unless mapped); every other fd of
    /// ours is close-on-exec already.
    public static func spawn(_ path: String, arguments: [String], environment: [String],
                             fds: [(source: Int32, target: Int32)] = [], resetSignals: Bool = true) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Move every source out of the way first (to fds above all targets), so that one mapping never
        // overwrites the source of another.
        var temporaries: [Int32] = []
        defer { for fd in temporaries { _ = Glibc.close(fd) } }
        let floor = (fds.map(\.target).max() ?? 2) + 1
        for (source, target) in fds {
            let tmp = try sys("fcntl F_DUPFD_CLOEXEC", nil) { bh_fcntl_int(source, F_DUPFD_CLOEXEC, max(floor, 10)) }
            temporaries.append(tmp)
            posix_spawn_file_actions_adddup2(&actions, tmp, target)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        if resetSignals {
            var none = sigset_t(); sigemptyset(&none)
            var all = sigset_t(); sigfillset(&all)
            sigdelset(&all, SIGKILL); sigdelset(&all, SIGSTOP)
            posix_spawnattr_setsigmask(&attr, &none)
            posix_spawnattr_setsigdefault(&attr, &all)
            posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        }
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
        if rc != 0 { throw SystemError(operation: "spawn", path: path, errno: rc) }
        return pid
    }

    /// waitpid(2); returns the raw status, or nil with `noHang` when the child is still running.
    public static func wait(_ pid: pid_t, noHang: Bool = false) throws -> Int32? {
        var status: Int32 = 0
        let r = try sys("waitpid", String(pid)) { waitpid(pid, &status, noHang ? WNOHANG : 0) }
        return r == 0 ? nil : status
    }

    /// The exit status as a shell reports it: the code, or 128+N after signal N.
    public static func exitCode(fromWaitStatus status: Int32) -> Int32 {
        if bh_wifexited(status) != 0 { return bh_wexitstatus(status) }
        if bh_wifsignaled(status) != 0 { return 128 + bh_wtermsig(status) }
        return 255
    }

    /// Waits up to `timeoutMs` for a child; kills it (SIGKILL) and throws when the time runs out.
    public static func wait(_ pid: pid_t, timeoutMs: Int, what: String) throws -> Int32 {
        let pidfd = bh_pidfd_open(pid)
        defer { if pidfd >= 0 { _ = Glibc.close(pidfd) } }
        if pidfd >= 0 {
            var p = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            let r = Glibc.poll(&p, 1, Int32(timeoutMs))
            if r == 0 {
                Glibc.kill(pid, SIGKILL)
                _ = try? wait(pid)
                throw SystemError(operation: what, path: nil, errno: ETIMEDOUT, hint: "it ran longer than \(timeoutMs / 1000) s and was killed")
            }
        }
        return try wait(pid) ?? 0
    }

    /// Whether `pid` exists and is not a zombie.
    public static func isAlive(_ pid: pid_t) -> Bool {
        if pid <= 0 { return false }
        if Glibc.kill(pid, 0) != 0 && errno == ESRCH { return false }
        guard let stat = try? statFields(pid) else { return false }
        return stat.state != "Z" && stat.state != "X"
    }

    /// The state letter and start time (clock ticks since boot) from /proc/PID/stat.
    public static func statFields(_ pid: pid_t) throws -> (state: Character, startTime: UInt64) {
        let fd = try FileDescriptor.open("/proc/\(pid)/stat", O_RDONLY)
        // Read as bytes (no String, no generic integer parsing: this runs in every container start).
        let bytes = try fd.readAll(limit: 4096)
        let bad = SystemError(operation: "parse", path: "/proc/\(pid)/stat", errno: EINVAL)
        // The command name is in parentheses and may contain spaces: the fields start after the last ')'.
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { throw bad }
        // After ") ": field 3 (state), then fields 4, 5, … separated by single spaces; start time is field 22.
        var i = close + 2
        guard i < bytes.count else { throw bad }
        let state = Character(Unicode.Scalar(bytes[i]))
        var field = 3
        while i < bytes.count && field < 22 {
            if bytes[i] == UInt8(ascii: " ") { field += 1 }
            i += 1
        }
        var start: UInt64 = 0
        var digits = 0
        while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") {
            let (m, o1) = start.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(bytes[i] - UInt8(ascii: "0")))
            guard !o1, !o2 else { throw bad }
            start = a
            digits += 1
            i += 1
        }
        guard field == 22, digits > 0 else { throw bad }
        return (state, start)
    }
}

extension ChildProcess {
    /// Waits for the child `pid`, forwarding every signal the caller receives meanwhile (except SIGCHLD, SIGWINCH,
    /// SIGURG); returns its exit status (128+N for a signal, 255 when it is not our child).
    public static func waitForwardingSignals(_ pid: Int32) -> Int32 {
        var old = [UInt8](repeating: 0, count: bh_sigset_size())
        _ = old.withUnsafeMutableBytes { bh_block_all_signals($0.baseAddress, $0.count) }
        defer { _ = old.withUnsafeBytes { bh_restore_signals($0.baseAddress) } }
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return exitCode(fromWaitStatus: status) }
            if r < 0 && errno == ECHILD { return 255 }
            var sender: Int32 = 0
            let sig = bh_wait_any_signal(&sender)
            if sig == SIGCHLD || sig == SIGWINCH || sig == SIGURG || sig <= 0 { continue }
            _ = Glibc.kill(pid, sig)
        }
    }
}
