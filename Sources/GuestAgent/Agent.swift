import CAgentShims
import Confine
import FoundationEssentials
import OCIRuntime
import GuestProtocol
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// A raw fd owned by a reference: closed exactly once, when the last reference goes (for fds kept in
/// per-process tables, where the non-copyable ``FileDescriptor`` cannot live in a dictionary value).
final class OwnedFD {
    let raw: Int32
    init(_ raw: Int32) { self.raw = raw }
    deinit { _ = Glibc.close(raw) }
}

/// One workload process: its pid, its stdio ends on the agent side, and what is still owed to the host.
final class WorkloadProcess {
    let id: UInt32
    let pid: pid_t
    let terminal: Bool
    var stdin: OwnedFD?
    var stdout: OwnedFD?
    var stderr: OwnedFD?
    /// Bytes from the host not yet written to the process (bounded by the agent).
    var stdinPending: [UInt8] = []
    var stdinCloseRequested = false
    var status: GuestExitStatus?
    var exitedAtMs: Int64 = 0

    init(id: UInt32, pid: pid_t, terminal: Bool, stdin: OwnedFD?, stdout: OwnedFD?, stderr: OwnedFD?) {
        self.id = id
        self.pid = pid
        self.terminal = terminal
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// The guest agent's state machine and event loop (single-threaded: poll(2) over the two ports, a
/// signalfd for SIGCHLD, and every process's stdio).
public final class Agent {
    let config: BootConfig
    let control: Int32
    let stdio: Int32
    let signals: Int32
    let limits = GuestProtocolLimits.default
    var encoder: FrameEncoder
    var controlDecoder: FrameDecoder
    var stdioDecoder: FrameDecoder
    var helloDone = false
    var bootProblem: String?
    var spec: GuestSpec?
    var containerID: String?
    var processes: [UInt32: WorkloadProcess] = [:]
    var initStarted = false
    var shuttingDown = false
    var shutdownDeadlineMs: Int64 = 0
    var rootPath = AgentPaths.rootfs
    /// The container's cgroup (v2) inside the guest, once create made it.
    var cgroupPath: String?
    /// Its cgroup.procs, open for the spawned children to move themselves in.
    var cgroupProcs: OwnedFD?
    /// CLONE_NEW* namespaces the init process gets, and their /proc/PID/ns names (joined by execs).
    var namespaceFlags: Int32 = 0
    var namespaceFiles: [(flag: Int32, file: String)] = []
    /// The container's seccomp profile (every process of it gets the filter) and its init's confinement.
    var seccompProfile: Spec.Seccomp?
    var initConfinement: ProcessConfinement?
    /// Most stdin bytes buffered for all processes before the agent stops reading the stdio port.
    let stdinBufferLimit = 1 << 20
    /// After an exec'd process exits, how long its output may stay open (held by children it left behind).
    let outputGraceMs: Int64 = 2000

    public init(config: BootConfig, control: Int32, stdio: Int32, signals: Int32, bootProblem: String?) {
        self.config = config
        self.control = control
        self.stdio = stdio
        self.signals = signals
        self.bootProblem = bootProblem
        self.encoder = FrameEncoder(limits: limits)
        self.controlDecoder = FrameDecoder(limits: limits)
        self.stdioDecoder = FrameDecoder(limits: limits)
    }

    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    // MARK: sending

    func send(_ message: Message) {
        let fd = message.usesStdioPort ? stdio : control
        do {
            let frame = try encoder.encode(message)
            try frame.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if n < 0 {
                        if errno == EINTR || errno == EAGAIN { usleep(1000); continue }
                        throw SystemError(operation: "write", path: "virtio port", errno: errno)
                    }
                    offset += n
                }
            }
        } catch {
            AgentLog.info("cannot send \(message.type) to the host: \(error)")
        }
    }

    func fail(_ process: UInt32, _ text: String) {
        AgentLog.info("error (process \(process == Message.noProcess ? "-" : String(process))): \(text)")
        send(.error(process: process, message: text))
    }

    // MARK: the loop

    /// Runs until the VM should end; returns whether the host asked for (or agreed to) the power-off.
    public func run() {
        send(.hello(minVersion: GuestFrame.minimumVersion, maxVersion: GuestFrame.version, software: Agent.software()))
        var chunk = [UInt8](repeating: 0, count: limits.maxDataChunk)
        while true {
            if shuttingDown, Agent.nowMs() >= shutdownDeadlineMs { return }
            var fds: [pollfd] = []
            var owners: [(kind: Int, process: UInt32)] = []  // 0 control, 1 stdio, 2 signals, 3 stdout, 4 stderr, 5 stdin
            func watch(_ fd: Int32, _ events: Int32, _ kind: Int, _ process: UInt32 = 0) {
                fds.append(pollfd(fd: fd, events: Int16(events), revents: 0))
                owners.append((kind, process))
            }
            watch(control, POLLIN, 0)
            let buffered = processes.values.reduce(0) { $0 + $1.stdinPending.count }
            if buffered < stdinBufferLimit { watch(stdio, POLLIN, 1) }
            watch(signals, POLLIN, 2)
            for p in processes.values {
                if let out = p.stdout { watch(out.raw, POLLIN, 3, p.id) }
                if let err = p.stderr { watch(err.raw, POLLIN, 4, p.id) }
                if let input = p.stdin, !p.stdinPending.isEmpty { watch(input.raw, POLLOUT, 5, p.id) }
            }
            // Before the host is there, a port with no peer polls as hung up: wait a little instead of spinning.
            let timeout: Int32 = helloDone ? (shuttingDown || processes.values.contains { $0.status != nil } ? 100 : 1000) : 50
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 && errno != EINTR { AgentLog.info("poll failed: errno \(errno)"); return }
            for (i, entry) in fds.enumerated() where entry.revents != 0 {
                let owner = owners[i]
                switch owner.kind {
                case 0, 1:
                    let fd = owner.kind == 0 ? control : stdio
                    let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        let bytes = chunk[0..<n]
                        if owner.kind == 0 { controlDecoder.append(bytes) } else { stdioDecoder.append(bytes) }
                        if !drainMessages(fromControl: owner.kind == 0) { return }
                    } else if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) {
                        if helloDone {
                            AgentLog.info("the host closed the \(owner.kind == 0 ? "control" : "stdio") port; stopping")
                            killAll()
                            return
                        }
                        usleep(20_000)
                    }
                case 2:
                    while case let signo = bh_agent_read_signal(signals), signo != 0 {
                        if signo == SIGTERM || signo == SIGINT { AgentLog.info("signal \(signo) to PID 1 ignored") }
                    }
                    reap()
                case 3, 4:
                    guard let p = processes[owner.process] else { continue }
                    let stream: ProcessStream = owner.kind == 3 ? .stdout : .stderr
                    guard let fd = stream == .stdout ? p.stdout : p.stderr else { continue }
                    let n = chunk.withUnsafeMutableBytes { Glibc.read(fd.raw, $0.baseAddress, $0.count) }
                    if n > 0 {
                        send(.output(process: p.id, stream: stream, data: Array(chunk[0..<n])))
                    } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                        // EOF (a pty master reads EIO once the last slave closes).
                        closeOutput(p, stream)
                    }
                case 5:
                    guard let p = processes[owner.process] else { continue }
                    writePendingStdin(p)
                default: break
                }
            }
            reap()
            if finishProcesses() { return }
        }
    }

    static func software() -> String {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        return "bulkhead-agent (Linux \(release))"
    }

    /// Handles every complete message; false when the loop must end (protocol error, shutdown done).
    func drainMessages(fromControl: Bool) -> Bool {
        while true {
            let message: Message?
            do {
                message = fromControl ? try controlDecoder.next() : try stdioDecoder.next()
            } catch {
                fail(Message.noProcess, "\(error)")
                killAll()
                return false
            }
            guard let message else { return true }
            if !handle(message) { return false }
        }
    }

    // MARK: messages

    func handle(_ message: Message) -> Bool {
        if !helloDone {
            guard case let .hello(lo, hi, software) = message else {
                fail(Message.noProcess, "expected hello first, got \(message.type)")
                return true
            }
            do {
                let version = try negotiateVersion(local: GuestFrame.minimumVersion...GuestFrame.version, remoteMin: lo, remoteMax: hi)
                helloDone = true
                encoder = FrameEncoder(limits: limits, version: version)
                AgentLog.info("host \(software) speaks protocol \(version)")
            } catch {
                fail(Message.noProcess, "\(error)")
                return false
            }
            return true
        }
        switch message {
        case .hello:
            fail(Message.noProcess, "hello was already exchanged")
        case let .create(id, specBytes):
            create(id: id, specBytes: specBytes)
        case .start:
            guard let spec, let process = spec.process else {
                fail(0, containerID == nil ? "start before create" : "the spec has no process to start")
                return true
            }
            guard !initStarted else { fail(0, "the container was already started"); return true }
            initStarted = true
            spawn(id: 0, process, confinement: initConfinement)
        case let .exec(id, bytes):
            guard spec != nil else { fail(id, "exec before create"); return true }
            guard processes[id] == nil, id != 0 else { fail(id, "process \(id) already exists"); return true }
            guard initStarted, let initProcess = processes[0], initProcess.status == nil else { fail(id, "exec needs a running container"); return true }
            let process: GuestProcess
            let confinement: ProcessConfinement
            do {
                process = try GuestProcess.decode(bytes)
                confinement = try JSONDecoder().decode(ConfinementParts.ProcessPart.self, from: Data(bytes)).confinement(seccomp: seccompProfile)
            } catch { fail(id, "cannot use the exec process JSON: \(error)"); return true }
            spawn(id: id, process, confinement: confinement)
        case let .stdin(id, data):
            guard let p = processes[id], p.stdin != nil else { return true }  // late data after exit: drop
            p.stdinPending += data
            writePendingStdin(p)
        case let .closeStdin(id):
            guard let p = processes[id] else { return true }
            p.stdinCloseRequested = true
            if p.stdinPending.isEmpty { closeStdin(p) }
        case let .signal(id, signo):
            guard let p = processes[id], p.status == nil else { fail(id, "no running process \(id) to signal"); return true }
            if Glibc.kill(p.pid, signo) != 0 { fail(id, "kill \(p.pid) \(signo): errno \(errno)") }
        case let .windowSize(id, rows, columns):
            guard let p = processes[id], p.terminal, let master = p.stdin else { return true }
            _ = bh_agent_set_winsize(master.raw, rows, columns)
        case .shutdown:
            AgentLog.info("host asked for shutdown")
            killAll()
            return false
        case .listProcesses:
            send(.processList(GuestInspect.processes(limit: limits.maxListCount)))
        case .statsRequest:
            send(.stats(GuestInspect.stats(cgroup: cgroupPath)))
        case .created, .started, .output, .exited, .error, .processList, .stats:
            fail(Message.noProcess, "unexpected \(message.type) from the host")
        }
        return true
    }

    func create(id: String, specBytes: [UInt8]) {
        guard containerID == nil else { fail(Message.noProcess, "the VM already holds container \(containerID!)"); return }
        if let bootProblem { fail(Message.noProcess, bootProblem); return }
        let parsed: GuestSpec
        do { parsed = try GuestSpec.decode(specBytes) } catch {
            fail(Message.noProcess, "cannot decode the OCI spec: \(error)")
            return
        }
        if let process = parsed.process, let problem = process.validate() { fail(0, problem); return }
        // Capabilities and seccomp through the namespace tier's code (Confine), built before anything runs so a
        // bad profile fails create.
        do {
            let parts = try JSONDecoder().decode(ConfinementParts.self, from: Data(specBytes))
            seccompProfile = parts.linux?.seccomp
            if let process = parts.process { initConfinement = try process.confinement(seccomp: seccompProfile) }
        } catch {
            fail(Message.noProcess, "the container's spec: \(error)")
            return
        }
        do {
            let skipped = try Boot.applyMounts(parsed.mounts ?? GuestMount.defaults, root: rootPath)
            if !skipped.isEmpty { AgentLog.info("mounts not applied in the guest: \(skipped.joined(separator: ", "))") }
            if parsed.root?.readonly == true {
                // After the mount points exist: the overlay's mount becomes read-only (submounts keep theirs).
                try Mount.mount(source: nil, target: rootPath, type: nil, flags: UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), data: nil)
            }
            if let hostname = parsed.hostname, !hostname.isEmpty, hostname.utf8.count <= 64 {
                _ = hostname.withCString { sethostname($0, strlen($0)) }
            }
            try applyLinux(parsed.linux)
        } catch {
            fail(Message.noProcess, "cannot prepare the container root: \(error)")
            return
        }
        spec = parsed
        containerID = id
        AgentLog.info("container \(id) created")
        send(.created(containerID: id))
    }

    /// The spec's `linux` section inside the guest (defence in depth behind the VM boundary): the container's
    /// namespaces and a cgroup v2 with its memory, pids and cpu limits. (Capabilities and seccomp are applied
    /// per process by ``spawn``, with the namespace tier's `Confine` code.)
    func applyLinux(_ linux: GuestSpec.LinuxSection?) throws {
        var skipped: [String] = []
        for ns in linux?.namespaces ?? [] {
            guard let kind = GuestSpec.namespaceKinds[ns.type] else { skipped.append(ns.type); continue }
            if let path = ns.path, !path.isEmpty { skipped.append("\(ns.type) (path \(path))"); continue }
            guard access("/proc/self/ns/\(kind.file)", F_OK) == 0 else { skipped.append("\(ns.type) (not in the guest kernel)"); continue }
            namespaceFlags |= kind.flag
            namespaceFiles.append(kind)
        }
        if !skipped.isEmpty { AgentLog.info("namespaces not created in the guest: \(skipped.joined(separator: ", "))") }
        // One cgroup for the container's processes, with the spec's limits.
        let root = "/sys/fs/cgroup"
        guard access(root + "/cgroup.subtree_control", F_OK) == 0 else {
            AgentLog.info("no cgroup2 in the guest: resource limits not applied inside the guest")
            return
        }
        for controller in ["+memory", "+pids", "+cpu"] { try? writeText(root + "/cgroup.subtree_control", controller) }
        let path = root + "/container"
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw SystemError(operation: "mkdir", path: path, errno: errno) }
        let r = linux?.resources
        if let limit = r?.memory?.limit, limit > 0 {
            try writeText(path + "/memory.max", String(limit))
            try? writeText(path + "/memory.swap.max", "0")
        }
        if let limit = r?.pids?.limit, limit > 0 { try writeText(path + "/pids.max", String(limit)) }
        if let quota = r?.cpu?.quota, quota > 0 { try writeText(path + "/cpu.max", "\(quota) \(r?.cpu?.period ?? 100_000)") }
        let procs = Glibc.open(path + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
        guard procs >= 0 else { throw SystemError(operation: "open", path: path + "/cgroup.procs", errno: errno) }
        cgroupProcs = OwnedFD(procs)
        cgroupPath = path
    }

    func writeText(_ path: String, _ text: String) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY)
        try fd.writeAll(Array(text.utf8), path: path)
    }

    func spawn(id: UInt32, _ process: GuestProcess, confinement: ProcessConfinement?) {
        if let problem = process.validate() { fail(id, problem); return }
        let bpf: [UInt8]
        do { bpf = try confinement?.seccomp?.exportBPF() ?? [] } catch { fail(id, "\(error)"); return }
        let caps = confinement?.capabilities
        let terminal = process.terminal ?? false
        var parentIn: Int32 = -1, childIn: Int32 = -1, parentOut: Int32 = -1, childOut: Int32 = -1, parentErr: Int32 = -1, childErr: Int32 = -1
        var p = [Int32](repeating: -1, count: 2)
        func closeAll() { for fd in [parentIn, childIn, parentOut, childOut, parentErr, childErr] where fd >= 0 { Glibc.close(fd) } }
        if terminal {
            var master: Int32 = -1, slave: Int32 = -1
            // The container's devpts instance (mounted with newinstance), so ttyname() works inside it.
            let containerPtmx = rootPath + "/dev/pts/ptmx"
            let ptmx = access(containerPtmx, F_OK) == 0 ? containerPtmx : "/dev/ptmx"
            guard bh_agent_openpty(ptmx, &master, &slave) == 0 else { fail(id, "cannot open a pty (\(ptmx)): errno \(errno)"); return }
            if let size = process.consoleSize { _ = bh_agent_set_winsize(master, size.height, size.width) }
            parentIn = master; childIn = slave; childOut = slave; childErr = slave
        } else {
            guard bh_agent_pipe(&p) == 0 else { fail(id, "pipe: errno \(errno)"); return }
            childIn = p[0]; parentIn = p[1]
            guard bh_agent_pipe(&p) == 0 else { closeAll(); fail(id, "pipe: errno \(errno)"); return }
            parentOut = p[0]; childOut = p[1]
            guard bh_agent_pipe(&p) == 0 else { closeAll(); fail(id, "pipe: errno \(errno)"); return }
            parentErr = p[0]; childErr = p[1]
        }
        let env = process.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        var rlimitTypes: [Int32] = [], soft: [UInt64] = [], hard: [UInt64] = []
        for r in process.rlimits ?? [] {
            rlimitTypes.append(GuestProcess.rlimitResource(r.type)!); soft.append(r.soft); hard.append(r.hard)
        }
        let groups = (process.user?.additionalGids ?? []).map { gid_t($0) }
        // The init process creates the namespaces; an exec joins those of the running init.
        var joinFDs: [OwnedFD] = []
        var joinTypes: [Int32] = []
        if id != 0, let initPid = processes[0]?.pid {
            for kind in namespaceFiles {
                let fd = Glibc.open("/proc/\(initPid)/ns/\(kind.file)", O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { closeAll(); fail(id, "cannot open the container's \(kind.file) namespace: errno \(errno)"); return }
                joinFDs.append(OwnedFD(fd)); joinTypes.append(kind.flag)
            }
        }
        let joinRaw = joinFDs.map(\.raw)
        let cloneFlags: Int32 = id == 0 ? namespaceFlags : 0
        let procMount = rootPath + "/proc"
        var stage: UnsafePointer<CChar>?
        let pid: pid_t = withCStrings(process.args) { argv in
            withCStrings(env) { envp in
                rootPath.withCString { root in
                    (process.cwd ?? "/").withCString { cwd in
                        groups.withUnsafeBufferPointer { g in
                            rlimitTypes.withUnsafeBufferPointer { rt in
                                soft.withUnsafeBufferPointer { rs in
                                    hard.withUnsafeBufferPointer { rh in
                                      joinRaw.withUnsafeBufferPointer { jf in
                                       joinTypes.withUnsafeBufferPointer { jt in
                                        procMount.withCString { pm in
                                        bpf.withUnsafeBytes { filter in
                                        var request = bh_agent_spawn_request(
                                            root: root, cwd: cwd, argv: argv, envp: envp,
                                            uid: uid_t(process.user?.uid ?? 0), gid: gid_t(process.user?.gid ?? 0),
                                            groups: g.baseAddress, ngroups: Int32(g.count),
                                            rlimit_resources: rt.baseAddress, rlimit_soft: rs.baseAddress, rlimit_hard: rh.baseAddress,
                                            nrlimits: Int32(rt.count),
                                            stdin_fd: childIn, stdout_fd: childOut, stderr_fd: childErr,
                                            terminal: terminal ? 1 : 0, no_new_privileges: (process.noNewPrivileges ?? false) ? 1 : 0,
                                            clone_flags: cloneFlags, join_fds: jf.baseAddress, join_types: jt.baseAddress,
                                            njoin: Int32(jf.count), cgroup_procs_fd: cgroupProcs?.raw ?? -1,
                                            proc_mount: access(procMount, F_OK) == 0 ? pm : nil,
                                            apply_capabilities: caps == nil ? 0 : 1,
                                            last_capability: Int32(CapabilityPlan.kernelLastCapability),
                                            cap_bounding: caps?.bounding.bits ?? 0, cap_effective: caps?.effective.bits ?? 0,
                                            cap_permitted: caps?.permitted.bits ?? 0, cap_inheritable: caps?.inheritable.bits ?? 0,
                                            cap_ambient: caps?.ambient.bits ?? 0,
                                            seccomp_bpf: bpf.isEmpty ? nil : filter.baseAddress, seccomp_bpf_count: Int32(bpf.count / 8),
                                            seccomp_early: confinement?.loadsSeccompEarly == true ? 1 : 0)
                                        return bh_agent_spawn(&request, &stage)
                                        }
                                        }
                                       }
                                      }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let spawnErrno = errno
        for fd in Set([childIn, childOut, childErr]) where fd >= 0 { Glibc.close(fd) }
        if pid < 0 {
            for fd in [parentIn, parentOut, parentErr] where fd >= 0 { Glibc.close(fd) }
            let what = stage.map { String(cString: $0) } ?? "spawn"
            fail(id, "cannot start \(process.args[0]): \(what): \(String(cString: strerror(spawnErrno)))")
            if id == 0 { beginShutdown(reason: "the container's process could not start") }
            return
        }
        _ = fcntl(parentIn, F_SETFL, O_NONBLOCK)
        let proc = WorkloadProcess(
            id: id, pid: pid, terminal: terminal,
            stdin: OwnedFD(parentIn),
            stdout: OwnedFD(terminal ? fcntl(parentIn, F_DUPFD_CLOEXEC, 3) : parentOut),
            stderr: parentErr >= 0 ? OwnedFD(parentErr) : nil)
        processes[id] = proc
        send(.started(process: id, pid: pid))
    }

    func writePendingStdin(_ p: WorkloadProcess) {
        guard let input = p.stdin else { p.stdinPending.removeAll(); return }
        while !p.stdinPending.isEmpty {
            let n = p.stdinPending.withUnsafeBytes { Glibc.write(input.raw, $0.baseAddress, $0.count) }
            if n > 0 { p.stdinPending.removeFirst(n); continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return }
            // EPIPE: the process closed its stdin; drop what is left.
            p.stdinPending.removeAll()
            if !p.terminal { p.stdin = nil }
            return
        }
        if p.stdinCloseRequested { closeStdin(p) }
    }

    func closeStdin(_ p: WorkloadProcess) {
        if p.terminal {
            // A terminal has no half-close: send the EOF character instead.
            if let master = p.stdin { var eot: UInt8 = 4; _ = Glibc.write(master.raw, &eot, 1) }
        } else {
            p.stdin = nil
        }
    }

    func closeOutput(_ p: WorkloadProcess, _ stream: ProcessStream) {
        if stream == .stdout { guard p.stdout != nil else { return }; p.stdout = nil } else { guard p.stderr != nil else { return }; p.stderr = nil }
        send(.output(process: p.id, stream: stream, data: []))
    }

    /// PID 1 reaps every child: its processes (recording their status) and orphans (ignored).
    func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            guard let p = processes.values.first(where: { $0.pid == pid && $0.status == nil }) else { continue }
            let termsig = status & 0x7f
            p.status = termsig == 0 ? .exited((status >> 8) & 0xff) : .signaled(termsig)
            p.exitedAtMs = Agent.nowMs()
            if p.id == 0 {
                // The container ends with its init process: stop everything else in the guest.
                Glibc.kill(-1, SIGKILL)
            }
        }
    }

    /// Reports exits whose output is complete; true when the VM should end now.
    func finishProcesses() -> Bool {
        let now = Agent.nowMs()
        for p in processes.values.sorted(by: { $0.id > $1.id }) {
            guard let status = p.status else { continue }
            let outputOpen = p.stdout != nil || p.stderr != nil
            if outputOpen && now - p.exitedAtMs < outputGraceMs { continue }
            if p.stdout != nil { closeOutput(p, .stdout) }
            if p.stderr != nil { closeOutput(p, .stderr) }
            p.stdin = nil
            send(.exited(process: p.id, status: status))
            processes[p.id] = nil
            if p.id == 0 { beginShutdown(reason: "the container's process exited (\(status))") }
        }
        return false
    }

    func beginShutdown(reason: String) {
        guard !shuttingDown else { return }
        AgentLog.info("\(reason); powering off")
        killAll()
        shuttingDown = true
        // Give the host a moment to read the last frames (it answers with shutdown, or closes the port).
        shutdownDeadlineMs = Agent.nowMs() + 3000
        send(.shutdown)
    }

    func killAll() {
        Glibc.kill(-1, SIGKILL)
        reap()
    }

    /// Ends the VM: RB_AUTOBOOT with reboot=k is the i8042 reset (QEMU -no-reboot exits); RB_POWER_OFF needs ACPI.
    public func halt() -> Never {
        sync()
        _ = bh_agent_reboot(config.halt == "poweroff" ? 1 : 0)
        _ = bh_agent_reboot(0)
        while true { pause() }
    }
}

/// Calls `body` with a NULL-terminated C array of the strings (alive for the call).
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    var array: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
    array.append(nil)
    return array.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// The parts of a spec (or exec process) that `Confine` applies, decoded leniently: the rest of the document is
/// the agent's own business (`GuestSpec`), so a spec the agent runs is not refused here for a field it ignores.
struct ConfinementParts: Decodable {
    var process: ProcessPart?
    var linux: LinuxPart?

    struct ProcessPart: Decodable {
        var capabilities: Spec.Capabilities?
        var noNewPrivileges: Bool?

        func confinement(seccomp: Spec.Seccomp?) throws -> ProcessConfinement {
            var process = Spec.Process()
            process.capabilities = capabilities
            process.noNewPrivileges = noNewPrivileges
            return try ProcessConfinement(process: process, seccomp: seccomp)
        }
    }
    struct LinuxPart: Decodable { var seccomp: Spec.Seccomp? }
}
