import Foundation
import LinuxOS
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The microVM tier through the real CLI on this host: libvirt's embedded QEMU driver, TCG (kvm_pvm cannot boot
/// a stock kernel), our guest kernel and agent, busybox bundles.
enum Tier {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static let buildDir: String = {
        for config in ["debug", "release"] where FileManager.default.isExecutableFile(atPath: "\(packageRoot)/.build/\(config)/bulkhead-vm-monitor") {
            return "\(packageRoot)/.build/\(config)"
        }
        return "\(packageRoot)/.build/debug"
    }()
    static var bulkhead: String { buildDir + "/bulkhead" }
    static let agent = ProcessInfo.processInfo.environment["BULKHEAD_AGENT"] ?? packageRoot + "/.build/release/bulkhead-agent"
    static let kernelDirectory: String? = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [packageRoot + "/kernels/build", "--cached"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        guard (try? p.run()) != nil else { return nil }
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let dir = out.split(separator: "\n").last.map(String.init) ?? ""
        return p.terminationStatus == 0 && FileManager.default.fileExists(atPath: dir + "/bzImage") ? dir : nil
    }()

    static var missing: String? {
        if getuid() != 0 { return "needs root (libvirt's embedded driver runs QEMU as root)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64") { return "qemu-system-x86_64 is missing (qemu-system-x86)" }
        if !FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so") {
            return "libvirt's QEMU driver is missing (libvirt-daemon-driver-qemu)"
        }
        if getpwnam("libvirt-qemu") == nil { return "user libvirt-qemu is missing (libvirt's embedded driver needs it; scripts/setup creates it)" }
        if kernelDirectory == nil { return "the guest kernel is not built: run kernels/build (scripts/setup does)" }
        if !FileManager.default.isExecutableFile(atPath: agent) { return "the static agent \(agent) is not built (scripts/setup builds it)" }
        if !FileManager.default.isExecutableFile(atPath: buildDir + "/bulkhead-vm-monitor") { return "bulkhead-vm-monitor is not built" }
        if !FileManager.default.isExecutableFile(atPath: "/bin/busybox") { return "busybox-static is missing" }
        return nil
    }
    static var ready: Bool { missing == nil }

    /// A scratch state root, data root and busybox bundle.
    final class Scratch {
        let dir: String
        var root: String { dir + "/run" }
        var dataRoot: String { dir + "/data" }
        var bundle: String { dir + "/bundle" }

        init(_ tag: String, args: [String], annotation: Bool = false, terminal: Bool = false) throws {
            dir = "/tmp/bhvm-\(tag)-\(UInt16.random(in: 0...UInt16.max))"
            let bin = bundle + "/rootfs/bin"
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            for d in ["etc", "tmp", "proc", "sys", "dev"] {
                try FileManager.default.createDirectory(atPath: bundle + "/rootfs/" + d, withIntermediateDirectories: true)
            }
            try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: bin + "/busybox")
            for a in ["sh", "cat", "uname", "echo", "sleep", "true", "wc", "head", "tty", "stty", "pwd", "dd", "id"] {
                try FileManager.default.createSymbolicLink(atPath: bin + "/" + a, withDestinationPath: "busybox")
            }
            try "root:x:0:0:root:/:/bin/sh\n".write(toFile: bundle + "/rootfs/etc/passwd", atomically: true, encoding: .utf8)
            let quoted = args.map { "\"\($0.replacingOccurrences(of: "\"", with: "\\\""))\"" }.joined(separator: ",")
            let annotations = annotation ? #","annotations":{"bulkhead.isolation":"microvm"}"# : ""
            let spec = #"{"ociVersion":"1.0.2","hostname":"guest","root":{"path":"rootfs"},"process":{"terminal":\#(terminal),"consoleSize":{"height":30,"width":100},"user":{"uid":0,"gid":0},"args":[\#(quoted)],"env":["PATH=/bin","HOME=/"],"cwd":"/"}\#(annotations)}"#
            try spec.write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8)
        }

        var globals: [String] { ["--root", root, "--data-root", dataRoot] }

        deinit { try? FileManager.default.removeItem(atPath: dir) }
    }

    struct Result {
        var code: Int32
        var stdout: Data
        var stderr: String
        var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    /// This process's environment plus the agent and kernel the tests use.
    static var variables: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["BULKHEAD_AGENT"] = agent
        env["BULKHEAD_KERNEL_DIR"] = kernelDirectory
        return env
    }

    static var environment: [String] { variables.map { "\($0.key)=\($0.value)" } }

    /// Runs the CLI with stdin from a file, stdout and stderr to files.
    static func run(_ arguments: [String], stdinFile: String = "/dev/null", timeout: TimeInterval = 600) throws -> Result {
        let r = try ToolRunner.run([bulkhead] + arguments, environment: variables, stdinFile: stdinFile, timeout: timeout)
        return Result(code: r.code, stdout: r.stdout, stderr: r.stderr)
    }

    static func state(_ s: Scratch, _ id: String) throws -> [String: Any] {
        let r = try run(s.globals + ["state", id])
        guard r.code == 0, let json = try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else { return ["error": r.stderr] }
        return json
    }

    /// The container's record as bulkhead keeps it (for the QEMU pid and the embed root).
    static func record(_ s: Scratch, _ id: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(s.root)/\(id)/state.json"))
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    static func waitUntil(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }
}

@Suite(.serialized) struct MicroVMTierCLITests {
    /// Image form: `bulkhead run --isolation microvm IMAGE uname -r` prints the guest kernel's release.
    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func runOfAnImagePrintsTheGuestKernelRelease() throws {
        let s = try Tier.Scratch("uname", args: ["true"])
        let archive = s.dir + "/busybox.oci.tar"
        #expect(try Tier.runShell("\(Tier.packageRoot)/scripts/make-busybox-image \(archive) >/dev/null 2>&1") == 0, "make-busybox-image failed")
        #expect(try Tier.run(s.globals + ["image", "import", archive, "--name", "bb"]).code == 0)
        let r = try Tier.run(s.globals + ["run", "--rm", "--isolation", "microvm", "--name", "uname", "bb", "uname", "-r"])
        let release = try String(contentsOfFile: Tier.kernelDirectory! + "/release", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(r.code == 0, "stderr: \(r.stderr)")
        #expect(r.text == release + "\n")
        var host = utsname()
        uname(&host)
        let hostRelease = withUnsafeBytes(of: &host.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        #expect(!r.text.contains(hostRelease), "the guest must not report the host's kernel")
        // The rootfs image is shared per manifest digest; nothing of the container is left behind by --rm.
        let images = (try? FileManager.default.contentsOfDirectory(atPath: s.dataRoot + "/microvm/images")) ?? []
        #expect(images.contains { $0.hasPrefix("sha256-") && $0.hasSuffix(".erofs") })
        #expect(!FileManager.default.fileExists(atPath: "\(s.root)/uname"))
        #expect(!FileManager.default.fileExists(atPath: "\(s.dataRoot)/libvirt/uname"))
    }

    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func exitStatusComesBack() throws {
        let s = try Tier.Scratch("exit", args: ["sh", "-c", "echo to-stderr >&2; exit 3"], annotation: true)
        let r = try Tier.run(s.globals + ["run", "-b", s.bundle, "exit3"])
        #expect(r.code == 3, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("to-stderr"))
    }

    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func tenMegabytesThroughCat() throws {
        let s = try Tier.Scratch("cat", args: ["cat"])
        var payload = [UInt8](repeating: 0, count: 10 << 20)
        for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: (i &* 2654435761) >> 7) }
        let input = s.dir + "/input"
        try Data(payload).write(to: URL(fileURLWithPath: input))
        let r = try Tier.run(s.globals + ["run", "--isolation", "microvm", "-b", s.bundle, "cat"], stdinFile: input)
        #expect(r.code == 0, "stderr: \(r.stderr)")
        // Compared outside #expect: a failed == on two 10 MB collections makes Swift Testing diff them (minutes).
        let identical = r.stdout == Data(payload)
        #expect(r.stdout.count == payload.count)
        #expect(identical, "stdout differs from stdin (\(r.stdout.count) bytes back)")
    }

    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func lifecycleAndSIGTERMReachesTheWorkload() throws {
        let s = try Tier.Scratch("life", args: ["sh", "-c", "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 1; done"], annotation: true)
        let id = "life"
        let log = s.dir + "/out.log"
        // `create` with stdio to a file, as an engine does; the monitor keeps it.
        let created = try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) create -b \(s.bundle) --pid-file \(s.dir)/pid \(id) >\(log) 2>&1 </dev/null")
        #expect(created == 0, "create failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        var st = try Tier.state(s, id)
        #expect(st["status"] as? String == "created")
        let pid = (st["pid"] as? Int) ?? 0
        #expect(pid > 0)
        #expect((try? String(contentsOfFile: s.dir + "/pid", encoding: .utf8)) == String(pid))
        #expect(try Tier.run(s.globals + ["start", id]).code == 0)
        st = try Tier.state(s, id)
        #expect(st["status"] as? String == "running")
        #expect(Tier.waitUntil(120) { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("ready") })
        #expect(try Tier.run(s.globals + ["kill", id, "TERM"]).code == 0)
        #expect(Tier.waitUntil(60) { ((try? Tier.state(s, id))?["status"] as? String) == "stopped" })
        #expect(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("got-term"))
        let record = try Tier.record(s, id)
        let extra = record["extra"] as? [String: String] ?? [:]
        #expect(extra["domainType"] == "qemu", "this host (kvm_pvm) must get TCG")
        #expect(try Tier.run(s.globals + ["delete", id]).code == 0)
        let after = try Tier.run(s.globals + ["state", id])
        #expect(after.code == 1 && after.stderr.contains("does not exist"))
        if let q = extra["qemuPid"].flatMap(Int32.init) { #expect(!ChildProcess.isAlive(q), "QEMU still runs after delete") }
    }

    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func deleteForceAfterTheMonitorWasKilled() throws {
        let s = try Tier.Scratch("crash", args: ["sleep", "1000"], annotation: true)
        let id = "crash"
        #expect(try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) create -b \(s.bundle) \(id) >/dev/null 2>&1 </dev/null") == 0)
        #expect(try Tier.run(s.globals + ["start", id]).code == 0)
        let record = try Tier.record(s, id)
        let extra = record["extra"] as? [String: String] ?? [:]
        let monitor = Int32(record["pid"] as? Int ?? 0)
        let qemu = extra["qemuPid"].flatMap(Int32.init) ?? 0
        let embedRoot = extra["embedRoot"] ?? ""
        #expect(monitor > 0 && qemu > 0 && !embedRoot.isEmpty)
        #expect(ChildProcess.isAlive(qemu))
        kill(monitor, SIGKILL)
        #expect(Tier.waitUntil(10) { !ChildProcess.isAlive(monitor) })
        #expect(ChildProcess.isAlive(qemu), "QEMU outlives its monitor (the embedded driver daemonizes it)")
        let r = try Tier.run(s.globals + ["delete", "--force", id])
        #expect(r.code == 0, "stderr: \(r.stderr)")
        #expect(!ChildProcess.isAlive(qemu), "QEMU still runs after delete --force")
        #expect(!FileManager.default.fileExists(atPath: embedRoot), "the domain's embed root is left behind")
        let name = "guest=bulkhead-\(id)"
        let survivors = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").replacingOccurrences(of: "\0", with: " ").contains(name)
        }
        #expect(survivors.isEmpty, "processes of domain bulkhead-\(id) still run: \(survivors)")
    }
}

extension Tier {
    /// Runs a shell line (for redirections an engine would set up) with the tier's environment.
    static func runShell(_ line: String, timeout: TimeInterval = 600) throws -> Int32 {
        let pid = try ChildProcess.spawn("/bin/sh", arguments: ["sh", "-c", line], environment: environment)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 { return 255 }
            if Date() > deadline { kill(pid, SIGKILL); _ = waitpid(pid, &status, 0); break }
            usleep(5000)
        }
        return ChildProcess.exitCode(fromWaitStatus: status)
    }
}
