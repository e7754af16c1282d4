import CShims
import FoundationEssentials
import GuestHost
import GuestImage
import GuestProtocol
import LinuxOS
import MicroVM
import OCIRuntime
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// The microVM tier behind the runc verbs. Each container is one `bulkhead-vm-monitor` process (the container's
/// pid in runc's state) that owns a transient libvirt domain: `create` builds the rootfs image and initramfs,
/// starts the monitor with the caller's stdio and waits until the guest agent has created the container;
/// `start` tells the monitor (its command socket) to run the process; `kill` signals the monitor, which forwards
/// the signal to the workload (SIGKILL kills QEMU itself); the monitor exits with the workload's status.
/// QEMU outlives its creator under the embedded driver, so its pid is in the record and `delete` kills it.
public struct MicroVMBackend: Backend {
    public let name = "microvm"
    public let dataRoot: String
    /// nil: the embedded driver under the data root, one root per container (the embedded driver locks its root).
    public let hypervisorURI: String?

    public init(dataRoot: String, hypervisorURI: String? = nil) {
        self.dataRoot = dataRoot
        self.hypervisorURI = hypervisorURI
    }

    static let defaultMemoryMiB = 256

    /// Memory for the VM: the spec's memory limit plus room for the guest kernel and agent, at least 128 MiB;
    /// the policy's `memory` (recorded as `vm.memoryMiB`), when set, is the most it gets.
    static func memoryMiB(_ spec: Spec, policy: [String: String]? = nil) -> Int {
        let fromPolicy = policy?["vm.memoryMiB"].flatMap { Int($0) }.map { max(128, $0) }
        guard let limit = number(spec.linux?.resources?.memory, "limit"), limit > 0 else { return fromPolicy ?? defaultMemoryMiB }
        let fromSpec = max(128, Int(limit) >> 20 + 64)
        return fromPolicy.map { min($0, fromSpec) } ?? fromSpec
    }

    /// vCPUs: the CPU quota rounded up (1 when unlimited), at most 8; the policy's `vcpus` (`vm.vcpus`), when set,
    /// is used where the spec sets no quota and is the most it gets where it does.
    static func vcpus(_ spec: Spec, policy: [String: String]? = nil) -> Int {
        let fromPolicy = policy?["vm.vcpus"].flatMap { Int($0) }.map { min(8, max(1, $0)) }
        guard let quota = number(spec.linux?.resources?.cpu, "quota"), quota > 0,
              let period = number(spec.linux?.resources?.cpu, "period"), period > 0 else { return fromPolicy ?? 1 }
        let fromSpec = min(8, max(1, Int((quota / period).rounded(.up))))
        return fromPolicy.map { min($0, fromSpec) } ?? fromSpec
    }

    /// The hypervisor driver for a container: what the policy's `hypervisor` asks for (`vm.hypervisor`), or for
    /// `auto` (and no policy setting) the host's cached probe. Returns the driver (`kvm` or `libvirt`) and why.
    /// Asking for `kvm` where /dev/kvm cannot be used is an error naming the rule, never a quiet switch.
    static func selectDriver(_ extra: [String: String]?, probe: HypervisorProbe, kvmDevice: String = "/dev/kvm") throws -> (driver: String, reason: String) {
        let wanted = extra?["vm.hypervisor"] ?? "auto"
        let rule = extra?["vm.rule"].map { "policy rule '\($0)'" } ?? "the policy"
        switch wanted {
        case "auto":
            return (probe.autoDriver, "hypervisor auto: " + (probe.driverReason ?? probe.reason))
        case "libvirt":
            return ("libvirt", "\(rule) asks for hypervisor libvirt")
        case "kvm":
            let fd = open(kvmDevice, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else {
                throw RuntimeError("\(rule) asks for hypervisor kvm (Bulkhead's own VMM), but \(kvmDevice) cannot be opened: \(String(cString: strerror(errno))); run on a host with KVM, or set hypervisor: auto or libvirt in the policy")
            }
            close(fd)
            var reason = "\(rule) asks for hypervisor kvm"
            if probe.autoDriver != "kvm" { reason += " (this host's probe would not pick it: \(probe.driverReason ?? probe.reason))" }
            return ("kvm", reason)
        default:
            throw RuntimeError("\(rule) asks for hypervisor '\(wanted)', which is none of kvm, libvirt, auto; fix the policy")
        }
    }

    /// The guest kernel: Bulkhead's (kernels/build; for the kvm driver its vmlinux) unless the policy names an
    /// absolute path to a kernel image.
    static func kernelImage(_ extra: [String: String]?, driver: String = "libvirt") throws -> String {
        if let k = extra?["vm.kernel"], k != "default" {
            guard k.hasPrefix("/") else { throw RuntimeError("policy kernel '\(k)' must be 'default' or an absolute path to a bzImage") }
            guard access(k, R_OK) == 0 else {
                throw RuntimeError("policy kernel \(k) cannot be read: \(String(cString: strerror(errno))); fix the path in the policy or use 'default'")
            }
            return k
        }
        let directory = try MicroVMPaths.kernelDirectory()
        return driver == "kvm" ? MicroVMPaths.ownVMMKernel(directory: directory) : directory + "/bzImage"
    }

    static func number(_ value: JSONValue?, _ key: String) -> Double? {
        if case let .object(fields)? = value, case let .number(n)? = fields[key] { return n }
        return nil
    }

    // MARK: create

    public func create(_ request: CreateRequest, record: inout ContainerRecord, directory: ContainerDirectory) throws {
        let state = directory.path
        let vmRoot = dataRoot + "/microvm"
        let containerData = vmRoot + "/containers/" + request.id
        record.extra = (record.extra ?? [:]).merging(["containerData": containerData, "stateDirectory": state]) { $1 }
        try directory.save(record)
        do {
            let probe = HypervisorProbe.load(dataRoot: dataRoot)
            let (driver, driverReason) = try Self.selectDriver(record.extra, probe: probe)
            try HostPath.makeDirectories(containerData, mode: 0o700)
            let kernel = try Self.kernelImage(record.extra, driver: driver)
            let initramfs = try Self.initramfs(cache: vmRoot + "/initramfs")
            // Image form: one shared image per manifest digest, from the merged layers (the container's overlay).
            // Bundle form: a per-container image of the bundle's rootfs (hashing the whole tree to share it would
            // cost about as much as building it).
            let image: RootfsImage
            if let digest = record.extra?["imageDigest"], digest.hasPrefix("sha256:") {
                image = try RootfsImageStore(directory: vmRoot + "/images").image(digest: digest, source: record.rootfs)
            } else {
                image = try RootfsImageStore(directory: containerData).image(
                    digest: "sha256:" + String(repeating: "0", count: 64), source: record.rootfs)
            }
            var uri = hypervisorURI ?? ""
            var embedRoot: String? = nil
            if uri.isEmpty && driver == "libvirt" {
                embedRoot = dataRoot + "/libvirt/" + Self.shortName(request.id)
                uri = "qemu:///embed?root=" + embedRoot!
            }
            // The same kernel command line as plain QEMU gets (QEMUCommand): console, i8042 reset, the image disk.
            var qemu = QEMUCommand(kernel: kernel, initramfs: initramfs, consoleLog: state + "/" + MonitorConfig.consoleLog)
            qemu.rootfsImage = image.path
            let domain = DomainDefinition(
                name: "bulkhead-" + request.id, type: probe.domainType, memoryMiB: Self.memoryMiB(request.spec, policy: record.extra),
                vcpus: Self.vcpus(request.spec, policy: record.extra), kernel: kernel, initramfs: initramfs,
                commandLine: qemu.kernelCommandLine, rootfsImage: image.path,
                consoleLog: state + "/" + MonitorConfig.consoleLog,
                controlSocket: state + "/" + MonitorConfig.controlSocket, stdioSocket: state + "/" + MonitorConfig.stdioSocket)
            var config = MonitorConfig(containerID: request.id, stateDirectory: state, hypervisorURI: uri, embedRoot: embedRoot,
                                       sharedCapabilityCache: dataRoot + "/libvirt/.capabilities",
                                       domain: domain, specPath: state + "/spec.json")
            config.driver = driver
            if driver == "kvm" {
                config.vmm = VMMLaunch(executable: MicroVMPaths.selfExecutable())
            }
            if request.spec.process?.terminal == true {
                guard let socket = request.consoleSocket else {
                    throw MicroVMError("process.terminal is true: give --console-socket (or set terminal to false)")
                }
                config.consoleSocket = socket
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
            // The guest gets the spec as admitted (the policy's ceilings and settings applied), not the bundle's file.
            let specFile = try FileDescriptor.open(state + "/spec.json", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            try specFile.writeAll(Array(try encoder.encode(request.spec)), path: state + "/spec.json")
            let file = try FileDescriptor.open(state + "/" + MonitorConfig.fileName, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            try file.writeAll(Array(try encoder.encode(config)), path: state + "/" + MonitorConfig.fileName)
            record.extra?["vm.driver"] = driver
            record.extra?["vm.driverReason"] = driverReason
            if driver == "libvirt" {
                record.extra?["domain"] = domain.name
                record.extra?["hypervisorURI"] = uri
                record.extra?["domainType"] = probe.domainType
            }
            if let embedRoot { record.extra?["embedRoot"] = embedRoot }
            try directory.save(record)
            do {
                try launchMonitor(request, record: &record, directory: directory)
            } catch where driver == "kvm" && probe.autoDriver != "kvm" {
                // The policy forced the kvm driver on a host whose probe would not have picked it: say so.
                throw MicroVMError("\(error); the kvm driver was used because \(driverReason)")
            }
        } catch {
            try? delete(record, directory: directory, force: true)
            throw error
        }
    }

    /// A short, stable directory name for a container id: QEMU's sockets under the embed root must fit in a
    /// unix socket path (108 bytes), and engines use 64-character ids. Ids of up to 16 characters are kept.
    static func shortName(_ id: String) -> String {
        if id.utf8.count <= 16 { return id }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a 64
        for byte in id.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        let hex = String(hash, radix: 16)
        return "h" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The agent's initramfs, built once per agent binary (keyed by its size and mtime).
    static func initramfs(cache: String) throws -> String {
        let agent = try MicroVMPaths.agent()
        var st = stat()
        guard stat(agent, &st) == 0 else { throw SystemError(operation: "stat", path: agent, errno: errno) }
        try HostPath.makeDirectories(cache, mode: 0o700)
        let path = "\(cache)/initramfs-\(st.st_size)-\(st.st_mtim.tv_sec).cpio"
        if access(path, R_OK) == 0 { return path }
        let temp = "\(path).tmp-\(getpid())"
        try Initramfs.build(agent: agent, output: temp)
        try sys("rename", path) { rename(temp, path) }
        return path
    }

    func launchMonitor(_ request: CreateRequest, record: inout ContainerRecord, directory: ContainerDirectory) throws {
        let monitor = try MicroVMPaths.monitor()
        var fds: [Int32] = [0, 0]
        try sys("socketpair", nil) { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) }
        let reader = FileDescriptor(adopting: fds[0])
        let pid: pid_t
        do {
            pid = try ChildProcess.spawn(monitor, arguments: ["bulkhead-vm-monitor", directory.path],
                                         environment: Self.passEnvironment(), fds: [(fds[1], 3)])
        } catch {
            close(fds[1])
            throw error
        }
        close(fds[1])
        record.pid = pid
        record.pidStartTime = (try? ChildProcess.statFields(pid).startTime) ?? 0
        try directory.save(record)
        // The monitor reports "qemu <pid>", then "created" or "error <text>", one line each.
        var buffer: [UInt8] = []
        var created = false
        let deadline = Self.nowMs() + 600_000
        readLoop: while true {
            while let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                if line.hasPrefix("qemu "), let q = Int32(line.dropFirst(5)) {
                    record.extra?["qemuPid"] = String(q)
                    record.extra?["qemuStartTime"] = String((try? ChildProcess.statFields(q).startTime) ?? 0)
                    try directory.save(record)
                } else if line == "created" {
                    created = true
                    break readLoop
                } else if line.hasPrefix("error ") {
                    throw MicroVMError(String(line.dropFirst(6)))
                }
            }
            var p = pollfd(fd: reader.raw, events: Int16(POLLIN), revents: 0)
            let left = deadline - Self.nowMs()
            if left <= 0 { break }
            let r = poll(&p, 1, Int32(min(left, 1000)))
            if r < 0 && errno != EINTR { throw SystemError(operation: "poll", path: "monitor sync pipe", errno: errno) }
            if r <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { read(reader.raw, $0.baseAddress, $0.count) }
            if n <= 0 { if n < 0 && errno == EINTR { continue }; break }
            buffer += chunk[0..<n]
        }
        guard created else {
            throw MicroVMError("the microVM monitor (pid \(pid)) ended or timed out before the container was created; see \(directory.path)/monitor.log and \(directory.path)/console.log")
        }
        record.status = .created
        try directory.save(record)
        if let pidFile = request.pidFile {
            let f = try FileDescriptor.open(pidFile, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            try f.writeAll("\(pid)", path: pidFile)
        }
    }

    static func passEnvironment() -> [String] {
        var env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        for name in ["BULKHEAD_LIBEXEC", "BULKHEAD_AGENT", "BULKHEAD_KERNEL_DIR", "BULKHEAD_KERNEL_CACHE", "HOME"] {
            if let v = getenv(name) { env.append("\(name)=\(String(cString: v))") }
        }
        return env
    }

    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    // MARK: start

    public func start(_ record: inout ContainerRecord, directory: ContainerDirectory) throws {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        guard record.status == .created else { throw RuntimeError("container \(record.id) is not in created state (it is \(record.status.rawValue))") }
        let reply = try command("start", directory: directory)
        guard reply == "ok" else { throw MicroVMError("the microVM monitor refused start: \(reply)") }
        record.status = .running
        try directory.save(record)
    }

    /// Sends one line to the monitor's command socket and returns its one-line reply.
    func command(_ line: String, directory: ContainerDirectory, timeoutMs: Int32 = 60_000) throws -> String {
        try command(line, stateDirectory: directory.path, timeoutMs: timeoutMs)
    }

    func command(_ line: String, stateDirectory: String, timeoutMs: Int32 = 60_000) throws -> String {
        let path = stateDirectory + "/" + MonitorConfig.commandSocket
        let fd = try sys("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        let owned = FileDescriptor(adopting: fd)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw MicroVMError("socket path \(path) is too long; use a shorter --root") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        try sys("connect", path) { withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } } }
        try owned.writeAll(line + "\n", path: path)
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while !reply.contains(10) {
            var p = pollfd(fd: owned.raw, events: Int16(POLLIN), revents: 0)
            if try sys("poll", path, { poll(&p, 1, timeoutMs) }) == 0 {
                throw MicroVMError("the microVM monitor did not answer '\(line)' within \(timeoutMs / 1000) s (see \(stateDirectory)/monitor.log)")
            }
            let n = try chunk.withUnsafeMutableBytes { try owned.read(into: $0, path: path) }
            if n == 0 { break }
            reply += chunk[0..<n]
        }
        return String(decoding: reply.prefix { $0 != 10 }, as: UTF8.self)
    }

    // MARK: status, kill

    func isAlive(_ record: ContainerRecord) -> Bool {
        guard record.pid > 0, ChildProcess.isAlive(record.pid) else { return false }
        if record.pidStartTime != 0, let start = try? ChildProcess.statFields(record.pid).startTime, start != record.pidStartTime { return false }
        return true
    }

    /// The QEMU process, if it still runs (same pid and start time as recorded).
    func qemuPid(_ record: ContainerRecord) -> Int32? {
        // pid > 1: kill(0 or -1, …) would reach the caller's process group or every process.
        guard let text = record.extra?["qemuPid"], let pid = Int32(text), pid > 1, ChildProcess.isAlive(pid) else { return nil }
        if let s = record.extra?["qemuStartTime"], let start = UInt64(s), start != 0,
           let now = try? ChildProcess.statFields(pid).startTime, now != start { return nil }
        return pid
    }

    public func status(of record: ContainerRecord, directory: ContainerDirectory) -> ContainerStatus {
        if !isAlive(record) { return .stopped }
        switch record.status {
        case .creating, .created: return record.status
        default: return access(directory.path + "/" + MonitorConfig.pausedMarker, F_OK) == 0 ? .paused : .running
        }
    }

    public func kill(_ record: ContainerRecord, signal: Int32, all: Bool) throws {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        if signal == SIGKILL, let q = qemuPid(record) {
            // SIGKILL cannot be caught and forwarded: end the VM; the monitor then exits with 137.
            try sys("kill", "qemu pid \(q)") { Glibc.kill(q, SIGKILL) }
            return
        }
        if all, record.status != .created {
            // runc's --all: every process of the container — here the workload and every exec'd process in the guest.
            let reply = try command("signal-all \(signal)", stateDirectory: stateDirectory(record))
            guard reply == "ok" else { throw RuntimeError("cannot signal the processes of container \(record.id): \(reply)") }
            return
        }
        try sys("kill", "monitor pid \(record.pid)") { Glibc.kill(record.pid, signal) }
    }

    // MARK: delete

    public func delete(_ record: ContainerRecord, directory: ContainerDirectory, force: Bool) throws {
        if isAlive(record), record.status != .stopped, !force {
            let s = status(of: record, directory: directory)
            if s != .created {
                throw RuntimeError("cannot delete container \(record.id) that is not stopped: it is \(s.rawValue); stop it first or use --force")
            }
        }
        if isAlive(record) { _ = Glibc.kill(record.pid, SIGKILL) }
        if let q = qemuPid(record) {
            _ = Glibc.kill(q, SIGKILL)
            let deadline = Self.nowMs() + 10_000
            while ChildProcess.isAlive(q) && Self.nowMs() < deadline { usleep(10_000) }
        }
        // Bulkhead's VMM (kvm driver) removes its jail's cgroup as it exits, unless it was killed.
        if record.extra?["vm.driver"] == "kvm", let text = record.extra?["qemuPid"], let vmm = Int32(text) {
            VMJail.removeLeftoverCgroup(vmmPid: vmm)
        }
        if record.pid > 0 { _ = try? ChildProcess.wait(record.pid, noHang: true) }
        // The transient domain lives only in its embed root and in QEMU: both gone means no domain.
        if let root = record.extra?["embedRoot"] { try? Self.removeTree(root) }
        if let data = record.extra?["containerData"] { try? Self.removeTree(data) }
    }

    static func removeTree(_ path: String) throws {
        let parts = path.split(separator: "/")
        guard parts.count > 1, let name = parts.last else { return }
        let parent = "/" + parts.dropLast().joined(separator: "/")
        guard let dir = try? FileDescriptor.open(parent, O_RDONLY | O_DIRECTORY) else { return }
        // Unmount nothing: the embed root holds plain files and sockets only.
        try dir.removeTree(String(name))
    }

    // MARK: exec

    /// Runs another process in the guest through a `bulkhead-vm-monitor exec` child of the caller (see
    /// ``ExecClient``): that child's pid stands for the guest process on the host (pid file, wait, signals).
    public func exec(_ record: ContainerRecord, _ request: ExecRequest) throws -> Int32 {
        guard isAlive(record), record.status != .created else {
            throw RuntimeError("cannot exec in container \(record.id): container not running")
        }
        let state = stateDirectory(record)
        if access(state + "/" + MonitorConfig.pausedMarker, F_OK) == 0 {
            throw RuntimeError("cannot exec in container \(record.id): it is paused (resume it first)")
        }
        if request.process.terminal == true && request.consoleSocket == nil {
            throw RuntimeError("exec with a terminal needs --console-socket (the engine's socket that receives the pty)")
        }
        if request.preserveFds > 0 {
            throw RuntimeError("exec --preserve-fds cannot pass host fds into a microVM (container \(record.id)); pass data through stdin instead")
        }
        let encoder = JSONEncoder()
        let processFile = state + "/exec-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
        try FileDescriptor.open(processFile, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
            .writeAll(Array(try encoder.encode(request.process)), path: processFile)
        var fds: [Int32] = [0, 0]
        try sys("socketpair", nil) { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) }
        let reader = FileDescriptor(adopting: fds[0])
        let pid: pid_t
        do {
            pid = try ChildProcess.spawn(try MicroVMPaths.monitor(),
                                         arguments: ["bulkhead-vm-monitor", "exec", state, processFile, request.consoleSocket ?? ""],
                                         environment: Self.passEnvironment(), fds: [(fds[1], 3)])
        } catch {
            close(fds[1])
            unlink(processFile)
            throw error
        }
        close(fds[1])
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(reader.raw, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 || byte == 10 { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("started ") else {
            Glibc.kill(pid, SIGKILL)
            _ = try? ChildProcess.wait(pid)
            unlink(processFile)
            let reason = text.hasPrefix("error ") ? String(text.dropFirst(6)) : "the exec helper ended without reporting"
            throw RuntimeError("exec in container \(record.id) failed: \(reason)")
        }
        if let pidFile = request.pidFile {
            try FileDescriptor.open(pidFile, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll("\(pid)", path: pidFile)
        }
        return pid
    }

    /// The container's state directory (sockets, logs), recorded at create.
    func stateDirectory(_ record: ContainerRecord) -> String {
        record.extra?["stateDirectory"] ?? ""
    }

    // MARK: pause, ps, stats

    /// Suspends the whole VM (its vCPUs stop; libvirt's virDomainSuspend through the monitor).
    public func pause(_ record: ContainerRecord) throws {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        let reply = try command("pause", stateDirectory: stateDirectory(record))
        guard reply == "ok" else { throw RuntimeError("cannot pause container \(record.id): \(reply)") }
    }

    public func resume(_ record: ContainerRecord) throws {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        let reply = try command("resume", stateDirectory: stateDirectory(record))
        guard reply == "ok" else { throw RuntimeError("cannot resume container \(record.id): \(reply)") }
    }

    /// The guest's processes, as the agent lists them (guest pids).
    public func guestProcesses(_ record: ContainerRecord) throws -> [GuestProcessInfo] {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        let reply = try command("ps", stateDirectory: stateDirectory(record), timeoutMs: 30_000)
        guard reply.hasPrefix("[") else { throw RuntimeError("cannot list the processes of container \(record.id): \(reply)") }
        return try JSONDecoder().decode([GuestProcessInfo].self, from: Data(reply.utf8))
    }

    // MARK: the rest

    public func processes(_ record: ContainerRecord) throws -> [Int32] {
        guard isAlive(record) else { return [] }
        return [record.pid] + (qemuPid(record).map { [$0] } ?? [])
    }

    /// Usage inside the guest (the container's cgroup there, else the whole guest), from the agent.
    public func stats(_ record: ContainerRecord) throws -> ContainerStats {
        guard isAlive(record) else { return ContainerStats() }
        let reply = try command("stats", stateDirectory: stateDirectory(record), timeoutMs: 30_000)
        guard reply.hasPrefix("{") else { throw RuntimeError("cannot read the statistics of container \(record.id): \(reply)") }
        let s = try JSONDecoder().decode(GuestStats.self, from: Data(reply.utf8))
        var out = ContainerStats()
        // runc's shape; a limit of 0 means none (as runc reports it).
        out.cpu.usage.total = s.cpuUsageNanoseconds
        out.memory.usage.usage = s.memoryUsageBytes
        out.memory.usage.limit = s.memoryLimitBytes
        out.pids.current = s.pidsCurrent
        out.pids.limit = s.pidsLimit
        return out
    }

    public func wait(forChild pid: Int32) -> Int32 { ChildProcess.waitForwardingSignals(pid) }
}
