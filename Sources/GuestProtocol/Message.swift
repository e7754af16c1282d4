/// Message type codes on the wire. Codes are never reused; new messages get new codes.
public enum MessageType: UInt8, Sendable, CaseIterable {
    case hello = 1
    case create = 2
    case created = 3
    case start = 4
    case exec = 5
    case started = 6
    case stdin = 7
    case closeStdin = 8
    case output = 9
    case signal = 10
    case windowSize = 11
    case exited = 12
    case error = 13
    case shutdown = 14
    // Version 2:
    case listProcesses = 15
    case processList = 16
    case statsRequest = 17
    case stats = 18

    /// The first protocol version that has this message type (frames of older versions may not carry it).
    public var sinceVersion: UInt8 { rawValue >= 15 ? 2 : 1 }
}

/// One process inside the guest, as `ps` shows it (guest pids; the agent itself is left out).
public struct GuestProcessInfo: Equatable, Sendable, Codable {
    public var pid: Int32
    public var ppid: Int32
    public var uid: UInt32
    /// The state letter from /proc/PID/stat (R, S, D, Z, T, …).
    public var state: String
    /// Resident memory in KiB.
    public var rssKiB: UInt64
    /// The command line (arguments joined by spaces), or `[comm]` when it has none.
    public var command: String

    public init(pid: Int32, ppid: Int32, uid: UInt32, state: String, rssKiB: UInt64, command: String) {
        self.pid = pid; self.ppid = ppid; self.uid = uid; self.state = state; self.rssKiB = rssKiB; self.command = command
    }
}

/// Resource usage inside the guest: the container's cgroup when the agent made one, else the whole guest.
/// 0 for a limit means "none".
public struct GuestStats: Equatable, Sendable, Codable {
    public var cpuUsageNanoseconds: UInt64
    public var memoryUsageBytes: UInt64
    public var memoryLimitBytes: UInt64
    public var pidsCurrent: UInt64
    public var pidsLimit: UInt64

    public init(cpuUsageNanoseconds: UInt64 = 0, memoryUsageBytes: UInt64 = 0, memoryLimitBytes: UInt64 = 0,
                pidsCurrent: UInt64 = 0, pidsLimit: UInt64 = 0) {
        self.cpuUsageNanoseconds = cpuUsageNanoseconds; self.memoryUsageBytes = memoryUsageBytes
        self.memoryLimitBytes = memoryLimitBytes; self.pidsCurrent = pidsCurrent; self.pidsLimit = pidsLimit
    }
}

/// Which output stream a chunk belongs to (a process with a terminal has only `.stdout`).
public enum ProcessStream: UInt8, Sendable {
    case stdout = 1
    case stderr = 2
}

/// How a process ended.
public enum GuestExitStatus: Equatable, Sendable {
    /// exit(2) with this code.
    case exited(Int32)
    /// Killed by this signal.
    case signaled(Int32)

    /// The shell convention: the code, or 128 + signal.
    public var shellCode: Int32 {
        switch self {
        case let .exited(code): return code
        case let .signaled(signal): return 128 + signal
        }
    }
}

/// One host↔guest message.
///
/// Processes are named by a host-chosen `process` number: 0 is the container's init process (the
/// spec's `process`), others are `exec`s. Direction: H→G host to guest, G→H guest to host.
public enum Message: Equatable, Sendable {
    /// Both directions, first message each way: the versions this side speaks and who it is.
    /// The guest sends it as soon as its ports are open; the host answers with its own.
    case hello(minVersion: UInt8, maxVersion: UInt8, software: String)
    /// H→G: set up the container: `spec` is the OCI runtime spec (config.json bytes).
    case create(containerID: String, spec: [UInt8])
    /// G→H: the container is set up and waits for `start`.
    case created(containerID: String)
    /// H→G: run the spec's process as process 0.
    case start
    /// H→G: run an OCI `process` (JSON bytes) as a further process.
    case exec(process: UInt32, spec: [UInt8])
    /// G→H: the process runs with this guest pid.
    case started(process: UInt32, pid: Int32)
    /// H→G: bytes for the process's stdin (or terminal).
    case stdin(process: UInt32, data: [UInt8])
    /// H→G: end of the process's stdin.
    case closeStdin(process: UInt32)
    /// G→H: bytes the process wrote. An empty chunk marks the end of that stream.
    case output(process: UInt32, stream: ProcessStream, data: [UInt8])
    /// H→G: deliver a signal to the process.
    case signal(process: UInt32, signal: Int32)
    /// H→G: the terminal's size changed.
    case windowSize(process: UInt32, rows: UInt16, columns: UInt16)
    /// G→H: the process ended. Sent after the end-of-stream chunks of its output.
    case exited(process: UInt32, status: GuestExitStatus)
    /// G→H (or H→G): a request failed. `process` names the process it concerns (or `UInt32.max`).
    case error(process: UInt32, message: String)
    /// H→G: stop everything and power the VM off. G→H: the agent is about to power off.
    case shutdown
    /// H→G (v2): list the guest's processes.
    case listProcesses
    /// G→H (v2): the answer to listProcesses.
    case processList([GuestProcessInfo])
    /// H→G (v2): report resource usage.
    case statsRequest
    /// G→H (v2): the answer to statsRequest.
    case stats(GuestStats)

    public var type: MessageType {
        switch self {
        case .hello: return .hello
        case .create: return .create
        case .created: return .created
        case .start: return .start
        case .exec: return .exec
        case .started: return .started
        case .stdin: return .stdin
        case .closeStdin: return .closeStdin
        case .output: return .output
        case .signal: return .signal
        case .windowSize: return .windowSize
        case .exited: return .exited
        case .error: return .error
        case .shutdown: return .shutdown
        case .listProcesses: return .listProcesses
        case .processList: return .processList
        case .statsRequest: return .statsRequest
        case .stats: return .stats
        }
    }

    /// Whether this message travels on the stdio port. A process's stream events — stdin, its close,
    /// output chunks and end-of-stream marks, and the exit that follows them — share one port so they
    /// arrive in the order they were sent; everything else uses the control port.
    public var usesStdioPort: Bool {
        switch self {
        case .stdin, .closeStdin, .output, .exited: return true
        default: return false
        }
    }

    /// The process number meaning "no particular process".
    public static let noProcess: UInt32 = .max
}

/// Version negotiation: the highest version both sides speak.
public func negotiateVersion(local: ClosedRange<UInt8>, remoteMin: UInt8, remoteMax: UInt8) throws -> UInt8 {
    guard remoteMin <= remoteMax else { throw GuestProtocolError.invalidValue(field: "hello.maxVersion", value: Int(remoteMax)) }
    let remote = remoteMin...remoteMax
    let high = min(local.upperBound, remote.upperBound)
    guard high >= max(local.lowerBound, remote.lowerBound) else {
        throw GuestProtocolError.noCommonVersion(local: local, remote: remote)
    }
    return high
}
