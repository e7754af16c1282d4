import CShims
import Cgroups
import FoundationEssentials
import LinuxOS
import OCIRuntime
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// The container's init: a single-threaded, synchronous process in which forking and namespace calls are safe.
/// Either a child forked from a runtime that was single-threaded at the fork (``runForked(_:_:)``: the
/// configuration is already in memory), or, from a multithreaded one, our own binary re-executed
/// (`/proc/self/exe init`, runc's pattern; ``main()``), which receives the configuration as JSON.
///
/// Stage 1 joins namespaces given by path, creates the new ones (user namespace first, its id maps written by
/// the runtime), then forks stage 2 with CLONE_PARENT (so it is the runtime's child, and pid 1 of a new pid
/// namespace), reports that pid and exits. Stage 2 builds the root filesystem and everything else, reports
/// `ready`, then (create) blocks on the exec fifo until `start`, or (exec) goes straight on, and execs the
/// program.
public enum ContainerInit {
    /// Environment variable carrying the sync socket's fd number; its presence marks an init invocation.
    public static let environmentKey = "_BULKHEAD_INIT_FD"

    /// Whether this process was started as a container init (`bulkhead init` with the sync fd set).
    public static func isInitInvocation(_ arguments: [String]) -> Bool {
        arguments.count == 2 && arguments[1] == "init" && getenv(environmentKey) != nil
    }

    public static func main() -> Never {
        guard let value = getenv(environmentKey), let raw = Int32(String(cString: value)) else {
            fatal("bulkhead init: not started by the runtime")
        }
        unsetenv(environmentKey)
        run(SyncSocket(adopting: raw))
    }

    static func run(_ sock: SyncSocket) -> Never {
        let config: InitConfig
        do {
            guard let bytes = try sock.receive() else { exit(1) }
            config = try JSONDecoder().decode(InitConfig.self, from: Data(bytes))
        } catch {
            try? sock.send("error read the configuration: \(error)")
            exit(1)
        }
        stage1OrReport(config, sock)
    }

    /// What the runtime sends a forked init once it is in the container's cgroup.
    static let goMessage = "go"

    /// The init in a child forked from a single-threaded runtime (`bh_fork_init` has placed its fds, emptied
    /// its environment and reset its signals): it has `config` already, waits for the runtime's word, and moves
    /// itself into the v1 cgroups whose `tasks` files are in `joining` (its cgroup2 directory, if any, it was
    /// created in) before anything else.
    ///
    /// `bornInNamespaces`: the child was created in the container's new namespaces (all but the cgroup namespace,
    /// made here once the cgroups are joined) and is the container's init: it goes straight to stage 2.
    static func runForked(_ config: InitConfig, _ sock: SyncSocket, joining: [String], bornInNamespaces: Bool = false) -> Never {
        guard let word = try? sock.receive(limit: 64), word == Array(goMessage.utf8) else { exit(1) }
        for tasks in joining {
            do { try Cgroup.write(tasks, "0") } catch {
                try? sock.send("error join the cgroup (\(tasks)): \(error)")
                exit(1)
            }
        }
        if bornInNamespaces {
            if config.spec.linux?.namespaces?.contains(where: { $0.type == .cgroup }) == true {
                do {
                    try step("create the cgroup namespace") { try sys("unshare", "CLONE_NEWCGROUP") { bh_unshare(BH_CLONE_NEWCGROUP) } }
                } catch {
                    try? sock.send("error \(error)")
                    exit(1)
                }
            }
            stage2(config, sock, rootFD: -1)
        }
        stage1OrReport(config, sock)
    }

    static func stage1OrReport(_ config: InitConfig, _ sock: SyncSocket) -> Never {
        do { try stage1(config, sock) } catch {
            try? sock.send("error \(error)")
            exit(1)
        }
    }

    static func fatal(_ message: String) -> Never {
        let line = message + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        exit(127)
    }

    // MARK: stage 1

    static let order: [Spec.NamespaceType] = [.user, .ipc, .uts, .network, .pid, .mount, .cgroup, .time]

    static func flag(_ type: Spec.NamespaceType) -> Int32 {
        switch type {
        case .pid: BH_CLONE_NEWPID
        case .network: BH_CLONE_NEWNET
        case .mount: BH_CLONE_NEWNS
        case .ipc: BH_CLONE_NEWIPC
        case .uts: BH_CLONE_NEWUTS
        case .user: BH_CLONE_NEWUSER
        case .cgroup: BH_CLONE_NEWCGROUP
        case .time: BH_CLONE_NEWTIME
        }
    }

    static func procName(_ type: Spec.NamespaceType) -> String {
        switch type {
        case .network: "net"
        case .mount: "mnt"
        default: type.rawValue
        }
    }

    static func stage1(_ config: InitConfig, _ sock: SyncSocket) throws -> Never {
        var rootFD: Int32 = -1
        if config.mode == .exec {
            guard let target = config.targetPid else { throw InitError("exec", "no target pid") }
            rootFD = try step("open the container's root") {
                try sys("open", "/proc/\(target)/root") { bh_openat(AT_FDCWD, "/proc/\(target)/root", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) }
            }
            try joinNamespaces(ofPid: target)
        } else {
            let namespaces = config.spec.linux?.namespaces ?? []
            // Open every namespace path first (they are host paths), then join: user first.
            var joins: [(Spec.NamespaceType, Int32)] = []
            for type in order {
                guard let ns = namespaces.first(where: { $0.type == type }), let path = ns.path, !path.isEmpty else { continue }
                let fd = try step("open \(type.rawValue) namespace \(path)") {
                    try sys("open", path) { bh_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0) }
                }
                joins.append((type, fd))
            }
            for (type, fd) in joins {
                try step("join \(type.rawValue) namespace") { try sys("setns", nil) { bh_setns(fd, flag(type)) } }
                close(fd)
            }
            let new = namespaces.filter { $0.path == nil || $0.path!.isEmpty }.map(\.type)
            if new.contains(.user) {
                try step("create user namespace") { try sys("unshare", "CLONE_NEWUSER") { bh_unshare(BH_CLONE_NEWUSER) } }
                try sock.send("userns")
                guard let reply = try sock.receiveText(), reply == "ok" else { throw InitError("user namespace", "the runtime did not write the id maps") }
            }
            if new.contains(.user) || joins.contains(where: { $0.0 == .user }) {
                try step("become root in the user namespace") {
                    try sys("setresgid", nil) { bh_setresgid(0, 0, 0) }
                    try sys("setresuid", nil) { bh_setresuid(0, 0, 0) }
                }
            }
            var flags: Int32 = 0
            for type in new where type != .user { flags |= flag(type) }
            if flags != 0 {
                try step("create namespaces (\(new.filter { $0 != .user }.map(\.rawValue).joined(separator: ",")))") {
                    try sys("unshare", nil) { bh_unshare(flags) }
                }
            }
        }
        // Stage 2 waits until stage 1 has reported its pid (end of file on this pipe: stage 1 exits right after).
        // Otherwise, on a busy machine, stage 2 could report `ready` first, and the runtime would never learn which
        // process the container is (state showed pid 0 and `start` found the container stopped).
        var gate: [Int32] = [-1, -1]
        try step("make the stage 2 gate") { try sys("pipe", nil) { pipe(&gate) } }
        for fd in gate { _ = bh_fcntl_int(fd, F_SETFD, FD_CLOEXEC) }
        let pid = bh_clone_fork(BH_CLONE_PARENT)
        if pid < 0 { throw InitError("fork the container process", SystemError(operation: "clone", errno: bh_errno()).description) }
        if pid == 0 {
            close(gate[1])
            var byte: UInt8 = 0
            while read(gate[0], &byte, 1) < 0 && errno == EINTR {}
            close(gate[0])
            stage2(config, sock, rootFD: rootFD)
        }
        close(gate[0])
        try sock.send("pid \(pid)")
        exit(0)
    }

    /// exec: joins every namespace of `pid` that differs from ours (user first).
    static func joinNamespaces(ofPid pid: Int32) throws {
        var fds: [(Spec.NamespaceType, Int32)] = []
        for type in order {
            let theirs = "/proc/\(pid)/ns/\(procName(type))"
            var a = Glibc.stat(), b = Glibc.stat()
            guard fstatat(AT_FDCWD, theirs, &a, 0) == 0, fstatat(AT_FDCWD, "/proc/self/ns/\(procName(type))", &b, 0) == 0 else { continue }
            if a.st_ino == b.st_ino && a.st_dev == b.st_dev { continue }
            let fd = try step("open \(theirs)") { try sys("open", theirs) { bh_openat(AT_FDCWD, theirs, O_RDONLY | O_CLOEXEC, 0) } }
            fds.append((type, fd))
        }
        for (type, fd) in fds {
            try step("join the container's \(type.rawValue) namespace") { try sys("setns", nil) { bh_setns(fd, flag(type)) } }
            close(fd)
            if type == .user {
                try sys("setresgid", nil) { bh_setresgid(0, 0, 0) }
                try sys("setresuid", nil) { bh_setresuid(0, 0, 0) }
            }
        }
    }

    // MARK: stage 2

    static func stage2(_ config: InitConfig, _ sock: SyncSocket, rootFD: Int32) -> Never {
        var program: ProgramLaunch
        var hookState: [UInt8]? = nil
        var fifoFD: Int32 = -1
        var procFD: Int32 = -1
        do {
            _ = setsid()
            umask(0)
            if config.mode == .create {
                procFD = try step("open /proc") { try sys("open", "/proc") { bh_openat(AT_FDCWD, "/proc", BH_O_PATH | O_DIRECTORY | O_CLOEXEC, 0) } }
                if let fifo = config.fifoPath {
                    fifoFD = try step("open the exec fifo") { try sys("open", fifo) { bh_openat(AT_FDCWD, fifo, BH_O_PATH | O_CLOEXEC, 0) } }
                }
                var rootfs = RootfsSetup(config: config)
                try rootfs.prepare(sock: sock)
                if config.process.terminal == true { try setUpConsole(config) }
                try rootfs.finish()
                try setNames(config.spec)
            } else {
                try step("enter the container's root") {
                    try sys("fchdir", nil) { fchdir(rootFD) }
                    try sys("chroot", ".") { chroot(".") }
                    close(rootFD)
                }
                if config.process.terminal == true { try setUpConsole(config) }
            }
            if !config.noNewKeyring && config.mode == .create {
                // A fresh session keyring, so the container does not share the host's (runc does the same).
                _ = bh_join_session_keyring("_ses." + config.id)
            }
            program = try step("find the program") { try ProgramLaunch(process: config.process, seccomp: config.spec.linux?.seccomp) }
            try sock.send("ready")
            if config.hasStartContainerHooks { hookState = try sock.receive() }
        } catch {
            try? sock.send("error \(error)")
            exit(1)
        }
        // The sync socket is close-on-exec; it goes away with the exec.
        if config.mode == .create && fifoFD >= 0 {
            // Wait for `start`: opening the fifo for writing blocks until the runtime opens it for reading.
            let w = bh_openat(procFD, "self/fd/\(fifoFD)", O_WRONLY | O_CLOEXEC, 0)
            if w < 0 { fatal("bulkhead init: cannot open the exec fifo: \(String(cString: strerror(errno)))") }
            _ = write(w, "0", 1)
            close(w)
            close(fifoFD)
            close(procFD)
        }
        if let hooks = config.spec.hooks?.startContainer, !hooks.isEmpty {
            do { try HookRunner.run(hooks, phase: "startContainer", state: hookState ?? []) } catch {
                fatal("bulkhead init: \(error)")
            }
        }
        program.exec(preserveFds: config.preserveFds)
    }

    static func setUpConsole(_ config: InitConfig) throws {
        guard let consoleFD = config.consoleFD else {
            throw InitError("set up the terminal", "process.terminal is true but no --console-socket was given")
        }
        try step("set up the terminal") {
            var slave: Int32 = -1
            let master = try sys("open pty", "/dev/ptmx") { bh_open_pty("/dev/ptmx", &slave) }
            if let size = config.process.consoleSize {
                _ = bh_set_winsize(master, UInt16(truncatingIfNeeded: size.height), UInt16(truncatingIfNeeded: size.width))
            }
            if config.mode == .create {
                // /dev/console is the pty, as in runc.
                var name = [CChar](repeating: 0, count: 256)
                let n = readlink("/proc/self/fd/\(slave)", &name, 255)
                if n > 0 {
                    let path = String(decoding: name[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    let f = bh_openat(AT_FDCWD, "/dev/console", O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o600)
                    if f >= 0 { close(f) }
                    _ = Glibc.mount(path, "/dev/console", nil, UInt(MountFlags.bind), nil)
                }
            }
            try sys("send console", "console socket") { bh_send_fd(consoleFD, master, "/dev/ptmx", 9) }
            close(master)
            close(consoleFD)
            for target: Int32 in 0...2 { try sys("dup2", "pty") { dup2(slave, target) } }
            close(slave)
            try sys("ioctl TIOCSCTTY", nil) { bh_set_ctty(0) }
        }
    }

    static func setNames(_ spec: Spec) throws {
        let namespaces = spec.linux?.namespaces ?? []
        let hasUTS = namespaces.contains { $0.type == .uts }
        if let hostname = spec.hostname, !hostname.isEmpty {
            guard hasUTS else { throw InitError("set the hostname", "hostname \"\(hostname)\" needs a uts namespace in linux.namespaces") }
            try step("set the hostname") { try sys("sethostname", hostname) { bh_sethostname(hostname, hostname.utf8.count) } }
        }
        if let domain = spec.domainname, !domain.isEmpty {
            guard hasUTS else { throw InitError("set the domain name", "domainname \"\(domain)\" needs a uts namespace in linux.namespaces") }
            try step("set the domain name") { try sys("setdomainname", domain) { bh_setdomainname(domain, domain.utf8.count) } }
        }
    }
}

/// A failure inside the init, naming the step.
struct InitError: Error, CustomStringConvertible {
    let step: String
    let message: String
    init(_ step: String, _ message: String) { self.step = step; self.message = message }
    var description: String { "\(step): \(message)" }
}

/// Runs `body`, labelling an error with the step it belongs to (unless it already names one).
@discardableResult
func step<T: ~Copyable>(_ name: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as InitError { throw e } catch {
        throw InitError(name(), "\(error)")
    }
}
