import Foundation
import LinuxOS
@testable import MicroVMBackend
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The microVM tier's `kvm` driver: Bulkhead's own VMM (`bulkhead vm run`, jailed) under `bulkhead-vm-monitor`,
/// driven through the runc verbs. kvm_pvm cannot boot a stock kernel, so on this host the guest is the `fakeagent`
/// test guest (Tests/MicroVMTests/Guests/fakeagent.c), which speaks the real guest protocol over the real
/// virtio-console ports; everything on the host side — policy, backend, monitor, VMM, jail, devices — is the
/// production path. The same lifecycle with the real kernel and agent runs where the host has hardware
/// virtualization (`endToEndWithTheGuestKernelWhereHardwareVirtualizationExists`), and is skipped, saying why,
/// where it has not.
enum KVMDriver {
    static var missing: String? {
        if getuid() != 0 { return "needs root (the VMM's jail: cgroup, mount namespace)" }
        if open("/dev/kvm", O_RDWR | O_CLOEXEC).closing() < 0 { return "/dev/kvm cannot be opened" }
        if !FreestandingGuests.hasCompiler { return "gcc is missing (it builds the test guests)" }
        if !FileManager.default.isExecutableFile(atPath: Tier.agent) { return "the static agent \(Tier.agent) is not built (scripts/setup builds it; the initramfs holds it)" }
        if !FileManager.default.isExecutableFile(atPath: Tier.buildDir + "/bulkhead-vm-monitor") { return "bulkhead-vm-monitor is not built" }
        if !FileManager.default.isExecutableFile(atPath: "/bin/busybox") { return "busybox-static is missing" }
        return nil
    }
    static var ready: Bool { missing == nil }

    /// Hardware virtualization that boots a stock kernel (what `auto` needs to pick kvm), else why not.
    static var hardwareMissing: String? {
        let probe = HypervisorProbe.probe()
        if probe.domainType != "kvm" { return "no hardware virtualization here, so the guest kernel cannot boot under Bulkhead's VMM: \(probe.reason)" }
        if !Tier.ready { return Tier.missing }
        return nil
    }

    /// A policy whose tenant rule runs microVMs on the kvm driver, with `kernel` (nil: Bulkhead's guest kernel).
    static func policy(_ s: Tier.Scratch, kernel: String?) throws -> String {
        try Tier.writePolicy(s, rule: "own-vmm", microvm: "      hypervisor: kvm" + (kernel.map { "\n      kernel: \($0)" } ?? ""))
    }

    static func admission(_ s: Tier.Scratch, _ policy: String) -> [String] {
        ["--policy", policy, "--audit-log", s.dir + "/audit.jsonl", "--tenant", "acme"]
    }

    static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    static func processState(_ pid: Int32) -> String {
        read("/proc/\(pid)/status").split(separator: "\n").first { $0.hasPrefix("State:") }.map(String.init) ?? "gone"
    }
}

extension Tier {
    /// A policy (mode 0644 in a 0755 directory, as the trust check wants) whose rule `rule` sends every tenant's
    /// workload to a microVM with the given `microvm:` settings (indented six spaces) and extra rule lines; others
    /// go to namespaces.
    static func writePolicy(_ s: Scratch, rule: String, microvm: String, extra: String = "") throws -> String {
        chmod(s.dir, 0o755)
        let path = s.dir + "/policy.yaml"
        try """
            version: 1
            rules:
              - name: \(rule)
                match: {has_tenant: true}
                decide: microvm
                microvm:
            \(microvm)
            \(extra)
              - name: default
                decide: namespace
            """.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o644)
        return path
    }
}

extension Tier.Scratch {
    /// A test that failed half-way must not leave a VM running (a busy-polling test guest costs a core).
    func forceDelete(_ id: String) { _ = try? Tier.run(globals + ["delete", "--force", id], timeout: 60) }
}

extension Int32 {
    /// Closes an fd just opened for a check, returning it (negative: the open failed).
    func closing() -> Int32 { if self >= 0 { close(self) }; return self }
}

@Suite(.serialized) struct KVMDriverTests {
    @Test(.enabled(if: KVMDriver.ready, "\(KVMDriver.missing ?? "")"), .timeLimit(.minutes(5)))
    func runThroughBulkheadsOwnVMMReturnsTheWorkloadsStatus() throws {
        let s = try Tier.Scratch("kvm-run", args: ["sh", "-c", "fake-exit=3"])
        defer { s.forceDelete("kvm-run") }
        let policy = try KVMDriver.policy(s, kernel: try FreestandingGuests.elf("fakeagent"))
        let r = try Tier.run(s.globals + ["run"] + KVMDriver.admission(s, policy) + ["-b", s.bundle, "kvm-run"], timeout: 120)
        #expect(r.code == 3, "stderr: \(r.stderr)")
        #expect(r.text == "fake agent: container kvm-run started\n", "stdout: \(r.text)")
        #expect(try Tier.run(s.globals + ["list", "-q"]).text.isEmpty, "run left the container behind")
        let audit = KVMDriver.read(s.dir + "/audit.jsonl")
        #expect(audit.contains("\"own-vmm\""), "audit: \(audit)")
    }

    /// stdin → guest → stdout through the monitor, the VMM's virtio-console ports and back, byte for byte. (256 KiB:
    /// the fake agent busy-polls its queues, so on 2 shared cores each hand-off waits for the scheduler; the 10 MB
    /// test of the libvirt driver uses the real agent.)
    @Test(.enabled(if: KVMDriver.ready, "\(KVMDriver.missing ?? "")"), .timeLimit(.minutes(5)))
    func stdioCrossesTheOwnVMMsConsolePortsByteForByte() throws {
        let s = try Tier.Scratch("kvm-cat", args: ["fake-cat", "fake-exit=5"])
        defer { s.forceDelete("kvm-cat") }
        let policy = try KVMDriver.policy(s, kernel: try FreestandingGuests.elf("fakeagent"))
        var generator = SystemRandomNumberGenerator()
        let payload = (0..<(256 << 10)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let input = s.dir + "/input"
        try Data(payload).write(to: URL(fileURLWithPath: input))
        let r = try Tier.run(s.globals + ["run"] + KVMDriver.admission(s, policy) + ["-b", s.bundle, "kvm-cat"], stdinFile: input, timeout: 240)
        #expect(r.code == 5, "stderr: \(r.stderr)")
        let banner = Data("fake agent: container kvm-cat started\n".utf8)
        #expect(r.stdout.prefix(banner.count) == banner)
        let echoed = r.stdout.dropFirst(banner.count)
        #expect(echoed.count == payload.count)
        let identical = echoed.elementsEqual(payload)
        #expect(identical, "stdout differs from stdin (\(echoed.count) bytes back)")
    }

    /// create → start → exec → ps → stats → pause → resume → kill TERM → delete, as an engine drives a container;
    /// the VMM is its own jailed process (own memory cgroup), stopped while paused, gone (with its cgroup) after.
    @Test(.enabled(if: KVMDriver.ready, "\(KVMDriver.missing ?? "")"), .timeLimit(.minutes(5)))
    func lifecycleExecPsStatsPauseAndSignalsOnTheOwnVMM() throws {
        let s = try Tier.Scratch("kvm-life", args: ["fake-sleep"])
        defer { s.forceDelete("kvm-life") }
        let policy = try KVMDriver.policy(s, kernel: try FreestandingGuests.elf("fakeagent"))
        let id = "kvm-life"
        let log = s.dir + "/out.log"
        let created = try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) create \(KVMDriver.admission(s, policy).joined(separator: " ")) -b \(s.bundle) \(id) >\(log) 2>&1 </dev/null", timeout: 120)
        #expect(created == 0, "create failed: \(KVMDriver.read(log))")
        #expect(try Tier.state(s, id)["status"] as? String == "created")
        let extra = try Tier.record(s, id)["extra"] as? [String: String] ?? [:]
        #expect(extra["vm.driver"] == "kvm", "record: \(extra)")
        #expect(extra["vm.driverReason"]?.contains("own-vmm") == true)
        #expect(extra["domain"] == nil && extra["embedRoot"] == nil, "no libvirt domain for the kvm driver")
        let vmm = extra["qemuPid"].flatMap(Int32.init) ?? 0
        #expect(vmm > 0 && ChildProcess.isAlive(vmm))
        let cmdline = KVMDriver.read("/proc/\(vmm)/cmdline").replacingOccurrences(of: "\0", with: " ")
        #expect(cmdline.contains("vm run") && cmdline.contains("--port bulkhead.control="), "VMM command: \(cmdline)")
        // The jail: the VMM's memory cgroup is its own.
        #expect(KVMDriver.read("/proc/\(vmm)/cgroup").contains("/bulkhead/vm-\(vmm)"), "cgroups: \(KVMDriver.read("/proc/\(vmm)/cgroup"))")

        #expect(try Tier.run(s.globals + ["start", id]).code == 0)
        #expect(try Tier.state(s, id)["status"] as? String == "running")
        #expect(Tier.waitUntil(30) { KVMDriver.read(log).contains("fake agent: container kvm-life started") }, "output: \(KVMDriver.read(log))")

        let exec = try Tier.run(s.globals + ["exec", id, "echo", "hi"], timeout: 60)
        #expect(exec.code == 0, "exec stderr: \(exec.stderr)")
        #expect(exec.text == "fake agent: exec 1\n", "exec stdout: \(exec.text)")
        let ps = try Tier.run(s.globals + ["ps", id])
        #expect(ps.code == 0 && ps.text.contains("fake-agent"), "ps: \(ps.text) \(ps.stderr)")
        let stats = try Tier.run(s.globals + ["events", "--stats", id])
        #expect(stats.text.contains("123456789"), "stats: \(stats.text) \(stats.stderr)")

        #expect(try Tier.run(s.globals + ["pause", id]).code == 0)
        #expect(try Tier.state(s, id)["status"] as? String == "paused")
        #expect(KVMDriver.processState(vmm).contains("T"), "a paused VM's VMM is stopped: \(KVMDriver.processState(vmm))")
        #expect(try Tier.run(s.globals + ["resume", id]).code == 0)
        #expect(try Tier.state(s, id)["status"] as? String == "running")
        #expect(!KVMDriver.processState(vmm).contains("T"))

        #expect(try Tier.run(s.globals + ["kill", id, "TERM"]).code == 0)
        #expect(Tier.waitUntil(30) { ((try? Tier.state(s, id))?["status"] as? String) == "stopped" })
        #expect(KVMDriver.read(log).contains("fake agent: signal 15"), "output: \(KVMDriver.read(log))")
        #expect(try Tier.run(s.globals + ["delete", id]).code == 0)
        #expect(Tier.waitUntil(10) { !KVMDriver.processState(vmm).contains("S") && !KVMDriver.processState(vmm).contains("R") })
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/bulkhead/vm-\(vmm)"), "the VMM's cgroup is left behind")
    }

    /// `kill --all` reaches the workload and every exec'd process in the guest (runc's --all); plain `kill` only the
    /// workload.
    @Test(.enabled(if: KVMDriver.ready, "\(KVMDriver.missing ?? "")"), .timeLimit(.minutes(5)))
    func killAllSignalsTheWorkloadAndEveryExecdProcess() throws {
        let s = try Tier.Scratch("kvm-all", args: ["fake-sleep"])
        defer { s.forceDelete("kvm-all") }
        let policy = try KVMDriver.policy(s, kernel: try FreestandingGuests.elf("fakeagent"))
        let id = "kvm-all"
        let log = s.dir + "/out.log", execLog = s.dir + "/exec.log"
        #expect(try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) run -d \(KVMDriver.admission(s, policy).joined(separator: " ")) -b \(s.bundle) \(id) >\(log) 2>&1 </dev/null", timeout: 120) == 0)
        // A long-running exec, detached: its host stand-in's pid goes to the pid file.
        #expect(try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) exec -d --pid-file \(s.dir)/exec.pid \(id) fake-sleep >\(execLog) 2>&1 </dev/null", timeout: 60) == 0)
        let execPid = Int32(KVMDriver.read(s.dir + "/exec.pid")) ?? 0
        #expect(execPid > 0 && ChildProcess.isAlive(execPid))
        #expect(Tier.waitUntil(30) { KVMDriver.read(execLog).contains("fake agent: exec 1") })
        #expect(try Tier.run(s.globals + ["kill", "--all", id, "TERM"]).code == 0)
        #expect(Tier.waitUntil(30) { KVMDriver.read(execLog).contains("fake agent: exec got signal 15") }, "exec output: \(KVMDriver.read(execLog))")
        #expect(Tier.waitUntil(30) { KVMDriver.read(log).contains("fake agent: signal 15") }, "output: \(KVMDriver.read(log))")
        #expect(Tier.waitUntil(30) { ((try? Tier.state(s, id))?["status"] as? String) == "stopped" })
        #expect(Tier.waitUntil(10) { let st = KVMDriver.processState(execPid); return st == "gone" || st.contains("Z") }, "the exec stand-in still runs")
    }

    /// An exec client that stops reading (stopped with SIGSTOP while its process floods 2 MiB) stalls nothing: the
    /// monitor queues its output, keeps answering, and hands it all over once the client reads again.
    @Test(.enabled(if: KVMDriver.ready, "\(KVMDriver.missing ?? "")"), .timeLimit(.minutes(5)))
    func aStalledExecClientStallsNothingElse() throws {
        let s = try Tier.Scratch("kvm-stall", args: ["fake-sleep"])
        defer { s.forceDelete("kvm-stall") }
        let policy = try KVMDriver.policy(s, kernel: try FreestandingGuests.elf("fakeagent"))
        let id = "kvm-stall"
        #expect(try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) run -d \(KVMDriver.admission(s, policy).joined(separator: " ")) -b \(s.bundle) \(id) >/dev/null 2>&1 </dev/null", timeout: 120) == 0)
        let execLog = s.dir + "/exec.out"
        // The stand-in stops itself before the guest's output can reach it... as far as a shell allows: it is
        // stopped right after it started, and the flood is far more than the socket buffers hold.
        #expect(try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) exec -d --pid-file \(s.dir)/exec.pid \(id) fake-flood >\(execLog) 2>/dev/null </dev/null; kill -STOP $(cat \(s.dir)/exec.pid)", timeout: 60) == 0)
        let execPid = Int32(KVMDriver.read(s.dir + "/exec.pid")) ?? 0
        #expect(execPid > 0)
        defer { kill(execPid, SIGCONT) }
        // The guest (single-threaded) is busy until its flood is out; the monitor has taken it all by then.
        #expect(Tier.waitUntil(120) { KVMDriver.read("\(s.root)/\(id)/console.log").contains("fake agent: flood sent") })
        // The monitor still answers while the client is stopped.
        let ps = try Tier.run(s.globals + ["ps", id], timeout: 20)
        #expect(ps.code == 0 && ps.text.contains("fake-agent"), "ps while an exec client is stopped: \(ps.stderr)")
        kill(execPid, SIGCONT)
        #expect(Tier.waitUntil(120) { let st = KVMDriver.processState(execPid); return st == "gone" || st.contains("Z") })
        let size = (try? FileManager.default.attributesOfItem(atPath: execLog)[.size] as? Int) ?? 0
        #expect(size == "fake agent: exec 1\n".utf8.count + (2 << 20), "exec output: \(size) bytes")
        #expect(try Tier.run(s.globals + ["kill", id, "KILL"]).code == 0)
    }

    /// `kill -9` of the monitor takes the VMM with it (parent-death signal); `delete --force` removes the rest.
    @Test(.enabled(if: KVMDriver.ready, "\(KVMDriver.missing ?? "")"), .timeLimit(.minutes(5)))
    func killingTheMonitorEndsTheVMMAndDeleteForceCleansUp() throws {
        let s = try Tier.Scratch("kvm-crash", args: ["fake-sleep"])
        defer { s.forceDelete("kvm-crash") }
        let policy = try KVMDriver.policy(s, kernel: try FreestandingGuests.elf("fakeagent"))
        let id = "kvm-crash"
        #expect(try Tier.runShell("\(Tier.bulkhead) \(s.globals.joined(separator: " ")) run -d \(KVMDriver.admission(s, policy).joined(separator: " ")) -b \(s.bundle) \(id) >/dev/null 2>&1 </dev/null", timeout: 120) == 0)
        let record = try Tier.record(s, id)
        let monitor = Int32(record["pid"] as? Int ?? 0)
        let vmm = (record["extra"] as? [String: String])?["qemuPid"].flatMap(Int32.init) ?? 0
        #expect(monitor > 0 && vmm > 0)
        kill(monitor, SIGKILL)
        // Dead (a zombie until its new parent reaps it) within moments.
        #expect(Tier.waitUntil(10) { let st = KVMDriver.processState(vmm); return st == "gone" || st.contains("Z") }, "VMM: \(KVMDriver.processState(vmm))")
        #expect(try Tier.state(s, id)["status"] as? String == "stopped")
        let r = try Tier.run(s.globals + ["delete", "--force", id])
        #expect(r.code == 0, "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/bulkhead/vm-\(vmm)"), "the VMM's cgroup is left behind")
        #expect(!FileManager.default.fileExists(atPath: s.dataRoot + "/microvm/containers/" + id))
    }

    /// A guest that never becomes an agent (it resets at once) is an error that says what the VMM saw and, as the
    /// probe would not have picked kvm here, which rule forced it.
    @Test(.enabled(if: KVMDriver.ready, "\(KVMDriver.missing ?? "")"), .timeLimit(.minutes(5)))
    func aGuestThatNeverAnswersIsAnErrorNamingTheVMMsReasonAndTheRule() throws {
        let s = try Tier.Scratch("kvm-bad", args: ["true"])
        let policy = try KVMDriver.policy(s, kernel: try FreestandingGuests.elf("reset"))
        let r = try Tier.run(s.globals + ["run"] + KVMDriver.admission(s, policy) + ["-b", s.bundle, "kvm-bad"], timeout: 120)
        #expect(r.code == 1)
        #expect(r.stderr.contains("guest requested a reset"), "stderr: \(r.stderr)")
        if HypervisorProbe.probe().autoDriver != "kvm" {
            #expect(r.stderr.contains("policy rule 'own-vmm' asks for hypervisor kvm"), "stderr: \(r.stderr)")
        }
        #expect(try Tier.run(s.globals + ["list", "-q"]).text.isEmpty, "the failed container is left behind")
    }

    /// The boot probe behind `hypervisor: auto`: a kernel that reaches its root-mount panic and resets counts as
    /// booting; a guest that resets without it, or never ends, does not.
    @Test(.enabled(if: KVMDriver.ready, "\(KVMDriver.missing ?? "")"), .timeLimit(.minutes(3)))
    func theBootProbeRunsTheKernelUnderTheOwnVMM() throws {
        let vmm = Tier.bulkhead
        #expect(HypervisorProbe.kernelBootProblem(vmm: vmm, kernel: try FreestandingGuests.elf("panicprobe")) == nil)
        let reset = HypervisorProbe.kernelBootProblem(vmm: vmm, kernel: try FreestandingGuests.elf("reset"))
        #expect(reset?.contains("root-mount panic") == true, "\(reset ?? "nil")")
        let halted = HypervisorProbe.kernelBootProblem(vmm: vmm, kernel: try FreestandingGuests.elf("hello"), timeoutMs: 1500)
        #expect(halted?.contains("within 1 s") == true, "\(halted ?? "nil")")
        #expect(HypervisorProbe.kernelBootProblem(vmm: vmm, kernel: "/nonexistent-kernel") != nil)
    }

    /// The real guest kernel and agent on the kvm driver: only where hardware virtualization exists.
    @Test(.enabled(if: KVMDriver.hardwareMissing == nil, "\(KVMDriver.hardwareMissing ?? "")"), .timeLimit(.minutes(5)))
    func endToEndWithTheGuestKernelWhereHardwareVirtualizationExists() throws {
        let s = try Tier.Scratch("kvm-e2e", args: ["sh", "-c", "uname -r; exit 3"])
        defer { s.forceDelete("kvm-e2e") }
        let policy = try KVMDriver.policy(s, kernel: nil)
        let r = try Tier.run(s.globals + ["run"] + KVMDriver.admission(s, policy) + ["-b", s.bundle, "kvm-e2e"], timeout: 120)
        #expect(r.code == 3, "stderr: \(r.stderr)")
        let release = KVMDriver.read((Tier.kernelDirectory ?? "") + "/release").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(r.text == release + "\n", "stdout: \(r.text)")
    }
}

/// Driver choice without VMs: the policy's hypervisor, else the probe.
struct DriverSelectionTests {
    let kvmProbe = HypervisorProbe(domainType: "kvm", reason: "hw", driver: "kvm", driverReason: "hw and boots")
    let tcgProbe = HypervisorProbe(domainType: "qemu", reason: "pvm", driver: "libvirt", driverReason: "kvm_pvm: libvirt")

    @Test func autoFollowsTheProbeAndThePolicyOverridesIt() throws {
        #expect(try MicroVMBackend.selectDriver(nil, probe: kvmProbe).driver == "kvm")
        #expect(try MicroVMBackend.selectDriver(["vm.hypervisor": "auto"], probe: tcgProbe).driver == "libvirt")
        #expect(try MicroVMBackend.selectDriver(["vm.hypervisor": "libvirt", "vm.rule": "r"], probe: kvmProbe).driver == "libvirt")
        let forced = try MicroVMBackend.selectDriver(["vm.hypervisor": "kvm", "vm.rule": "r"], probe: tcgProbe, kvmDevice: "/dev/null")
        #expect(forced.driver == "kvm")
        #expect(forced.reason.contains("rule 'r'") && forced.reason.contains("would not pick it"))
    }

    @Test func kvmWithoutAUsableDeviceIsAnErrorNamingTheRule() {
        #expect {
            try MicroVMBackend.selectDriver(["vm.hypervisor": "kvm", "vm.rule": "hostile"], probe: tcgProbe, kvmDevice: "/nonexistent/kvm")
        } throws: { error in
            "\(error)".contains("policy rule 'hostile' asks for hypervisor kvm") && "\(error)".contains("/nonexistent/kvm cannot be opened")
        }
    }

    @Test func theProbePicksKVMOnlyWhereTheKernelBoots() throws {
        let dir = "/tmp/bulkhead-probe-\(UInt32.random(in: 0...UInt32.max))"
        try HostPath.makeDirectories(dir + "/kvm_intel", mode: 0o700)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let boots = HypervisorProbe.probe(sysModule: dir, kvmDevice: "/dev/null", bootCheck: { nil })
        #expect(boots.domainType == "kvm" && boots.autoDriver == "kvm")
        let fails = HypervisorProbe.probe(sysModule: dir, kvmDevice: "/dev/null", bootCheck: { "timed out" })
        #expect(fails.domainType == "kvm" && fails.autoDriver == "libvirt")
        #expect(fails.driverReason?.contains("timed out") == true)
        try HostPath.makeDirectories(dir + "/kvm_pvm", mode: 0o700)
        var asked = false
        let pvm = HypervisorProbe.probe(sysModule: dir, kvmDevice: "/dev/null", bootCheck: { asked = true; return nil })
        #expect(pvm.autoDriver == "libvirt" && !asked, "kvm_pvm is known not to boot a stock kernel: no boot attempt")
    }
}
