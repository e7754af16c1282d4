import ArgumentParser
import Runtime

/// Options `create` and the bundle form of `run` share (runc's).
struct BundleCreateOptions: ParsableArguments {
    @Option(name: [.short, .customLong("bundle")], help: ArgumentHelp("The bundle directory (config.json and the rootfs).", valueName: "dir"))
    var bundle: String = "."

    @Option(name: .customLong("console-socket"), help: ArgumentHelp("Unix socket that receives the pty master (SCM_RIGHTS) when process.terminal is true.", valueName: "path"))
    var consoleSocket: String?

    @Option(name: .customLong("pid-file"), help: ArgumentHelp("Write the container's init pid here.", valueName: "path"))
    var pidFile: String?

    @Flag(name: .customLong("no-pivot"), help: "Do not use pivot_root (MS_MOVE + chroot instead), for a rootfs on a ramdisk.")
    var noPivot = false

    @Flag(name: .customLong("no-new-keyring"), help: "Keep the caller's session keyring instead of a new one.")
    var noNewKeyring = false

    @Option(name: .customLong("preserve-fds"), help: ArgumentHelp("Pass this many extra fds (from 3 on) to the container.", valueName: "n"))
    var preserveFds: Int = 0

    @Option(name: .customLong("hypervisor-uri"), help: ArgumentHelp("libvirt URI for microVM containers (default: the embedded QEMU driver under --data-root; also BULKHEAD_HYPERVISOR_URI).", valueName: "uri"))
    var hypervisorURI: String?
}

/// `bulkhead create`: builds the container (namespaces, rootfs, cgroup, devices) and leaves its init waiting.
struct Create: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a container from a bundle; its program waits until `start`.")

    @OptionGroup var globals: GlobalOptions
    @OptionGroup var options: BundleCreateOptions
    @OptionGroup var policy: PolicyOptions
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let bundle = RuntimeSupport.absolute(options.bundle)
        let spec = try RuntimeSupport.loadSpec(bundle: bundle)
        _ = try RuntimeSupport.create(globals: globals, id: id, bundle: bundle, spec: spec, pidFile: options.pidFile,
                                      consoleSocket: options.consoleSocket, noPivot: options.noPivot,
                                      noNewKeyring: options.noNewKeyring, preserveFds: options.preserveFds,
                                      foreground: false, policy: policy, hypervisorURI: options.hypervisorURI)
    }
}

/// `bulkhead start`: lets a created container's program run.
struct Start: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start a created container.")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let (directory, record, backend) = try RuntimeSupport.open(globals, id)
        var r = record
        try backend.start(&r, directory: directory)
    }
}

/// `bulkhead state`: runc's state JSON.
struct State: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "state", abstract: "Print the state of a container as JSON.")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let (directory, record, backend) = try RuntimeSupport.open(globals, id)
        let status = backend.status(of: record, directory: directory)
        try RuntimeSupport.printJSON(record.stateJSON(status: status))
    }
}

/// `bulkhead kill`: sends a signal to the container's init (or, with --all, every process in it).
struct Kill: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "kill", abstract: "Send a signal (default SIGTERM) to a container.")
    @OptionGroup var globals: GlobalOptions
    @Flag(name: [.short, .customLong("all")], help: "Signal every process in the container.") var all = false
    @Argument(help: "The container ID.") var id: String
    @Argument(help: "Signal name or number.") var signal: String = "SIGTERM"

    func run() throws {
        let number = try RuntimeSupport.signalNumber(signal)
        let (_, record, backend) = try RuntimeSupport.open(globals, id)
        try backend.kill(record, signal: number, all: all)
    }
}

/// `bulkhead delete`: releases a stopped (or, with --force, any) container.
struct Delete: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a container and everything it holds.")
    @OptionGroup var globals: GlobalOptions
    @Flag(name: [.short, .customLong("force")], help: "Kill the container first if it is running.") var force = false
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let directory: ContainerDirectory
        do { directory = try RuntimeSupport.store(globals).open(id: id) } catch let e as RuntimeError {
            // runc: deleting a missing container with --force is not an error.
            if force && e.message.hasSuffix("does not exist") { return }
            throw e
        }
        let record: ContainerRecord
        do { record = try directory.load() } catch {
            if force { try directory.remove(); return }
            throw error
        }
        let backend = try RuntimeSupport.backend(named: record.backend, globals: globals)
        try backend.delete(record, directory: directory, force: force)
        try RuntimeSupport.releaseImageResources(record)
        try AutoUserNamespace.release(globals: globals, id: id)
        try directory.remove()
    }
}

/// `bulkhead pause` / `resume`: the cgroup freezer.
struct Pause: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "pause", abstract: "Freeze every process of a container.")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "The container ID.") var id: String
    func run() throws {
        let (_, record, backend) = try RuntimeSupport.open(globals, id)
        try backend.pause(record)
    }
}

struct Resume: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Thaw a paused container.")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "The container ID.") var id: String
    func run() throws {
        let (_, record, backend) = try RuntimeSupport.open(globals, id)
        try backend.resume(record)
    }
}
