import Foundation
import LinuxOS
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// podman and containerd driving a microVM container exactly as a namespace one: the same runc contract,
/// the tier chosen by the `bulkhead.isolation=microvm` annotation the deployer adds. Four VM boots in all.
enum VMEngines {
    static func which(_ tool: String) -> String? {
        for dir in ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/libexec/podman"] where FileManager.default.isExecutableFile(atPath: dir + "/" + tool) {
            return dir + "/" + tool
        }
        return nil
    }
    static let podman = which("podman"), conmon = which("conmon")
    static let containerd = which("containerd"), ctr = which("ctr"), shim = which("containerd-shim-runc-v2"), umoci = which("umoci")

    static var podmanMissing: String? {
        if let m = Tier.missing { return m }
        if podman == nil || conmon == nil { return "needs podman and conmon" }
        if !Mount.isMountPoint("/") { return "/ is not a mount point here (a chroot): podman's storage cannot remount it" }
        return nil
    }
    static var containerdMissing: String? {
        if let m = Tier.missing { return m }
        if containerd == nil || ctr == nil || shim == nil || umoci == nil { return "needs containerd, ctr, containerd-shim-runc-v2 and umoci" }
        if !Mount.isMountPoint("/") { return "/ is not a mount point here (a chroot): containerd's snapshots need one" }
        return nil
    }

    /// Runs a tool with stdin from /dev/null; stdout and stderr captured.
    static func run(_ arguments: [String], environment: [String: String]? = nil, timeout: TimeInterval = 300) throws -> (code: Int32, stdout: String, stderr: String) {
        let r = try ToolRunner.run(arguments, environment: environment, timeout: timeout)
        return (r.code, r.text, r.stderr)
    }

    /// A busybox rootfs with the applets the tests use.
    static func rootfs(at path: String) throws {
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
            try FileManager.default.createDirectory(atPath: path + "/" + d, withIntermediateDirectories: true)
        }
        _ = try run(["/bin/cp", "/bin/busybox", path + "/bin/busybox"])
        for applet in ["sh", "cat", "echo", "true", "false", "sleep", "uname", "hostname", "tty"] {
            try FileManager.default.createSymbolicLink(atPath: path + "/bin/" + applet, withDestinationPath: "busybox")
        }
        try "root:x:0:0:root:/root:/bin/sh\n".write(toFile: path + "/etc/passwd", atomically: true, encoding: .utf8)
        try "root:x:0:\n".write(toFile: path + "/etc/group", atomically: true, encoding: .utf8)
    }

    /// The runtime binary the engine calls: bulkhead with the tier's environment and a data root of the test's.
    static func runtimeWrapper(in dir: String) throws -> String {
        let env = Tier.environment.filter { $0.hasPrefix("BULKHEAD_") }.map { "export '\($0)'" }.joined(separator: "\n")
        let script = "#!/bin/sh\n\(env)\nexec '\(Tier.bulkhead)' --data-root '\(dir)/data' \"$@\"\n"
        let path = dir + "/bulkhead-runtime"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    /// The guest kernel's release (a microVM answers `uname -r` with it, not with the host's).
    static var guestRelease: String {
        ((try? String(contentsOfFile: (Tier.kernelDirectory ?? "") + "/release", encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

@Suite(.serialized) struct MicroVMEngineTests {
    @Test(.enabled(if: VMEngines.podmanMissing == nil, "\(VMEngines.podmanMissing ?? "")"), .timeLimit(.minutes(10)))
    func podmanRunsAMicroVMContainer() throws {
        let dir = "/tmp/bhvm-podman-\(UInt16.random(in: 0...UInt16.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try VMEngines.rootfs(at: dir + "/rootfs")
        _ = try VMEngines.run(["/bin/tar", "-C", dir + "/rootfs", "-cf", dir + "/rootfs.tar", "."])
        let runtime = try VMEngines.runtimeWrapper(in: dir)
        let env = try PodmanSetup.environment(directory: dir, runtime: runtime)
        let base = [VMEngines.podman!, "--root", dir + "/storage", "--runroot", dir + "/run", "--storage-driver", "vfs", "--tmpdir", dir + "/tmp"]
        func podman(_ args: [String]) throws -> (code: Int32, stdout: String, stderr: String) {
            try VMEngines.run(base + args, environment: env)
        }
        defer { _ = try? podman(["rm", "-f", "-a"]) }
        let image = "localhost/bulkhead-busybox:vm"
        let imported = try podman(["import", dir + "/rootfs.tar", image])
        #expect(imported.code == 0, "\(imported.stderr)")
        let vm = ["--annotation", "bulkhead.isolation=microvm", "--network", "none"]

        // run: stdout and the exit code come back from the guest.
        let run = try podman(["run", "--rm"] + vm + [image, "sh", "-c", "echo hi; uname -r; exit 3"])
        #expect(run.code == 3, "\(run.stderr)")
        #expect(run.stdout == "hi\n\(VMEngines.guestRelease)\n", "\(run.stdout)")

        // A detached container, exec into it, stop.
        let name = "bhvm-\(getpid())"
        let detached = try podman(["run", "-d", "--name", name] + vm + [image, "sleep", "300"])
        #expect(detached.code == 0, "\(detached.stderr)")
        let exec = try podman(["exec", name, "sh", "-c", "echo inside; uname -r; exit 6"])
        #expect(exec.code == 6, "\(exec.stderr)")
        #expect(exec.stdout == "inside\n\(VMEngines.guestRelease)\n", "\(exec.stdout)")
        let stop = try podman(["stop", "-t", "1", name])
        #expect(stop.code == 0, "\(stop.stderr)")
        let status = try podman(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name])
        #expect(status.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "exited 137", "\(status.stdout) \(status.stderr)")
        #expect(try podman(["rm", name]).code == 0)
    }

    @Test(.enabled(if: VMEngines.containerdMissing == nil, "\(VMEngines.containerdMissing ?? "")"), .timeLimit(.minutes(10)))
    func containerdRunsAMicroVMContainerThroughTheRuncShim() throws {
        let dir = "/tmp/bhvm-ctrd-\(UInt16.random(in: 0...UInt16.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let umoci = VMEngines.umoci!
        let oci = dir + "/oci"
        _ = try VMEngines.run([umoci, "init", "--layout", oci])
        _ = try VMEngines.run([umoci, "new", "--image", oci + ":latest"])
        #expect(try VMEngines.run([umoci, "unpack", "--image", oci + ":latest", dir + "/b"]).code == 0)
        try? FileManager.default.removeItem(atPath: dir + "/b/rootfs")
        try VMEngines.rootfs(at: dir + "/b/rootfs")
        #expect(try VMEngines.run([umoci, "repack", "--image", oci + ":latest", dir + "/b"]).code == 0)
        _ = try VMEngines.run([umoci, "config", "--image", oci + ":latest", "--config.cmd", "sh"])
        _ = try VMEngines.run(["/bin/tar", "-C", oci, "-cf", dir + "/image.tar", "."])
        let runtime = try VMEngines.runtimeWrapper(in: dir)
        let containerd = try PrivateContainerd(binary: VMEngines.containerd!, directory: dir)
        defer { containerd.stop() }
        let ctrBase = [VMEngines.ctr!, "--address", containerd.socket, "--namespace", "bulkhead-vm-test"]
        func ctr(_ args: [String]) throws -> (code: Int32, stdout: String, stderr: String) { try VMEngines.run(ctrBase + args) }
        #expect(try ctr(["images", "import", "--base-name", "bulkhead.test/busybox", dir + "/image.tar"]).code == 0)
        let image = "bulkhead.test/busybox:latest"
        let vm = ["--runc-binary", runtime, "--annotation", "bulkhead.isolation=microvm"]

        let run = try ctr(["run", "--rm"] + vm + [image, "bhvm-run-\(getpid())", "sh", "-c", "echo hello; uname -r; exit 4"])
        #expect(run.code == 4, "\(run.stderr)")
        #expect(run.stdout.contains("hello") && run.stdout.contains(VMEngines.guestRelease), "\(run.stdout)")

        let id = "bhvm-exec-\(getpid())"
        let started = try ctr(["run", "-d"] + vm + [image, id, "sleep", "300"])
        #expect(started.code == 0, "\(started.stderr)")
        defer { _ = try? ctr(["task", "kill", "--signal", "SIGKILL", id]); _ = try? ctr(["task", "rm", "-f", id]); _ = try? ctr(["containers", "rm", id]) }
        let exec = try ctr(["task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo from-exec; exit 6"])
        #expect(exec.code == 6, "\(exec.stderr)")
        #expect(exec.stdout.contains("from-exec"))
        #expect(try ctr(["task", "kill", "--signal", "SIGKILL", id]).code == 0)
        for _ in 0..<200 where !(try ctr(["task", "ls"]).stdout.contains("STOPPED")) { usleep(50_000) }
        #expect(try ctr(["task", "ls"]).stdout.contains("STOPPED"))
        #expect(try ctr(["task", "rm", id]).code == 0)
        #expect(try ctr(["containers", "rm", id]).code == 0)
    }
}
