import Foundation
import LinuxOS
import TestSupport
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Helpers for the tests that drive real containers: the built `bulkhead` binary, busybox bundles, running
/// commands and capturing their output.
enum TestEnv {
    static let isRoot = getuid() == 0
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The `bulkhead` that `swift build` made for this test run.
    static var bulkhead: String {
        for config in ["debug", "release"] {
            let path = packageRoot + "/.build/\(config)/bulkhead"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return packageRoot + "/.build/debug/bulkhead"
    }

    static func which(_ tool: String) -> String? {
        for dir in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
            let p = dir + "/" + tool
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    static let busybox: String? = ["/bin/busybox", "/usr/bin/busybox"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static var canRunContainers: Bool { isRoot && busybox != nil }
    static let runc = which("runc")

    struct Result {
        var code: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program to completion, capturing stdout and stderr. Output goes to files, not pipes: a
    /// container started by the program keeps its stdio, and a pipe would not reach end-of-file until the
    /// container exits (exactly like an engine's log files).
    @discardableResult
    static func run(_ arguments: [String], stdin: String? = nil, environment: [String: String]? = nil,
                    timeout: TimeInterval = 60) throws -> Result {
        let r = try ToolRunner.run(arguments, stdin: stdin ?? "", environment: environment, timeout: timeout)
        return Result(code: r.code, stdout: r.text, stderr: r.stderr)
    }

    /// A scratch directory removed by the caller's `defer`.
    static func scratch(_ name: String) throws -> String {
        let dir = "/tmp/bulkhead-test-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func remove(_ path: String) {
        _ = try? run(["/bin/rm", "-rf", path])
    }

    /// A bundle with a busybox-static rootfs (/bin/busybox and its applet links) and the default spec,
    /// terminal off, adjusted by `edit`.
    static func busyboxBundle(at dir: String, args: [String], edit: (inout Spec) -> Void = { _ in }) throws -> String {
        let bundle = dir + "/bundle"
        let bin = bundle + "/rootfs/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        for d in ["etc", "tmp", "proc", "sys", "dev", "root"] {
            try FileManager.default.createDirectory(atPath: bundle + "/rootfs/" + d, withIntermediateDirectories: true)
        }
        // cp in its own process: a writable fd held here would leak into processes other tests fork at the
        // same moment, and exec of the copy would then fail with ETXTBSY.
        try TestEnv.run(["/bin/cp", busybox!, bin + "/busybox"])
        for applet in ["sh", "ls", "cat", "echo", "id", "hostname", "true", "false", "sleep", "env", "pwd", "ps",
                       "mount", "readlink", "sort", "grep", "stat", "touch", "umask", "wc", "head", "tty", "kill"] {
            try FileManager.default.createSymbolicLink(atPath: bin + "/" + applet, withDestinationPath: "busybox")
        }
        try "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n"
            .write(toFile: bundle + "/rootfs/etc/passwd", atomically: true, encoding: .utf8)
        try "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n"
            .write(toFile: bundle + "/rootfs/etc/group", atomically: true, encoding: .utf8)
        var spec = Spec.defaultSpec(args: args, terminal: false)
        spec.process?.capabilities = nil
        spec.process?.noNewPrivileges = nil
        spec.process?.rlimits = nil
        spec.linux?.resources = nil
        edit(&spec)
        try Data(try spec.encoded()).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        return bundle
    }

    static func uniqueID(_ prefix: String) -> String { "\(prefix)-\(getpid())-\(UInt16.random(in: 0...UInt16.max))" }
}
