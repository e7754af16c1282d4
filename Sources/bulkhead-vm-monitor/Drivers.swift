import CShims
import CVirt
import GuestHost
import LinuxOS
import MicroVM
import MicroVMBackend
#if canImport(Glibc)
import Glibc
#endif

/// What the monitor needs from a hypervisor driver: start the VM (whose agent ports connect to the monitor's two
/// listening sockets), pause/resume it, and end it. Everything else — the agent protocol, stdio, signals, exec —
/// is the same for every driver.
protocol VMDriver: AnyObject {
    /// A short name for messages ("libvirt", "kvm").
    var name: String { get }
    /// Starts the VM; returns the pid of the process that runs it (QEMU, or Bulkhead's VMM), if known.
    func start() throws -> Int32?
    /// Waits for the guest to connect a port to `listener` (the VM must be running meanwhile).
    func accept(_ listener: UnixListener, timeoutMs: Int64) throws -> Int32
    /// nil on success, else why not.
    func pause() -> String?
    func resume() -> String?
    /// Ends the VM (idempotent).
    func destroy()
    /// Reaps the VM's process if it is the monitor's child and has ended (on SIGCHLD); returns how it ended.
    func reap() -> String?
    /// After the guest went away early: how the VM ended and why, if the driver knows (waits up to `waitMs`).
    func explainEnd(waitMs: Int64) -> String?
}

/// libvirt (QEMU through the embedded driver or a libvirtd URI): a transient domain from ``DomainDefinition``.
final class LibvirtDriver: VMDriver {
    let config: MonitorConfig
    let stateDirectory: String
    var connection: virConnectPtr? = nil
    var domain: virDomainPtr? = nil
    var name: String { "libvirt" }

    init(config: MonitorConfig, stateDirectory: String) throws {
        self.config = config
        self.stateDirectory = stateDirectory
        // libvirt's own log goes to a file in the state directory, never to the container's stderr.
        setenv("LIBVIRT_LOG_OUTPUTS", "3:file:\(stateDirectory)/monitor.log", 1)
        virSetErrorFunc(nil, ignoreVirtError)
        virEventRegisterDefaultImpl()
        var eventThread = pthread_t()
        pthread_create(&eventThread, nil, runVirtEventLoop, nil)
        if let root = config.embedRoot { try prepareEmbedRoot(root, sharedCache: config.sharedCapabilityCache) }
    }

    func start() throws -> Int32? {
        guard let c = virConnectOpen(config.hypervisorURI) else {
            throw MonitorFailure(description: "cannot open the hypervisor \(config.hypervisorURI): \(lastVirtError())")
        }
        connection = c
        guard let d = virDomainCreateXML(c, config.domain.xml, 0) else {
            throw MonitorFailure(description: "libvirt refused to start domain \(config.domain.name): \(lastVirtError()); see \(stateDirectory)/monitor.log")
        }
        domain = d
        let pid = qemuPid(config: config)
        if let pid {
            let limit = (config.domain.memoryMiB + config.domain.overheadMiB) << 20
            if let problem = HostMemoryLimit.apply(pid: pid, bytes: limit) { logLine("warning: \(problem)") }
        }
        if let root = config.embedRoot, let shared = config.sharedCapabilityCache, access(shared, F_OK) != 0 {
            copyFiles(from: root + "/cache/qemu/capabilities", to: shared)
        }
        return pid
    }

    func accept(_ listener: UnixListener, timeoutMs: Int64) throws -> Int32 {
        try listener.accept(timeoutMs: Int32(clamping: timeoutMs))
    }

    func pause() -> String? {
        guard let domain else { return "the VM is gone" }
        return virDomainSuspend(domain) == 0 ? nil : "libvirt: \(lastVirtError())"
    }

    func resume() -> String? {
        guard let domain else { return "the VM is gone" }
        return virDomainResume(domain) == 0 ? nil : "libvirt: \(lastVirtError())"
    }

    func destroy() {
        if let domain {
            _ = virDomainDestroy(domain)
            _ = virDomainFree(domain)
        }
        domain = nil
        if let connection { _ = virConnectClose(connection) }
        connection = nil
    }

    func reap() -> String? { nil } // QEMU is libvirt's child, not ours
    func explainEnd(waitMs: Int64) -> String? { nil } // libvirt's log (monitor.log) and console.log say more
}

/// Bulkhead's own VMM: one `bulkhead vm run` child (jailed by itself), whose two agent ports connect to the
/// monitor's sockets. It dies with the monitor (PR_SET_PDEATHSIG); pause/resume stop and continue the whole
/// process (every vCPU thread leaves KVM_RUN for the stop), as a freezer would.
final class OwnVMMDriver: VMDriver {
    let executable: String
    let arguments: [String]
    let stateDirectory: String
    var pid: pid_t = 0
    var ended: String? = nil
    var name: String { "kvm" }

    init(launch: VMMLaunch, domain: DomainDefinition, stateDirectory: String) {
        executable = launch.executable
        arguments = launch.arguments(for: domain)
        self.stateDirectory = stateDirectory
    }

    func start() throws -> Int32? {
        // The VMM's own messages (its log, a failure) go to monitor.log; the guest's console to console.log.
        let log = try FileDescriptor.open(stateDirectory + "/monitor.log", O_WRONLY | O_APPEND | O_CREAT, mode: 0o600)
        let null = try FileDescriptor.open("/dev/null", O_RDONLY)
        pid = try ChildProcess.spawn(executable, arguments: arguments,
                                     environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                     fds: [(null.raw, 0), (log.raw, 1), (log.raw, 2)])
        logLine("kvm driver: \(executable) \(arguments.dropFirst().joined(separator: " ")) (pid \(pid))")
        return pid
    }

    /// Accepts while watching the VMM: a VMM that fails during set-up ends the wait at once, with its reason.
    func accept(_ listener: UnixListener, timeoutMs: Int64) throws -> Int32 {
        let deadline = nowMs() + timeoutMs
        while true {
            var p = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, 50)
            if r == 1 { return try listener.accept(timeoutMs: 0) }
            if let how = reap() {
                throw MonitorFailure(description: "Bulkhead's VMM \(how) before the guest connected \(listener.path); see \(stateDirectory)/monitor.log")
            }
            if nowMs() >= deadline {
                throw MonitorFailure(description: "the VMM did not connect \(listener.path) within \(timeoutMs) ms; see \(stateDirectory)/monitor.log")
            }
        }
    }

    func pause() -> String? {
        guard pid > 0, ended == nil else { return "the VM is gone" }
        return Glibc.kill(pid, SIGSTOP) == 0 ? nil : "cannot stop the VMM (pid \(pid)): \(String(cString: strerror(errno)))"
    }

    func resume() -> String? {
        guard pid > 0, ended == nil else { return "the VM is gone" }
        return Glibc.kill(pid, SIGCONT) == 0 ? nil : "cannot continue the VMM (pid \(pid)): \(String(cString: strerror(errno)))"
    }

    func destroy() {
        guard pid > 0 else { return }
        if ended == nil {
            _ = Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            ended = "was killed"
        }
        // A killed VMM cannot leave its jail's cgroup itself.
        VMJail.removeLeftoverCgroup(vmmPid: pid)
    }

    func explainEnd(waitMs: Int64) -> String? {
        let deadline = nowMs() + waitMs
        while reap() == nil && nowMs() < deadline { usleep(10_000) }
        guard let how = reap() else { return nil }
        // The VMM's own last error line (it logs to monitor.log).
        let log = (try? readFile(stateDirectory + "/monitor.log", limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let why = log.split(separator: "\n").last { $0.hasPrefix("bulkhead: ") }
        return "Bulkhead's VMM \(how)" + (why.map { ": " + $0 } ?? "")
    }

    func reap() -> String? {
        if let ended { return ended }
        guard pid > 0 else { return nil }
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else { return nil }
        let how = (status & 0x7f) == 0 ? "exited with status \((status >> 8) & 0xff)" : "was killed by signal \(status & 0x7f)"
        ended = how
        logLine("kvm driver: the VMM (pid \(pid)) \(how)")
        return how
    }
}

/// Appends one line to the state directory's monitor.log (never the container's stderr: that is the workload's).
func logLine(_ text: String) {
    guard let log = try? FileDescriptor.open(stateDirectory + "/monitor.log", O_WRONLY | O_APPEND | O_CREAT, mode: 0o600) else { return }
    try? log.writeAll(Array("bulkhead-vm-monitor: \(text)\n".utf8), path: "monitor.log")
}
