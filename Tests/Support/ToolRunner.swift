import Foundation
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to completion for a test, the way every test suite needs it: stdin from a file, stdout and
/// stderr to files (not pipes: a container or VM started by the program keeps its stdio, and a pipe would not
/// reach end-of-file until it exits, exactly like an engine's log files), a deadline after which it is killed.
public enum ToolRunner {
    public struct Output: Sendable {
        public var code: Int32
        public var stdout: Data
        public var stderr: String
        public var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    /// `arguments[0]` is the program; `environment` nil means this process's; `stdinFile` is opened read-only.
    public static func run(_ arguments: [String], environment: [String: String]? = nil, stdinFile: String = "/dev/null",
                           timeout: TimeInterval = 60) throws -> Output {
        let base = "/tmp/bulkhead-test-io-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        defer { unlink(base + ".out"); unlink(base + ".err") }
        let input = try LinuxOS.FileDescriptor.open(stdinFile, O_RDONLY)
        let out = try LinuxOS.FileDescriptor.open(base + ".out", O_WRONLY | O_CREAT | O_TRUNC)
        let err = try LinuxOS.FileDescriptor.open(base + ".err", O_WRONLY | O_CREAT | O_TRUNC)
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let pid = try ChildProcess.spawn(arguments[0], arguments: arguments, environment: env,
                                         fds: [(input.raw, 0), (out.raw, 1), (err.raw, 2)])
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 { status = 255 << 8; break }
            if Date() > deadline { kill(pid, SIGKILL); _ = waitpid(pid, &status, 0); break }
            usleep(2000)
        }
        return Output(code: ChildProcess.exitCode(fromWaitStatus: status),
                      stdout: (try? Data(contentsOf: URL(fileURLWithPath: base + ".out"))) ?? Data(),
                      stderr: (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "")
    }

    /// The same with `stdin` given as text.
    public static func run(_ arguments: [String], stdin: String, environment: [String: String]? = nil,
                           timeout: TimeInterval = 60) throws -> Output {
        let path = "/tmp/bulkhead-test-in-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        defer { unlink(path) }
        try stdin.write(toFile: path, atomically: false, encoding: .utf8)
        return try run(arguments, environment: environment, stdinFile: path, timeout: timeout)
    }
}
