import CShims
import Foundation
import LinuxOS
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The engine's side of `--console-socket` for the tests: receives the pty master, optionally sets a window
/// size on it and types a line, and collects what the guest writes to the terminal.
final class TestConsole: @unchecked Sendable {
    let path: String
    let listener: Int32
    private let lock = NSLock()
    private var collected = ""
    private let done = DispatchSemaphore(value: 0)

    init(path: String, resize: (rows: UInt16, columns: UInt16)? = nil, type: String? = nil) throws {
        self.path = path
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { dst in for (i, b) in path.utf8.enumerated() { dst[i] = b } }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0, listen(listener, 1) == 0 else { throw POSIXError(.EADDRINUSE) }
        Thread.detachNewThread { [self] in self.serve(resize: resize, type: type) }
    }

    private func serve(resize: (rows: UInt16, columns: UInt16)?, type: String?) {
        defer { done.signal() }
        let conn = accept(listener, nil, nil)
        guard conn >= 0 else { return }
        var name = [CChar](repeating: 0, count: 256)
        let master = bh_recv_fd(conn, &name, 255)
        close(conn)
        guard master >= 0 else { return }
        defer { close(master) }
        if let resize { _ = bh_set_winsize(master, resize.rows, resize.columns) }
        if let type { _ = type.withCString { write(master, $0, strlen($0)) } }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(master, &buffer, buffer.count)
            if n <= 0 { break }  // EIO once the relay closes its slave
            lock.lock(); collected += String(decoding: buffer[0..<n], as: UTF8.self); lock.unlock()
        }
    }

    var output: String { lock.lock(); defer { lock.unlock() }; return collected }

    func wait(timeout: Double = 120) -> String {
        _ = done.wait(timeout: .now() + timeout)
        return output
    }

    deinit { close(listener); unlink(path) }
}

/// exec, ps, stats, pause/resume and terminals in a microVM: one VM boot for the verbs against a running
/// container, one for a terminal container (each boot costs seconds under TCG).
@Suite(.serialized) struct MicroVMTierExecTests {
    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func execPsStatsPauseResumeInARunningVM() throws {
        let s = try Tier.Scratch("exec", args: ["sh", "-c", "echo ready; while true; do sleep 1; done"], annotation: true)
        let id = "exec"
        let log = s.dir + "/out.log"
        // The container gets namespaces of its own inside the guest; execs must join them.
        var spec = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s.bundle + "/config.json"))) as! [String: Any]
        spec["linux"] = ["namespaces": [["type": "pid"], ["type": "mount"], ["type": "ipc"], ["type": "uts"]]]
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: s.bundle + "/config.json"))
        #expect(try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) create -b \(s.bundle) \(id) >\(log) 2>&1 </dev/null") == 0,
                "create failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        defer { _ = try? Tier.run(s.globals + ["delete", "--force", id]) }
        // exec before start: refused, as runc does.
        let early = try Tier.run(s.globals + ["exec", id, "true"])
        #expect(early.code != 0 && early.stderr.contains("not running"), "stderr: \(early.stderr)")
        #expect(try Tier.run(s.globals + ["start", id]).code == 0)
        #expect(Tier.waitUntil(120) { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("ready") })

        // QEMU runs in a host memory cgroup of its own, limited to guest RAM (256 MiB) + 256 MiB of overhead.
        let qemu = (try Tier.record(s, id)["extra"] as? [String: String])?["qemuPid"].flatMap(Int32.init) ?? 0
        #expect(Tier.hostMemoryLimit(of: qemu) == 512 << 20, "QEMU's host memory cgroup limit")

        // Exit status, stdout and stderr of an exec'd process.
        let r = try Tier.run(s.globals + ["exec", id, "sh", "-c", "echo out; echo err >&2; exit 5"])
        #expect(r.code == 5, "stderr: \(r.stderr)")
        #expect(r.text == "out\n")
        #expect(r.stderr.contains("err"))
        // Stdin reaches it and comes back byte-identical (4 MiB: both directions far beyond the sockets' buffers).
        let input = s.dir + "/input"
        let payload = Data((0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try payload.write(to: URL(fileURLWithPath: input))
        let cat = try Tier.run(s.globals + ["exec", id, "cat"], stdinFile: input)
        #expect(cat.code == 0, "stderr: \(cat.stderr)")
        let same = cat.stdout == payload
        #expect(same, "exec cat returned \(cat.stdout.count) bytes of \(payload.count)")
        // --process (runc's form): env and cwd from the process JSON.
        let processFile = s.dir + "/process.json"
        try #"{"user":{"uid":0,"gid":0},"args":["sh","-c","echo $FOO; pwd"],"env":["FOO=bar","PATH=/bin"],"cwd":"/tmp"}"#.write(toFile: processFile, atomically: true, encoding: .utf8)
        let p = try Tier.run(s.globals + ["exec", "--process", processFile, id])
        #expect(p.code == 0, "stderr: \(p.stderr)")
        #expect(p.text == "bar\n/tmp\n")
        // The exec joined the container's pid namespace (its pid 1 is the container's process, not the agent)
        // and runs as the user asked for.
        let joined = try Tier.run(s.globals + ["exec", "--user", "1000:1000", id, "sh", "-c", "cat /proc/1/cmdline; echo; id -u; id -g"])
        #expect(joined.code == 0, "stderr: \(joined.stderr)")
        #expect(joined.text.contains("while true") && joined.text.hasSuffix("\n1000\n1000\n"), "\(joined.text)")
        // A program that does not exist: an error naming it, not a hang.
        let missing = try Tier.run(s.globals + ["exec", id, "/no/such/program"])
        #expect(missing.code != 0)
        #expect(missing.stderr.contains("/no/such/program"), "stderr: \(missing.stderr)")
        // --detach returns at once; the pid file names the host process that stands for it.
        let detached = try Tier.run(s.globals + ["exec", "--detach", "--pid-file", s.dir + "/exec.pid", id, "sleep", "30"])
        #expect(detached.code == 0, "stderr: \(detached.stderr)")
        let execPid = Int32((try? String(contentsOfFile: s.dir + "/exec.pid", encoding: .utf8)) ?? "") ?? 0
        #expect(execPid > 1 && ChildProcess.isAlive(execPid))

        // ps lists the guest's processes (guest pids), the detached sleep among them.
        let ps = try Tier.run(s.globals + ["ps", id])
        #expect(ps.code == 0, "stderr: \(ps.stderr)")
        #expect(ps.text.hasPrefix("PID"))
        #expect(ps.text.contains("sleep 30"), "ps: \(ps.text)")
        #expect(ps.text.contains("while true"), "ps: \(ps.text)")
        // events --stats: usage from inside the guest.
        let stats = try Tier.run(s.globals + ["events", "--stats", id])
        #expect(stats.code == 0, "stderr: \(stats.stderr)")
        let event = try JSONSerialization.jsonObject(with: stats.stdout) as? [String: Any]
        let data = event?["data"] as? [String: Any]
        let memory = (data?["memory"] as? [String: Any])?["usage"] as? [String: Any]
        #expect(((memory?["usage"] as? Int) ?? 0) > 0, "stats: \(stats.text)")
        #expect((((data?["pids"] as? [String: Any])?["current"] as? Int) ?? 0) >= 2, "stats: \(stats.text)")

        // pause suspends the VM: state says paused, exec is refused; resume brings it back.
        #expect(try Tier.run(s.globals + ["pause", id]).code == 0)
        #expect(try Tier.state(s, id)["status"] as? String == "paused")
        let whilePaused = try Tier.run(s.globals + ["exec", id, "true"])
        #expect(whilePaused.code != 0 && whilePaused.stderr.contains("paused"), "stderr: \(whilePaused.stderr)")
        let resumed = try Tier.run(s.globals + ["resume", id])
        #expect(resumed.code == 0, "stderr: \(resumed.stderr)")
        #expect(try Tier.state(s, id)["status"] as? String == "running")
        #expect(try Tier.run(s.globals + ["exec", id, "true"]).code == 0)

        // exec --tty: a terminal in the guest, handed to the console socket.
        let console = try TestConsole(path: s.dir + "/exec-tty.sock")
        let tty = try Tier.run(s.globals + ["exec", "--tty", "--console-socket", console.path, id, "sh", "-c", "tty; exit 4"])
        #expect(tty.code == 4, "stderr: \(tty.stderr)")
        #expect(console.wait(timeout: 30).contains("/dev/pts/"), "terminal output: \(console.output)")

        // A signal to the exec's host process reaches the guest process.
        kill(execPid, SIGTERM)
        #expect(Tier.waitUntil(60) { !ChildProcess.isAlive(execPid) }, "the exec'd sleep did not end on SIGTERM")
        #expect(try Tier.run(s.globals + ["kill", id, "KILL"]).code == 0)
        #expect(Tier.waitUntil(60) { ((try? Tier.state(s, id))?["status"] as? String) == "stopped" })
    }

    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func terminalContainerGetsAGuestPtyAndTheEnginesWindowSize() throws {
        // The engine resizes its master right after receiving it; the guest must see that size (the spec's
        // consoleSize, 30x100, is only the starting point).
        let s = try Tier.Scratch("tty", args: ["sh", "-c", "sleep 1; tty; stty size; read line; echo got:$line"], annotation: true, terminal: true)
        let console = try TestConsole(path: s.dir + "/tty.sock", resize: (40, 120), type: "typed\n")
        let r = try Tier.run(s.globals + ["run", "-b", s.bundle, "--console-socket", console.path, "ttyc"])
        #expect(r.code == 0, "stderr: \(r.stderr)")
        let out = console.wait(timeout: 60)
        #expect(out.contains("/dev/pts/0"), "terminal output: \(out)")
        #expect(out.contains("40 120"), "terminal output: \(out)")
        #expect(out.contains("got:typed"), "terminal output: \(out)")
    }
}

/// The spec's `linux` section applied inside the guest, behind the VM boundary: namespaces, a cgroup with the
/// memory and pids limits (a memory hog is killed at the limit, the container goes on), capabilities, seccomp,
/// hostname, rlimits.
@Suite(.serialized) struct MicroVMTierLinuxSectionTests {
    @Test(.enabled(if: Tier.ready, "\(Tier.missing ?? "")"), .timeLimit(.minutes(10)))
    func namespacesCgroupLimitsAndAMemoryHogInsideTheGuest() throws {
        let script = [
            "echo pid=$$",
            "echo cgroup=$(cat /proc/self/cgroup)",
            "echo memory.max=$(cat /sys/fs/cgroup/container/memory.max)",
            "echo pids.max=$(cat /sys/fs/cgroup/container/pids.max)",
            "echo host=$(hostname)",
            "echo nofile=$(ulimit -n)",
            "echo memtotal=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)",
            "grep -E 'CapBnd|CapEff' /proc/1/status",
            "mkdir /tmp/x 2>/dev/null && echo mkdir-allowed || echo mkdir-denied",
            "echo procs=$(ls /proc | grep -c '^[0-9]')",
            // Doubling a shell variable: unbounded growth until the cgroup's OOM killer ends the subshell.
            "(a=x; while true; do a=\"$a$a\"; done)",
            "echo hog-status=$?",
            "echo $(grep oom_kill /sys/fs/cgroup/container/memory.events)",
        ].joined(separator: "; ")
        let s = try Tier.Scratch("limits", args: ["sh", "-c", script], annotation: true)
        for tool in ["hostname", "ls", "grep", "tr", "cut", "mkdir"] {
            try? FileManager.default.createSymbolicLink(atPath: s.bundle + "/rootfs/bin/" + tool, withDestinationPath: "busybox")
        }
        let spec = #"""
            {"ociVersion":"1.0.2","hostname":"limited","root":{"path":"rootfs"},
             "process":{"user":{"uid":0,"gid":0},"args":["sh","-c",\#(String(decoding: try JSONEncoder().encode(script), as: UTF8.self))],
                        "env":["PATH=/bin"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","hard":333,"soft":333}],
                        "capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_CHOWN","CAP_KILL"],"permitted":["CAP_CHOWN","CAP_KILL"]}},
             "annotations":{"bulkhead.isolation":"microvm"},
             "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"uts"},{"type":"ipc"},{"type":"network"}],
                      "resources":{"memory":{"limit":67108864},"pids":{"limit":64}},
                      "seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}}}
            """#
        try spec.write(toFile: s.bundle + "/config.json", atomically: true, encoding: .utf8)
        let r = try Tier.run(s.globals + ["run", "-b", s.bundle, "limits"])
        defer { _ = try? Tier.run(s.globals + ["delete", "--force", "limits"]) }
        #expect(r.code == 0, "stderr: \(r.stderr)")
        let out = r.text
        #expect(out.contains("pid=1\n"), "a pid namespace of its own: \(out)")
        #expect(out.contains("cgroup=0::/container\n"), "\(out)")
        #expect(out.contains("memory.max=67108864\n"), "\(out)")
        #expect(out.contains("pids.max=64\n"), "\(out)")
        #expect(out.contains("host=limited\n"), "\(out)")
        #expect(out.contains("nofile=333\n"), "\(out)")
        // The guest's other processes (the agent) are not visible from the container's pid namespace.
        // Only the container's own processes are in its /proc (sh, the $(…) subshell, ls, grep): not the guest's
        // kernel threads and agent, which are dozens.
        let procs = out.split(separator: "\n").first { $0.hasPrefix("procs=") }.flatMap { Int($0.dropFirst(6)) } ?? 0
        #expect((1...6).contains(procs), "processes visible in the container: \(procs)")
        // Capabilities and seccomp from the spec, through the namespace tier's Confine code: CAP_CHOWN (0) and
        // CAP_KILL (5) only, and mkdir refused by the filter.
        #expect(out.contains("CapBnd:\t0000000000000021"), "\(out)")
        #expect(out.contains("CapEff:\t0000000000000021"), "\(out)")
        #expect(out.contains("mkdir-denied\n"), "\(out)")
        #expect(out.contains("hog-status=137\n"), "the hog must be killed by SIGKILL at the limit: \(out)")
        #expect(out.contains("oom_kill 1") || out.contains("oom_kill 2"), "\(out)")
        // The VM itself got the limit plus 64 MiB for the guest kernel and agent (128 MiB, less what the kernel keeps).
        let memTotal = out.split(separator: "\n").first { $0.hasPrefix("memtotal=") }.flatMap { Int($0.dropFirst(9)) } ?? 0
        #expect((90_000...131_072).contains(memTotal), "guest MemTotal \(memTotal) KiB")
    }
}

extension Tier {
    /// The memory limit of a host process's cgroup (v1 memory controller, else v2), nil when none is set.
    static func hostMemoryLimit(of pid: Int32) -> Int? {
        guard let lines = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8).split(separator: "\n") else { return nil }
        if let v1 = lines.first(where: { $0.split(separator: ":", maxSplits: 2).dropFirst().first?.split(separator: ",").contains("memory") == true }) {
            let path = v1.split(separator: ":", maxSplits: 2).last.map(String.init) ?? ""
            let text = (try? String(contentsOfFile: "/sys/fs/cgroup/memory\(path)/memory.limit_in_bytes", encoding: .utf8)) ?? ""
            return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if let v2 = lines.first(where: { $0.hasPrefix("0::") }) {
            let text = (try? String(contentsOfFile: "/sys/fs/cgroup\(v2.dropFirst(3))/memory.max", encoding: .utf8)) ?? ""
            return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return nil
    }
}
