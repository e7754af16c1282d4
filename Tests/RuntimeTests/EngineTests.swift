import Foundation
import Testing
import LinuxOS
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Real engines driving `bulkhead` as their OCI runtime: podman (through conmon) and containerd (through its
/// runc shim v2), on images the tests build from busybox-static.
enum Engines {
    static let podman = TestEnv.which("podman")
    static let conmon = TestEnv.which("conmon") ?? (FileManager.default.isExecutableFile(atPath: "/usr/libexec/podman/conmon") ? "/usr/libexec/podman/conmon" : nil)
    static let containerd = TestEnv.which("containerd")
    static let ctr = TestEnv.which("ctr")
    static let shim = TestEnv.which("containerd-shim-runc-v2")
    static let umoci = TestEnv.which("umoci")

    /// A busybox rootfs directory with the usual applets and /etc files.
    static func rootfs(at path: String) throws {
        let bin = path + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        for d in ["etc", "tmp", "proc", "sys", "dev", "root"] {
            try FileManager.default.createDirectory(atPath: path + "/" + d, withIntermediateDirectories: true)
        }
        // cp in its own process (see TestEnv.busyboxBundle).
        try TestEnv.run(["/bin/cp", TestEnv.busybox!, bin + "/busybox"])
        for applet in ["sh", "ls", "cat", "echo", "id", "hostname", "true", "false", "sleep", "env", "ps", "pwd", "tty", "wc"] {
            try FileManager.default.createSymbolicLink(atPath: bin + "/" + applet, withDestinationPath: "busybox")
        }
        try "root:x:0:0:root:/root:/bin/sh\n".write(toFile: path + "/etc/passwd", atomically: true, encoding: .utf8)
        try "root:x:0:\n".write(toFile: path + "/etc/group", atomically: true, encoding: .utf8)
    }
}

@Suite(.serialized, .enabled(if: TestEnv.canRunContainers && Engines.podman != nil && Engines.conmon != nil,
                             "needs root, busybox-static, podman and conmon"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): podman's storage cannot remount it"))
struct PodmanTests {
    @Test func podmanRunsExecsStopsAndRemoves() throws {
        let dir = try TestEnv.scratch("podman")
        defer { TestEnv.remove(dir) }
        try Engines.rootfs(at: dir + "/rootfs")
        try TestEnv.run(["/bin/tar", "-C", dir + "/rootfs", "-cf", dir + "/rootfs.tar", "."])
        let env = try PodmanSetup.environment(directory: dir, runtime: TestEnv.bulkhead)
        let base = [Engines.podman!, "--root", dir + "/storage", "--runroot", dir + "/run", "--storage-driver", "vfs",
                    "--tmpdir", dir + "/tmp"]
        func podman(_ args: [String]) throws -> TestEnv.Result {
            try TestEnv.run(base + args, environment: env, timeout: 120)
        }
        let imported = try podman(["import", dir + "/rootfs.tar", "localhost/bulkhead-busybox:test"])
        #expect(imported.code == 0, "\(imported.stderr)")

        let run = try podman(["run", "--rm", "--network", "none", "localhost/bulkhead-busybox:test", "sh", "-c", "echo hi; hostname; exit 3"])
        #expect(run.code == 3, "\(run.stderr)")
        #expect(run.stdout.hasPrefix("hi\n"), "\(run.stdout)")

        let name = "bh-\(getpid())"
        let detached = try podman(["run", "-d", "--name", name, "--network", "none", "localhost/bulkhead-busybox:test", "sleep", "300"])
        #expect(detached.code == 0, "\(detached.stderr)")
        let exec = try podman(["exec", name, "sh", "-c", "echo inside; ps -o pid,comm | wc -l"])
        #expect(exec.code == 0, "\(exec.stderr)")
        #expect(exec.stdout.hasPrefix("inside\n"))
        let failing = try podman(["exec", name, "false"])
        #expect(failing.code == 1)
        let tty = try podman(["exec", "-t", name, "tty"])
        #expect(tty.code == 0 && tty.stdout.contains("/dev/pts/"), "\(tty.stdout) \(tty.stderr)")
        #expect(try podman(["inspect", "--format", "{{.State.Status}}", name]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "running")
        let stop = try podman(["stop", "-t", "1", name])
        #expect(stop.code == 0, "\(stop.stderr)")
        let status = try podman(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name])
        #expect(status.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "exited 137", "\(status.stdout)")
        let rm = try podman(["rm", name])
        #expect(rm.code == 0, "\(rm.stderr)")
        _ = try? podman(["rmi", "-f", "localhost/bulkhead-busybox:test"])
    }
}

@Suite(.serialized, .enabled(if: TestEnv.canRunContainers && Engines.containerd != nil && Engines.ctr != nil
                             && Engines.shim != nil && Engines.umoci != nil,
                             "needs root, busybox-static, containerd (with ctr and containerd-shim-runc-v2) and umoci"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct ContainerdTests {
    @Test func ctrRunsAndExecsThroughTheRuncShim() throws {
        let dir = try TestEnv.scratch("containerd")
        defer { TestEnv.remove(dir) }
        // An OCI image archive built with umoci.
        let oci = dir + "/oci"
        try TestEnv.run([Engines.umoci!, "init", "--layout", oci])
        try TestEnv.run([Engines.umoci!, "new", "--image", oci + ":latest"])
        let unpacked = try TestEnv.run([Engines.umoci!, "unpack", "--image", oci + ":latest", dir + "/b"])
        #expect(unpacked.code == 0, "\(unpacked.stderr)")
        try? FileManager.default.removeItem(atPath: dir + "/b/rootfs")
        try Engines.rootfs(at: dir + "/b/rootfs")
        let repack = try TestEnv.run([Engines.umoci!, "repack", "--image", oci + ":latest", dir + "/b"])
        #expect(repack.code == 0, "\(repack.stderr)")
        try TestEnv.run([Engines.umoci!, "config", "--image", oci + ":latest", "--config.cmd", "sh"])
        try TestEnv.run(["/bin/tar", "-C", oci, "-cf", dir + "/image.tar", "."])

        let containerd = try PrivateContainerd(binary: Engines.containerd!, directory: dir)
        defer { containerd.stop() }

        let ctrBase = [Engines.ctr!, "--address", containerd.socket, "--namespace", "bulkhead-test"]
        func ctr(_ args: [String]) throws -> TestEnv.Result { try TestEnv.run(ctrBase + args, timeout: 120) }
        let imported = try ctr(["images", "import", "--base-name", "bulkhead.test/busybox", dir + "/image.tar"])
        #expect(imported.code == 0, "\(imported.stderr)")
        let image = "bulkhead.test/busybox:latest"

        let run = try ctr(["run", "--rm", "--runc-binary", TestEnv.bulkhead, image, "bh-run-\(getpid())", "sh", "-c", "echo hello; exit 4"])
        #expect(run.code == 4, "\(run.stderr)")
        #expect(run.stdout.contains("hello"))

        let id = "bh-exec-\(getpid())"
        let started = try ctr(["run", "-d", "--runc-binary", TestEnv.bulkhead, image, id, "sleep", "300"])
        #expect(started.code == 0, "\(started.stderr)")
        let exec = try ctr(["task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo from-exec; exit 6"])
        #expect(exec.code == 6, "\(exec.stderr)")
        #expect(exec.stdout.contains("from-exec"))
        let tasks = try ctr(["task", "ls"])
        #expect(tasks.stdout.contains(id) && tasks.stdout.contains("RUNNING"), "\(tasks.stdout)")
        #expect(try ctr(["task", "kill", "--signal", "SIGKILL", id]).code == 0)
        for _ in 0..<100 where !(try ctr(["task", "ls"]).stdout.contains("STOPPED")) { usleep(50_000) }
        #expect(try ctr(["task", "ls"]).stdout.contains("STOPPED"))
        let rmTask = try ctr(["task", "rm", id])
        #expect(rmTask.code == 0, "\(rmTask.stderr)")
        #expect(try ctr(["containers", "rm", id]).code == 0)
    }
}
