import CShims
import Cgroups
import Confine
import FoundationEssentials
import LinuxOS
import Logging
import OCIRuntime
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// The namespace tier: a container is a process tree in its own namespaces, cgroup and root filesystem on the
/// host kernel. The runtime side (this type) starts the init (`ContainerInit`) and drives it over a sync socket:
/// when the runtime process is single-threaded at that moment (the CLI is), by forking it, and the child runs the
/// init with the configuration already in memory; otherwise by re-executing its own binary (runc's pattern), which
/// is safe in a multithreaded process because no Swift code runs between that fork and exec.
public struct NamespaceBackend: Backend {
    public let name = "namespace"
    /// Applies `linux.resources` (``CgroupResourceApplier`` unless a test gives another).
    public let resources: ResourceApplier
    /// The binary re-executed as the container init.
    public let initBinary: String
    /// Always re-execute `initBinary` for the init, even from a single-threaded process (set by
    /// `BULKHEAD_INIT_REEXEC=1` in the runtime's environment; the tests use it to cover that path).
    public let alwaysReexec: Bool
    let logger = Logger(label: "bulkhead.namespace")

    /// The environment variable that makes ``alwaysReexec`` the default.
    public static let reexecEnvironmentKey = "BULKHEAD_INIT_REEXEC"

    public init(resources: ResourceApplier? = nil, initBinary: String = "/proc/self/exe", alwaysReexec: Bool? = nil) {
        self.resources = resources ?? CgroupResourceApplier(warn: { Logger(label: "bulkhead.cgroups").warning("\($0)") })
        self.initBinary = initBinary
        self.alwaysReexec = alwaysReexec ?? (getenv(Self.reexecEnvironmentKey).map { String(cString: $0) == "1" } ?? false)
    }

    static let fifoName = "exec.fifo"

    func cgroup(of record: ContainerRecord) -> Cgroup? {
        guard let path = record.cgroupPath, let layout = try? CgroupLayout.detect() else { return nil }
        return Cgroup(layout: layout, path: path)
    }

    // MARK: create

    public func create(_ request: CreateRequest, record: inout ContainerRecord, directory: ContainerDirectory) throws {
        let spec = request.spec
        record.hooks = spec.hooks
        // What `exec` needs to confine its processes like this one.
        record.extra = (record.extra ?? [:]).merging([ConfinementRecord.key: ConfinementRecord(spec: spec).encoded]) { $1 }
        guard let process = spec.process else {
            throw RuntimeError("create \(request.id): config.json has no process section; the namespace tier needs one")
        }
        do { try spec.validateUserNamespace() } catch { throw RuntimeError("create \(request.id): \(error)") }
        try checkJoinedUserNamespace(spec, id: request.id)
        // Idmapped bind mounts are made here, on the host (only root in the initial namespace may create a user
        // namespace with host ids in its maps), as detached trees the init attaches inside the container.
        let mountTrees: MountTrees
        do { mountTrees = try idmappedMountTrees(spec, bundle: request.bundle) } catch {
            throw RuntimeError("create \(request.id): \(error)")
        }
        var initPid: Int32 = 0
        var stage1: Int32 = 0
        var createdCgroup: Cgroup?
        do {
            // 1. The cgroup, before any process exists, so that everything the container starts is inside it.
            let layout = try stepOf("detect the cgroup layout") { try CgroupLayout.detect() }
            let path = try stepOf("resolve linux.cgroupsPath") {
                try CgroupPath.resolve(spec.linux?.cgroupsPath, containerID: request.id, systemd: request.systemdCgroup,
                                       ownCgroup: ownCgroupPath(controller: layout.kind == .unified ? "" : "pids"))
            }
            if request.systemdCgroup && !CgroupPath.systemdIsRunning() {
                logger.info("systemd is not running on this host: --systemd-cgroup falls back to the cgroupfs driver; linux.cgroupsPath \"\(spec.linux?.cgroupsPath ?? "")\" is the cgroup \(path) (no systemd scope is created)")
            }
            let cgroup = Cgroup(layout: layout, path: path)
            record.cgroupPath = path
            try directory.save(record)
            try stepOf("create cgroup \(path)") { try cgroup.create() }
            createdCgroup = cgroup
            // Always, even without a resources section: the device rules (deny by default, the standard devices
            // allowed) apply to every container, as with runc.
            let json = try spec.linux?.resources.map { Array(try JSONEncoder().encode($0)) } ?? []
            try stepOf("apply linux.resources") { try resources.apply(ResourceRequest(json: json), to: cgroup) }

            // 2. The exec fifo `start` opens.
            let fifo = directory.path + "/" + Self.fifoName
            try stepOf("create the exec fifo") {
                try sys("mkfifo", fifo) { mkfifo(fifo, 0o622) }
                try sys("chmod", fifo) { chmod(fifo, 0o622) }
            }

            // 3. The init.
            let namespaces = spec.linux?.namespaces ?? []
            record.ownPidNamespace = namespaces.contains { $0.type == .pid && ($0.path ?? "").isEmpty }
            let config = InitConfig(
                mode: .create, id: request.id, bundle: request.bundle, rootfs: record.rootfs, spec: spec,
                process: process, noPivot: request.noPivot, noNewKeyring: request.noNewKeyring, fifoPath: fifo,
                consoleFD: nil, preserveFds: request.preserveFds,
                cgroupDirectories: cgroup.directories.map { dir in
                    InitConfig.CgroupDirectory(name: dir.controllers.isEmpty ? (layout.kind == .unified ? "" : "unified")
                                               : dir.controllers.map { $0.hasPrefix("name=") ? String($0.dropFirst(5)) : $0 }.joined(separator: ","),
                                               hostPath: dir.directory)
                },
                cgroupUnified: layout.kind == .unified, targetPid: nil,
                hasStartContainerHooks: !(spec.hooks?.startContainer ?? []).isEmpty,
                hasCreateHooks: !((spec.hooks?.prestart ?? []) + (spec.hooks?.createRuntime ?? []) + (spec.hooks?.createContainer ?? [])).isEmpty)
            let launched = try launchInit(config, consoleSocket: process.terminal == true ? request.consoleSocket : nil,
                                          mountTrees: mountTrees.items,
                                          terminal: process.terminal == true, preserveFds: request.preserveFds,
                                          cgroup: cgroup, uidMappings: spec.linux?.uidMappings, gidMappings: spec.linux?.gidMappings,
                                          onPid: { pid, s1 in
                                              initPid = pid; stage1 = s1
                                              record.pid = pid
                                              record.pidStartTime = (try? ChildProcess.statFields(pid).startTime) ?? 0
                                              try directory.save(record)
                                          },
                                          onHooks: {
                                              let state = record.stateJSON(status: .creating).hookJSON
                                              try HookRunner.run(spec.hooks?.prestart, phase: "prestart", state: state)
                                              try HookRunner.run(spec.hooks?.createRuntime, phase: "createRuntime", state: state)
                                              try HookRunner.run(spec.hooks?.createContainer, phase: "createContainer", state: state)
                                          })
            withExtendedLifetime(mountTrees) {}   // its fds stay open until the init has its copies
            if config.hasStartContainerHooks {
                try launched.send(record.stateJSON(status: .created).hookJSON)
            }
            launched.close()
            record.status = .created
            try directory.save(record)
            if let pidFile = request.pidFile {
                try stepOf("write the pid file \(pidFile)") { try writePidFile(pidFile, pid: initPid) }
            }
        } catch {
            // Tear down what this create built: processes, cgroup. (The caller removes the state directory.)
            if initPid > 0 { Glibc.kill(initPid, SIGKILL) }
            if stage1 > 0 { Glibc.kill(stage1, SIGKILL) }
            if let cg = createdCgroup {
                for pid in (try? cg.pids()) ?? [] { Glibc.kill(pid, SIGKILL) }
                if initPid > 0 { _ = try? ChildProcess.wait(initPid, timeoutMs: 2000, what: "container init") }
                try? cg.delete()
            }
            throw RuntimeError("create \(request.id) failed: \(error)")
        }
    }

    /// Spawns `bulkhead init`, joins it to the cgroup, sends the config and serves its requests until `ready`.
    /// Returns the runtime's end of the sync socket (still open for a final message).
    func launchInit(_ baseConfig: InitConfig, consoleSocket: String?, mountTrees: [(index: Int, fd: Int32)] = [],
                    terminal: Bool, preserveFds: Int, cgroup: Cgroup?,
                    uidMappings: [Spec.IDMapping]?, gidMappings: [Spec.IDMapping]?,
                    onPid: (Int32, Int32) throws -> Void, onHooks: () throws -> Void) throws -> SyncSocket {
        var config = baseConfig
        let (oursRaw, theirsRaw) = try SyncSocket.pair()
        let ours = SyncSocket(adopting: oursRaw)
        let theirs = FileDescriptor(adopting: theirsRaw)
        var fds: [(source: Int32, target: Int32)] = (0..<Int32(preserveFds)).map { (3 + $0, 3 + $0) }
        let syncTarget = 3 + Int32(preserveFds)
        fds.append((theirs.raw, syncTarget))
        var console: FileDescriptor?
        if terminal {
            guard let consoleSocket else {
                throw InitError("set up the terminal", "process.terminal is true: give --console-socket (or set terminal to false)")
            }
            let fd = try stepOf("connect to the console socket \(consoleSocket)") { try connectUnixSocket(consoleSocket) }
            fds.append((fd.raw, syncTarget + 1))
            config.consoleFD = syncTarget + 1
            console = consume fd
        }
        // Detached idmapped mount trees, at fds after the console's: the init attaches them (mounts[index]).
        for (k, t) in mountTrees.enumerated() {
            fds.append((t.fd, syncTarget + 2 + Int32(k)))
        }
        config.idmappedMounts = mountTrees.isEmpty ? nil : mountTrees.enumerated().map { k, t in
            InitConfig.IdmappedMount(index: t.index, fd: syncTarget + 2 + Int32(k))
        }
        // Fork without exec only when this process is single-threaded right now: then no lock can be held by a
        // thread that the child would not have, and the child may run Swift code (no new thread can appear
        // between the count and the fork: only this thread could start one).
        let forked = !alwaysReexec && bh_thread_count() == 1
        let stage1: pid_t
        var bornInCgroup = false
        var direct = false
        var bornIn: UInt = 0
        if forked {
            // Joining a cgroup by writing a pid to cgroup.procs takes the global cgroup migration lock and waits for
            // an RCU grace period (8-17 ms here). So the child is created in the container's cgroup2 directory
            // (crun does the same), and moves itself into the v1 hierarchies by writing "0" to their `tasks`: the
            // calling thread only, which for a single-threaded process is all of it, and without that lock.
            let unified = cgroup?.directories.first { $0.controllers.isEmpty }?.directory
            let v1Tasks = cgroup?.directories.filter { !$0.controllers.isEmpty }.map { $0.directory + "/tasks" } ?? []
            var cgroupDir: FileDescriptor?
            if let unified { cgroupDir = try? FileDescriptor.open(unified, O_RDONLY | O_DIRECTORY) }
            var inCgroup: Int32 = 0
            // Born in its namespaces (as crun does it): when the container makes every namespace it has itself (none
            // joined by path, no user namespace, whose maps must be written from outside between unshare and use,
            // no time namespace), the child is created in them and is the container's init at once (pid 1 of its pid
            // namespace). Stage 1, a process that only unshares and forks, and its report, are skipped. The cgroup
            // namespace is the exception: the child makes it after joining its cgroups, so that its root is the
            // container's cgroup.
            let namespaces = config.spec.linux?.namespaces ?? []
            if config.mode == .create, namespaces.allSatisfy({ ($0.path ?? "").isEmpty && $0.type != .user && $0.type != .time }) {
                for ns in namespaces where ns.type != .cgroup { bornIn |= UInt(UInt32(bitPattern: ContainerInit.flag(ns.type))) }
                direct = true
            }
            let pid = bh_fork_init(fds.map(\.source), fds.map(\.target), Int32(fds.count), cgroupDir?.raw ?? -1, &inCgroup, bornIn)
            let joinsItself = cgroup != nil && (unified == nil || inCgroup == 1)
            if pid == 0 {
                ContainerInit.runForked(config, SyncSocket(adopting: syncTarget), joining: joinsItself ? v1Tasks : [], bornInNamespaces: direct)
            }
            if pid < 0 { throw InitError("start the container init", SystemError(operation: "fork", errno: bh_errno()).description) }
            stage1 = pid
            bornInCgroup = joinsItself
            logger.debug("container init: forked (pid \(pid); the runtime is single-threaded)\(bornInCgroup ? "; it joins its cgroup itself" : "")\(direct ? "; born in its namespaces" : "")")
        } else {
            stage1 = try stepOf("start the container init") {
                try ChildProcess.spawn(initBinary, arguments: ["bulkhead", "init"],
                                       environment: ["\(ContainerInit.environmentKey)=\(syncTarget)"], fds: fds)
            }
            logger.debug("container init: re-executed \(initBinary) (pid \(stage1))")
        }
        _ = consume theirs
        _ = console.take()
        var reaped = false
        defer { if !reaped { Glibc.kill(stage1, SIGKILL); _ = try? ChildProcess.wait(stage1) } }
        if let cgroup, !bornInCgroup { try stepOf("join cgroup \(cgroup.path)") { try cgroup.join(pid: stage1) } }
        // The forked init has the configuration already; it waits for this word to know it is in the cgroup.
        var pid: Int32 = 0
        if direct {
            // The child is the init: its pid is known now (no stage 1 reports it), and recorded before it may go on.
            pid = stage1
            try onPid(pid, stage1)
            reaped = true   // from here a failure is torn down by the caller, through the recorded pid
        }
        try ours.send(forked ? Array(ContainerInit.goMessage.utf8) : Array(try JSONEncoder().encode(config)))
        while true {
            guard let message = try ours.receiveText() else {
                let status = (try? ChildProcess.wait(stage1, noHang: true)) ?? nil
                reaped = status != nil || reaped
                throw InitError("container init", "it exited without reporting (status \(status.map { ChildProcess.exitCode(fromWaitStatus: $0) } ?? -1))")
            }
            let (verb, payload) = message.splitVerb()
            switch verb {
            case "userns":
                // The init has just unshared its user namespace and waits: its maps are written from here, as
                // root in the parent namespace (no newuidmap), before it does anything as the namespace's root.
                try stepOf("write the user namespace id maps of the container init (pid \(stage1))") {
                    try writeMaps(pid: stage1, uid: uidMappings ?? [], gid: gidMappings ?? [])
                }
                try ours.send("ok")
            case "pid":
                guard let p = Int32(payload) else { throw InitError("container init", "bad pid message \"\(message)\"") }
                pid = p
                _ = try? ChildProcess.wait(stage1)
                reaped = true
                try onPid(pid, stage1)
            case "hooks":
                do { try onHooks(); try ours.send("ok") } catch {
                    try? ours.send("error \(error)")
                    throw error
                }
            case "ready":
                guard pid > 0 else { throw InitError("container init", "it reported ready before its pid") }
                return ours
            case "error":
                throw RuntimeError(payload)
            default:
                throw InitError("container init", "unexpected message \"\(message)\"")
            }
        }
    }

    func writeMaps(pid: Int32, uid: [Spec.IDMapping], gid: [Spec.IDMapping]) throws {
        for (kind, list) in [("uid", uid), ("gid", gid)] where list.isEmpty {
            throw RuntimeError("linux.\(kind)Mappings is empty: a new user namespace needs at least one \(kind) mapping")
        }
        // A runtime that is root holds CAP_SETGID over the parent namespace and may write gid_map with
        // setgroups(2) still allowed in the container (the process.user.additionalGids need it). Without it the
        // kernel only takes a gid_map after setgroups is denied.
        try UserNamespace.writeMaps(pid: pid, uid: uid.map(\.entry), gid: gid.map(\.entry), denySetgroups: geteuid() != 0)
    }

    /// The detached, idmapped trees of the spec's bind mounts that ask for one: `uidMappings`/`gidMappings` on the
    /// mount, or the `idmap`/`ridmap` option (then the container's own mappings). `rbind` clones the whole tree;
    /// `ridmap` idmaps every mount in it (`idmap` only the top one). Needs a new user namespace, as runc does.
    func idmappedMountTrees(_ spec: Spec, bundle: String) throws -> MountTrees {
        let out = MountTrees()
        for (i, m) in (spec.mounts ?? []).enumerated() {
            let options = m.options ?? []
            let ridmap = options.contains("ridmap")
            guard m.uidMappings != nil || m.gidMappings != nil || ridmap || options.contains("idmap") else { continue }
            let field = "mounts[\(i)] (\(m.destination))"
            let parsed = MountOptions(options)
            guard parsed.bind || m.type == "bind" || m.type == "rbind" else {
                throw RuntimeError("\(field): idmapped mounts are bind mounts; add \"bind\" or \"rbind\" to its options")
            }
            guard let userns = spec.linux?.namespaces?.first(where: { $0.type == .user }), (userns.path ?? "").isEmpty else {
                throw RuntimeError("\(field): an idmapped mount needs a new user namespace in linux.namespaces (with uidMappings/gidMappings)")
            }
            let uid = m.uidMappings ?? spec.linux?.uidMappings ?? [], gid = m.gidMappings ?? spec.linux?.gidMappings ?? []
            guard !uid.isEmpty, !gid.isEmpty else {
                throw RuntimeError("\(field): an idmapped mount needs both uidMappings and gidMappings (on the mount or in linux)")
            }
            var source = m.source ?? ""
            if !source.hasPrefix("/") { source = bundle + "/" + source }
            let ns = try UserNamespace.make(uid: uid.map(\.entry), gid: gid.map(\.entry))
            do {
                let tree = try Mount.idmappedClone(of: source, userNamespace: ns, recursive: parsed.recursive || m.type == "rbind",
                                                   recursiveIDMap: ridmap)
                out.items.append((i, tree.take()))
            } catch {
                throw RuntimeError("\(field): cannot make an idmapped mount of \(source): \(error)")
            }
        }
        return out
    }

    /// Joining a user namespace by path: mappings in the spec are not written (the namespace has its maps), but
    /// when they are given and the path names a process's namespace, they must be the maps it has.
    func checkJoinedUserNamespace(_ spec: Spec, id: String) throws {
        guard let path = spec.linux?.namespaces?.first(where: { $0.type == .user })?.path, !path.isEmpty else { return }
        let parts = path.split(separator: "/")
        guard parts.count == 4, parts[0] == "proc", parts[2] == "ns", parts[3] == "user", let pid = Int32(parts[1]) else {
            if spec.linux?.uidMappings != nil || spec.linux?.gidMappings != nil {
                logger.info("create \(id): joining the user namespace \(path): linux.uidMappings/gidMappings are not written (the namespace has its own maps)")
            }
            return
        }
        for (field, file, given) in [("linux.uidMappings", "uid_map", spec.linux?.uidMappings), ("linux.gidMappings", "gid_map", spec.linux?.gidMappings)] {
            guard let given, !given.isEmpty else { continue }
            let actual = (try? UserNamespace.readMap(pid: pid, file)) ?? []
            if Set(actual) != Set(given.map(\.entry)) {
                throw RuntimeError("create \(id): \(field) \(UserNamespace.mapText(given.map(\.entry)).split(separator: "\n").joined(separator: ", ")) differ from the maps of the user namespace \(path) being joined (\(UserNamespace.mapText(actual).split(separator: "\n").joined(separator: ", "))): drop the mappings or make them match")
            }
        }
    }

    func writePidFile(_ path: String, pid: Int32) throws {
        let tmp = path + ".tmp-bulkhead"
        let fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        try fd.writeAll(String(pid), path: tmp)
        try sys("rename", path) { rename(tmp, path) }
    }

    // MARK: start

    public func start(_ record: inout ContainerRecord, directory: ContainerDirectory) throws {
        let status = status(of: record, directory: directory)
        guard status == .created else {
            throw RuntimeError("cannot start container \(record.id): it is \(status.rawValue), not created")
        }
        let fifo = directory.path + "/" + Self.fifoName
        let fd = try FileDescriptor.open(fifo, O_RDONLY | O_NONBLOCK)
        var byte: UInt8 = 0
        while true {
            if waitReadable(fd.raw, timeoutMs: 20) {
                let n = Glibc.read(fd.raw, &byte, 1)
                if n == 1 { break }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            }
            if !isAlive(record) {
                throw RuntimeError("cannot start container \(record.id): its init has exited (see the engine's log of the container's stderr)")
            }
        }
        _ = unlink(fifo)
        record.status = .running
        try directory.save(record)
        do {
            try HookRunner.run(record.hooks?.poststart, phase: "poststart", state: record.stateJSON(status: .running).hookJSON)
        } catch {
            logger.warning("\(error)")
        }
    }

    // MARK: status

    func isAlive(_ record: ContainerRecord) -> Bool {
        guard record.pid > 0, ChildProcess.isAlive(record.pid) else { return false }
        if record.pidStartTime != 0, let start = try? ChildProcess.statFields(record.pid).startTime, start != record.pidStartTime {
            return false
        }
        return true
    }

    public func status(of record: ContainerRecord, directory: ContainerDirectory) -> ContainerStatus {
        if !isAlive(record) { return .stopped }
        if record.status == .creating { return .creating }
        if access(directory.path + "/" + Self.fifoName, F_OK) == 0 { return .created }
        if let cg = cgroup(of: record), cg.freezerState() != .thawed { return .paused }
        return .running
    }

    // MARK: kill, delete

    public func kill(_ record: ContainerRecord, signal: Int32, all: Bool) throws {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        if all, let cg = cgroup(of: record) {
            for pid in try cg.pids() { _ = Glibc.kill(pid, signal) }
            if signal == SIGKILL, cg.freezerState() != .thawed { try? cg.thaw() }
            return
        }
        try sys("kill", "pid \(record.pid)") { Glibc.kill(record.pid, signal) }
    }

    public func delete(_ record: ContainerRecord, directory: ContainerDirectory, force: Bool) throws {
        let status = status(of: record, directory: directory)
        switch status {
        case .stopped, .created, .creating: break
        case .running, .paused:
            if !force {
                throw RuntimeError("cannot delete container \(record.id) that is not stopped: \(status.rawValue) (stop it first, or use delete --force)")
            }
        }
        let cg = cgroup(of: record)
        if isAlive(record) { _ = Glibc.kill(record.pid, SIGKILL) }
        if let cg, cg.exists {
            // Everything left in the cgroup goes too (a container without its own pid namespace, or a kill -9
            // of the runtime in the middle of create).
            for _ in 0..<200 {
                let pids = (try? cg.pids()) ?? []
                if pids.isEmpty { break }
                for pid in pids { _ = Glibc.kill(pid, SIGKILL) }
                if cg.freezerState() != .thawed { try? cg.thaw() }
                usleep(5000)
            }
            try cg.delete()
        }
        // Up to 2 s for the init to be reaped (a `for … where` would check 400 times even when it is gone).
        var waits = 0
        while waits < 400 && isAlive(record) { usleep(5000); waits += 1 }
        if status != .creating {
            do {
                try HookRunner.run(record.hooks?.poststop, phase: "poststop", state: record.stateJSON(status: .stopped).hookJSON)
            } catch {
                logger.warning("\(error)")
            }
        }
    }

    // MARK: exec

    public func exec(_ record: ContainerRecord, _ request: ExecRequest) throws -> Int32 {
        guard isAlive(record) else { throw RuntimeError("cannot exec in container \(record.id): container not running") }
        let cg = cgroup(of: record)
        if let cg, cg.freezerState() != .thawed {
            throw RuntimeError("cannot exec in container \(record.id): it is paused (resume it first)")
        }
        // The container's seccomp filter applies to every process in it (the process.json carries none).
        var spec = Spec()
        if let seccomp = try ConfinementRecord.from(record.extra)?.seccomp {
            spec.linux = Spec.Linux()
            spec.linux?.seccomp = seccomp
        }
        let config = InitConfig(
            mode: .exec, id: record.id, bundle: record.bundle, rootfs: record.rootfs, spec: spec,
            process: request.process, noPivot: false, noNewKeyring: true, fifoPath: nil, consoleFD: nil,
            preserveFds: request.preserveFds, cgroupDirectories: [], cgroupUnified: false, targetPid: record.pid,
            hasStartContainerHooks: false, hasCreateHooks: false)
        var pid: Int32 = 0
        do {
            let sock = try launchInit(config, consoleSocket: request.consoleSocket, terminal: request.process.terminal == true,
                               preserveFds: request.preserveFds, cgroup: cg, uidMappings: nil, gidMappings: nil,
                               onPid: { p, _ in pid = p }, onHooks: {})
            sock.close()
        } catch {
            if pid > 0 { Glibc.kill(pid, SIGKILL); _ = try? ChildProcess.wait(pid) }
            throw RuntimeError("exec in container \(record.id) failed: \(error)")
        }
        if let pidFile = request.pidFile { try writePidFile(pidFile, pid: pid) }
        return pid
    }

    // MARK: pause, ps, stats, wait

    public func pause(_ record: ContainerRecord) throws {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        guard let cg = cgroup(of: record) else { throw RuntimeError("container \(record.id) has no cgroup to freeze") }
        try cg.freeze()
    }

    public func resume(_ record: ContainerRecord) throws {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        guard let cg = cgroup(of: record) else { throw RuntimeError("container \(record.id) has no cgroup to thaw") }
        if cg.freezerState() == .thawed { throw RuntimeError("container \(record.id) is not paused") }
        try cg.thaw()
    }

    public func processes(_ record: ContainerRecord) throws -> [Int32] {
        guard let cg = cgroup(of: record), cg.exists else { return [] }
        return try cg.pids()
    }

    public func stats(_ record: ContainerRecord) throws -> ContainerStats {
        guard let cg = cgroup(of: record) else { return ContainerStats() }
        return cg.stats()
    }

    public func oomKills(_ record: ContainerRecord) -> UInt64? { cgroup(of: record)?.oomKillCount() }

    public func update(_ record: ContainerRecord, resources r: LinuxResources) throws {
        guard isAlive(record) else { throw RuntimeError.notRunning(record.id) }
        guard let cg = cgroup(of: record), cg.exists else {
            throw RuntimeError("cannot update container \(record.id): it has no cgroup")
        }
        let applier = (resources as? CgroupResourceApplier) ?? CgroupResourceApplier(warn: { Logger(label: "bulkhead.cgroups").warning("\($0)") })
        do { try applier.apply(r, to: cg, update: true) } catch {
            throw RuntimeError("update \(record.id): \(error)")
        }
    }

    public func wait(forChild pid: Int32) -> Int32 { ChildProcess.waitForwardingSignals(pid) }
}

/// Detached mount trees the runtime holds until the init has its copies (closed when this goes away).
final class MountTrees {
    var items: [(index: Int, fd: Int32)] = []
    deinit { for item in items { _ = Glibc.close(item.fd) } }
}

extension Spec.IDMapping {
    var entry: IDMapEntry { IDMapEntry(inside: containerID, outside: hostID, count: size) }
}

func stepOf<T: ~Copyable>(_ name: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as InitError { throw e } catch let e as RuntimeError { throw e } catch {
        throw InitError(name(), "\(error)")
    }
}

extension String {
    func splitVerb() -> (String, String) {
        guard let space = firstIndex(of: " ") else { return (self, "") }
        return (String(self[..<space]), String(self[index(after: space)...]))
    }
}

