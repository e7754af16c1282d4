import CShims
import LinuxOS
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Runs OCI hooks: each hook's program with its args and env, the container state JSON on stdin, and its
/// timeout (killed when it runs longer). A hook that fails or times out fails its phase.
public enum HookRunner {
    /// `state` is made only when there is a hook to give it to (most containers have none).
    public static func run(_ hooks: [Spec.Hook]?, phase: String, state makeState: @autoclosure () throws -> [UInt8]) throws {
        guard let hooks, !hooks.isEmpty else { return }
        let state = try makeState()
        for (i, hook) in hooks.enumerated() {
            do { try run(hook, state: state) } catch {
                throw RuntimeError("\(phase) hook #\(i) (\(hook.path)) failed: \(error)")
            }
        }
    }

    static func run(_ hook: Spec.Hook, state: [UInt8]) throws {
        var fds: [Int32] = [0, 0]
        try sys("pipe", nil) { pipe(&fds) }
        _ = bh_fcntl_int(fds[0], F_SETFD, FD_CLOEXEC); _ = bh_fcntl_int(fds[1], F_SETFD, FD_CLOEXEC)
        let readEnd = FileDescriptor(adopting: fds[0])
        let writeEnd = FileDescriptor(adopting: fds[1])
        let args = hook.args ?? [hook.path]
        let pid = try ChildProcess.spawn(hook.path, arguments: args.isEmpty ? [hook.path] : args,
                                         environment: hook.env ?? [], fds: [(readEnd.raw, 0)])
        _ = consume readEnd
        // A hook that does not read its stdin must not block us: ignore EPIPE.
        signal(SIGPIPE, SIG_IGN)
        try? writeEnd.writeAll(state)
        _ = consume writeEnd
        let timeout = (hook.timeout ?? 0) > 0 ? hook.timeout! * 1000 : 120_000
        let status = try ChildProcess.wait(pid, timeoutMs: timeout, what: "hook \(hook.path)")
        let code = ChildProcess.exitCode(fromWaitStatus: status)
        if code != 0 { throw RuntimeError("exit status \(code)") }
    }
}
