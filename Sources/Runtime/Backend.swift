import Cgroups
import OCIRuntime

/// The status of a container, as runc and the OCI runtime spec name it.
public enum ContainerStatus: String, Codable, Sendable {
    case creating, created, running, paused, stopped
}

/// Everything `create` needs, independent of the isolation tier.
public struct CreateRequest: Sendable {
    public var id: String
    /// Absolute bundle directory.
    public var bundle: String
    public var spec: Spec
    public var pidFile: String?
    public var consoleSocket: String?
    public var noPivot: Bool
    public var noNewKeyring: Bool
    /// Extra fds (3, 4, …) passed through to the container process.
    public var preserveFds: Int
    /// `--systemd-cgroup` was given.
    public var systemdCgroup: Bool
    /// A `run` in the foreground: the caller will wait for the container and wants it as its child.
    public var foreground: Bool

    public init(id: String, bundle: String, spec: Spec, pidFile: String? = nil, consoleSocket: String? = nil,
                noPivot: Bool = false, noNewKeyring: Bool = false, preserveFds: Int = 0, systemdCgroup: Bool = false,
                foreground: Bool = false) {
        self.id = id; self.bundle = bundle; self.spec = spec; self.pidFile = pidFile; self.consoleSocket = consoleSocket
        self.noPivot = noPivot; self.noNewKeyring = noNewKeyring; self.preserveFds = preserveFds
        self.systemdCgroup = systemdCgroup; self.foreground = foreground
    }
}

/// A process to start inside an existing container (`exec`).
public struct ExecRequest: Sendable {
    public var process: Spec.Process
    public var consoleSocket: String?
    public var pidFile: String?
    public var detach: Bool
    public var preserveFds: Int
    public init(process: Spec.Process, consoleSocket: String? = nil, pidFile: String? = nil, detach: Bool = false,
                preserveFds: Int = 0) {
        self.process = process; self.consoleSocket = consoleSocket; self.pidFile = pidFile; self.detach = detach
        self.preserveFds = preserveFds
    }
}

/// Resource usage of a container (the `events --stats` payload, in runc's shape): the one stats type, defined
/// with the cgroup code that reads it.
public typealias ContainerStats = CgroupStats

/// One isolation tier. The namespace tier (`NamespaceBackend`) implements it today; the microVM tier implements
/// the same verbs with a guest agent. Every call is made by a fresh `bulkhead` process holding the container's
/// lock; all state a backend needs later lives in the ``ContainerRecord`` (and the container's state directory).
public protocol Backend: Sendable {
    /// The name stored in the state file (`namespace`, `microvm`).
    var name: String { get }

    /// Builds the container up to the point where only the user's program remains to be started.
    /// `record` has been saved with status `creating` before the call; the backend fills in pid, cgroup, … and
    /// saves it through `directory` as soon as each piece exists, so a crash leaves something `delete --force`
    /// can clean. On failure the backend has torn down what it built.
    func create(_ request: CreateRequest, record: inout ContainerRecord, directory: ContainerDirectory) throws

    /// Lets a created container run its program.
    func start(_ record: inout ContainerRecord, directory: ContainerDirectory) throws

    /// The status, derived from the live system (process, freezer), not only from the file.
    func status(of record: ContainerRecord, directory: ContainerDirectory) -> ContainerStatus

    func kill(_ record: ContainerRecord, signal: Int32, all: Bool) throws

    /// Releases everything the container holds. With `force`, kills it first.
    func delete(_ record: ContainerRecord, directory: ContainerDirectory, force: Bool) throws

    /// Starts another process in the container; returns its host pid (a child of the caller when not detached).
    func exec(_ record: ContainerRecord, _ request: ExecRequest) throws -> Int32

    func pause(_ record: ContainerRecord) throws
    func resume(_ record: ContainerRecord) throws

    /// Host pids of the container's processes.
    func processes(_ record: ContainerRecord) throws -> [Int32]

    func stats(_ record: ContainerRecord) throws -> ContainerStats

    /// Changes the resource limits of a live container (`update`); only the fields given change.
    func update(_ record: ContainerRecord, resources: LinuxResources) throws

    /// Waits for a process that is a child of the caller (foreground `run` and `exec`), forwarding the signals
    /// the caller receives; returns the exit status (128+N for a signal).
    func wait(forChild pid: Int32) -> Int32
}

extension Backend {
    /// A tier that cannot change limits of a running container says so.
    public func update(_ record: ContainerRecord, resources: LinuxResources) throws {
        throw RuntimeError("update: changing the resources of a running container is not supported by the \(name) tier yet (container \(record.id)); recreate the container with new limits")
    }
}

/// Errors with the texts container engines look for.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    public static func doesNotExist(_ id: String) -> RuntimeError {
        RuntimeError("container \(id) does not exist")
    }
    public static func notRunning(_ id: String) -> RuntimeError {
        RuntimeError("container \(id) is not running: container not running")
    }
}
