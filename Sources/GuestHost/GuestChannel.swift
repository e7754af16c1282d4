import GuestProtocol
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The host's end of a guest agent's two virtio-console ports (control + stdio), as connected unix
/// sockets or chardev pipes. Synchronous and single-threaded: poll(2) with deadlines. Hypervisor drivers
/// (libvirt/QEMU, our own VMM) hand it the two fds; the backend drives the container through it.
public final class GuestChannel {
    public let control: Int32
    public let stdio: Int32
    public let limits: GuestProtocolLimits
    var encoder: FrameEncoder
    var controlDecoder: FrameDecoder
    var stdioDecoder: FrameDecoder
    var inbox: [Message] = []
    /// Encoded stdin frames not yet written (non-blocking), so output is read while input is written.
    var outgoingData: [UInt8] = []
    var outgoingOffset = 0
    public private(set) var agentSoftware: String?
    /// Whether the agent announced its power-off (the container ended, or it was told to).
    public private(set) var shutdownAnnounced = false
    public private(set) var version: UInt8?

    /// Takes ownership of both fds (closed on deinit).
    public init(control: Int32, stdio: Int32, limits: GuestProtocolLimits = .default) {
        self.control = control
        self.stdio = stdio
        self.limits = limits
        encoder = FrameEncoder(limits: limits)
        controlDecoder = FrameDecoder(limits: limits)
        stdioDecoder = FrameDecoder(limits: limits)
        _ = fcntl(stdio, F_SETFL, fcntl(stdio, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        close(control)
        close(stdio)
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    static func nowMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Sends a message: control messages are written at once (blocking); stdio-port messages
    /// (closeStdin) are queued behind any stdin already queued, keeping their order.
    public func send(_ message: Message) throws {
        if message.usesStdioPort {
            outgoingData += try encoder.encode(message)
            return
        }
        let frame = try encoder.encode(message)
        try frame.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(control, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SystemError(operation: "write", path: "guest control port", errno: errno)
                }
                offset += n
            }
        }
    }

    /// Queues stdin bytes for a process (split into frames); written as the stdio port accepts them.
    public func queueStdin(process: UInt32, _ bytes: [UInt8]) throws {
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + limits.maxDataChunk)
            outgoingData += try encoder.encode(.stdin(process: process, data: Array(bytes[offset..<end])))
            offset = end
        } while offset < bytes.count
    }

    /// Whether queued stdin is still waiting to be written.
    public var hasQueuedStdin: Bool { outgoingOffset < outgoingData.count }

    /// Bytes of queued stdin frames not yet written.
    public var queuedStdinBytes: Int { outgoingData.count - outgoingOffset }

    /// The next message from the guest, or nil at the deadline. Keeps writing queued stdin meanwhile.
    public func receive(deadlineMs: Int64) throws -> Message? {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while inbox.isEmpty {
            let now = GuestChannel.nowMs()
            if now >= deadlineMs { return nil }
            var fds = [pollfd(fd: control, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stdio, events: Int16(POLLIN | (hasQueuedStdin ? POLLOUT : 0)), revents: 0)]
            let ready = poll(&fds, 2, Int32(min(deadlineMs - now, 1000)))
            if ready < 0 {
                if errno == EINTR { continue }
                throw SystemError(operation: "poll", path: "guest ports", errno: errno)
            }
            if fds[1].revents & Int16(POLLOUT) != 0, hasQueuedStdin {
                let n = outgoingData.withUnsafeBytes { write(stdio, $0.baseAddress! + outgoingOffset, $0.count - outgoingOffset) }
                if n > 0 {
                    outgoingOffset += n
                    if outgoingOffset == outgoingData.count { outgoingData.removeAll(keepingCapacity: true); outgoingOffset = 0 }
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    throw SystemError(operation: "write", path: "guest stdio port", errno: errno)
                }
            }
            for (i, fd) in [control, stdio].enumerated() where fds[i].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    throw SystemError(operation: "read", path: i == 0 ? "guest control port" : "guest stdio port", errno: errno)
                }
                if n == 0 { throw Failure("the guest closed its \(i == 0 ? "control" : "stdio") port (the VM ended or the agent died); see the VM's console log") }
                if i == 0 { controlDecoder.append(chunk[0..<n]); inbox += try controlDecoder.drain() } else { stdioDecoder.append(chunk[0..<n]); inbox += try stdioDecoder.drain() }
            }
        }
        let message = inbox.removeFirst()
        if case .shutdown = message { shutdownAnnounced = true }
        return message
    }

    /// Waits for the agent's hello, answers with ours, and checks the versions meet.
    public func handshake(timeoutMs: Int64) throws {
        let deadline = GuestChannel.nowMs() + timeoutMs
        guard let first = try receive(deadlineMs: deadline) else {
            throw Failure("the guest agent did not say hello within \(timeoutMs) ms; see the VM's console log")
        }
        guard case let .hello(lo, hi, software) = first else { throw Failure("the guest agent's first message was \(first.type), not hello") }
        let negotiated = try negotiateVersion(local: GuestFrame.minimumVersion...GuestFrame.version, remoteMin: lo, remoteMax: hi)
        version = negotiated
        encoder = FrameEncoder(limits: limits, version: negotiated)
        agentSoftware = software
        try send(.hello(minVersion: GuestFrame.minimumVersion, maxVersion: GuestFrame.version, software: "bulkhead host"))
    }

    /// Waits for a message matching `match`, handing every other message to `other`.
    public func wait<T>(timeoutMs: Int64, for what: String, other: (Message) throws -> Void = { _ in },
                        _ match: (Message) throws -> T?) throws -> T {
        let deadline = GuestChannel.nowMs() + timeoutMs
        while let message = try receive(deadlineMs: deadline) {
            if let result = try match(message) { return result }
            try other(message)
        }
        throw Failure("no \(what) from the guest within \(timeoutMs) ms")
    }

    /// Sends create and waits for created (or the agent's error).
    public func create(containerID: String, spec: [UInt8], timeoutMs: Int64) throws {
        try send(.create(containerID: containerID, spec: spec))
        _ = try wait(timeoutMs: timeoutMs, for: "created") { message -> Bool? in
            switch message {
            case .created: return true
            case let .error(_, text): throw Failure("the guest could not create the container: \(text)")
            default: return nil
            }
        }
    }
}

/// What one process produced.
public struct GuestProcessOutcome: Sendable, Equatable {
    public var stdout: [UInt8] = []
    public var stderr: [UInt8] = []
    public var status: GuestExitStatus?
    public var pid: Int32?
    public var error: String?
    public var stdoutClosed = false
    public var stderrClosed = false
    /// Milliseconds from the collector's start to the first output byte.
    public var firstOutputMs: Int64?

    public init() {}
}

extension GuestChannel {
    /// Collects output and exit status of `processes` until all have exited (or failed to start), the
    /// agent announces shutdown, or the deadline passes. Returns per process what came back.
    public func collect(_ processes: Set<UInt32>, timeoutMs: Int64) throws -> [UInt32: GuestProcessOutcome] {
        let start = GuestChannel.nowMs()
        let deadline = start + timeoutMs
        var outcomes: [UInt32: GuestProcessOutcome] = [:]
        for p in processes { outcomes[p] = GuestProcessOutcome() }
        func done() -> Bool { outcomes.values.allSatisfy { $0.status != nil || $0.error != nil } }
        while !done() {
            guard let message = try receive(deadlineMs: deadline) else {
                throw Failure("processes \(processes.sorted()) did not finish within \(timeoutMs) ms")
            }
            switch message {
            case let .started(p, pid): outcomes[p]?.pid = pid
            case let .output(p, stream, data):
                if outcomes[p]?.firstOutputMs == nil, !data.isEmpty { outcomes[p]?.firstOutputMs = GuestChannel.nowMs() - start }
                switch (stream, data.isEmpty) {
                case (.stdout, true): outcomes[p]?.stdoutClosed = true
                case (.stderr, true): outcomes[p]?.stderrClosed = true
                case (.stdout, false): outcomes[p]?.stdout += data
                case (.stderr, false): outcomes[p]?.stderr += data
                }
            case let .exited(p, status): outcomes[p]?.status = status
            case let .error(p, text):
                if outcomes[p] != nil { outcomes[p]?.error = text } else { throw Failure("guest agent: \(text)") }
            default:
                // .shutdown may overtake the last exits (they travel on the stdio port): keep reading;
                // if the VM is really gone, receive() reports the closed port.
                continue
            }
        }
        return outcomes
    }
}
