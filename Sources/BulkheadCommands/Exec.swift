import ArgumentParser
import Confine
import FoundationEssentials
import LinuxOS
import OCIRuntime
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead exec`: another process in a running container, from a process.json (`--process`) or arguments.
struct Exec: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "exec", abstract: "Run a process inside a running container.").verb

    @OptionGroup var globals: GlobalOptions
    @Option(name: [.short, .customLong("process")], help: ArgumentHelp("A process.json (the spec's process section); replaces the arguments.", valueName: "file"))
    var process: String?
    @Flag(name: [.short, .customLong("detach")], help: "Do not wait for the process.") var detach = false
    @Option(name: .customLong("pid-file"), help: ArgumentHelp("Write the process's pid here.", valueName: "path")) var pidFile: String?
    @Flag(name: [.short, .customLong("tty")], help: "Give the process a terminal (needs --console-socket when detached).") var tty = false
    @Option(name: .customLong("console-socket"), help: ArgumentHelp("Unix socket that receives the pty master.", valueName: "path")) var consoleSocket: String?
    @Option(name: .customLong("cwd"), help: "Working directory in the container.") var cwd: String?
    @Option(name: [.short, .customLong("env")], help: "Set an environment variable (KEY=VALUE); repeatable.") var env: [String] = []
    @Option(name: [.short, .customLong("user")], help: "uid[:gid] or name[:group] from the container's /etc/passwd.") var user: String?
    @Option(name: [.short, .customLong("additional-gids")], help: "Extra group ids; repeatable.") var additionalGids: [UInt32] = []
    @Flag(name: .customLong("no-new-privs"), help: "Set no_new_privs for the process.") var noNewPrivs = false
    @Option(name: .customLong("preserve-fds"), help: "Pass this many extra fds (from 3 on).") var preserveFds: Int = 0
    @Option(name: [.short, .customLong("cap")], help: "Add a capability (CAP_NET_ADMIN or NET_ADMIN) to the process; repeatable.") var cap: [String] = []
    @Option(name: .customLong("process-label"), help: "Accepted for runc compatibility (SELinux is not used).") var processLabel: String?
    @Option(name: .customLong("apparmor"), help: "Accepted for runc compatibility (AppArmor is not used).") var apparmor: String?
    @Flag(name: .customLong("ignore-paused"), help: "Accepted for runc compatibility.") var ignorePaused = false
    @Option(name: .customLong("cgroup"), help: "Accepted for runc compatibility; the process joins the container's cgroup.") var cgroup: String?
    @Argument(help: "The container ID.") var id: String
    @Argument(parsing: .captureForPassthrough, help: "The program and its arguments (unless --process).") var command: [String] = []

    func run() throws {
        let (directory, record, backend) = try RuntimeSupport.open(globals, id)
        var proc: Spec.Process
        if let path = process {
            let fd = try FileDescriptor.open(path, O_RDONLY)
            do {
                proc = try JSONDecoder().decode(Spec.Process.self, from: Data(try fd.readAll(path: path)))
            } catch let e as DecodingError {
                throw RuntimeError("\(path): \(Spec.describe(e))")
            }
        } else {
            let args = command.first == "--" ? Array(command.dropFirst()) : command
            guard !args.isEmpty else { throw RuntimeError("exec: give the program to run, or --process FILE") }
            var base = Spec.Process(args: args, env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], cwd: "/")
            // Inherit the container's environment and working directory, as runc does.
            if let spec = try? RuntimeSupport.loadSpec(bundle: record.bundle), let p = spec.process {
                base.env = p.env; base.cwd = p.cwd; base.user = p.user
            }
            // …and its capabilities and no_new_privs, as they were when it was created (after the policy).
            if let confinement = try ConfinementRecord.from(record.extra) {
                base.capabilities = confinement.capabilities
                base.noNewPrivileges = confinement.noNewPrivileges
            }
            proc = base
        }
        if let cwd { proc.cwd = cwd }
        if !env.isEmpty { proc.env = (proc.env ?? []) + env }
        if tty { proc.terminal = true }
        if noNewPrivs { proc.noNewPrivileges = true }
        for c in cap {
            // runc's rule: bounding, effective and permitted; ambient only where the spec gives inheritable bits.
            var caps = proc.capabilities ?? Spec.Capabilities()
            let name = c.uppercased().hasPrefix("CAP_") ? c.uppercased() : "CAP_" + c.uppercased()
            _ = try CapabilityPlan.number(of: name, field: "--cap")
            caps.bounding = (caps.bounding ?? []) + [name]
            caps.effective = (caps.effective ?? []) + [name]
            caps.permitted = (caps.permitted ?? []) + [name]
            if caps.inheritable != nil { caps.ambient = (caps.ambient ?? []) + [name] }
            proc.capabilities = caps
        }
        if let user {
            // A microVM's files are not under its monitor's /proc root: names resolve in the image's rootfs.
            let rootPath = record.backend == "microvm" ? record.rootfs : "/proc/\(record.pid)/root"
            let root = try FileDescriptor.open(rootPath, O_RDONLY | O_DIRECTORY)
            let resolved = try UserResolver.resolve(user, root: root)
            proc.user.uid = resolved.uid; proc.user.gid = resolved.gid
            proc.user.additionalGids = resolved.additionalGids
        }
        if !additionalGids.isEmpty { proc.user.additionalGids = additionalGids }
        if proc.terminal == true && consoleSocket == nil {
            throw RuntimeError("exec --tty needs --console-socket (the engine's socket that receives the terminal)")
        }
        let request = ExecRequest(process: proc, consoleSocket: consoleSocket, pidFile: pidFile.map(RuntimeSupport.absolute),
                                  detach: detach, preserveFds: preserveFds)
        let pid = try backend.exec(record, request)
        _ = consume directory   // release the lock: other verbs may run while we wait
        if detach { return }
        throw ExitCode(backend.wait(forChild: pid))
    }
}

