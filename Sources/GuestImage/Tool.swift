import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Runs an external tool (mkfs.erofs, mke2fs) with posix_spawn — no Swift runs in the child — and
/// collects its combined output (bounded).
enum Tool {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Finds `name` in the usual system directories (the host's PATH may be minimal under engines).
    static func find(_ name: String) -> String? {
        for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let path = "\(dir)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }

    /// Runs `path args…`; throws with the tool's output when it exits non-zero.
    @discardableResult
    /// `inheriting` is passed to the tool as its fd 3.
    static func run(_ path: String, _ args: [String], package: String, inheriting: Int32? = nil) throws -> String {
        var fds: [Int32] = [-1, -1]
        try sys("pipe", nil) { pipe(&fds) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        if let inheriting { posix_spawn_file_actions_adddup2(&actions, inheriting, 3) }
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envStrings: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]
        let env: [UnsafeMutablePointer<CChar>?] = envStrings.map { strdup($0) } + [nil]
        defer { env.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, env)
        close(fds[1])
        let reader = FileDescriptor(adopting: fds[0])
        guard rc == 0 else {
            throw Failure(description: "cannot run \(path): \(String(cString: strerror(rc))); install the Debian package \(package) (scripts/setup does)")
        }
        let output = (try? reader.readAll(limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if status != 0 {
            let tail = output.split(separator: "\n").suffix(15).joined(separator: "\n")
            throw Failure(description: "\(path) \(args.joined(separator: " ")) failed (status \(status)):\n\(tail)")
        }
        return output
    }
}
