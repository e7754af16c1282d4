/// Encodes messages into frames, refusing anything over the limits (so a sender cannot produce a
/// frame its peer would reject).
public struct FrameEncoder: Sendable {
    public let limits: GuestProtocolLimits
    public let version: UInt8

    public init(limits: GuestProtocolLimits = .default, version: UInt8 = GuestFrame.version) {
        self.limits = limits
        self.version = version
    }

    /// The complete frame (header + payload) for `message`.
    public func encode(_ message: Message) throws -> [UInt8] {
        // Hello goes out in the oldest version we speak, so any peer can read it.
        let frameVersion = message.type == .hello ? min(version, GuestFrame.minimumVersion) : version
        guard message.type.sinceVersion <= frameVersion else {
            throw GuestProtocolError.typeNotInVersion(type: message.type.rawValue, version: frameVersion)
        }
        var w = FieldWriter(limits: limits)
        switch message {
        case let .hello(minVersion, maxVersion, software):
            w.u8(minVersion); w.u8(maxVersion); try w.string(software, field: "hello.software")
        case let .create(containerID, spec):
            try w.string(containerID, field: "create.containerID"); try w.document(spec, field: "create.spec")
        case let .created(containerID):
            try w.string(containerID, field: "created.containerID")
        case .start, .shutdown:
            break
        case let .exec(process, spec):
            w.u32(process); try w.document(spec, field: "exec.spec")
        case let .started(process, pid):
            w.u32(process); w.i32(pid)
        case let .stdin(process, data):
            w.u32(process); try w.data(data, field: "stdin.data")
        case let .closeStdin(process):
            w.u32(process)
        case let .output(process, stream, data):
            w.u32(process); w.u8(stream.rawValue); try w.data(data, field: "output.data")
        case let .signal(process, signal):
            w.u32(process); w.i32(signal)
        case let .windowSize(process, rows, columns):
            w.u32(process); w.u16(rows); w.u16(columns)
        case let .exited(process, status):
            w.u32(process)
            switch status {
            case let .exited(code): w.u8(0); w.i32(code)
            case let .signaled(signal): w.u8(1); w.i32(signal)
            }
        case let .error(process, text):
            w.u32(process); try w.string(text, field: "error.message")
        case .listProcesses, .statsRequest:
            break
        case let .processList(list):
            guard list.count <= limits.maxListCount else {
                throw GuestProtocolError.fieldTooLarge(field: "processList.count", length: list.count, limit: limits.maxListCount)
            }
            w.u32(UInt32(list.count))
            for p in list {
                w.i32(p.pid); w.i32(p.ppid); w.u32(p.uid); try w.string(p.state, field: "processList.state")
                w.u64(p.rssKiB); try w.string(p.command, field: "processList.command")
            }
        case let .stats(s):
            w.u64(s.cpuUsageNanoseconds); w.u64(s.memoryUsageBytes); w.u64(s.memoryLimitBytes)
            w.u64(s.pidsCurrent); w.u64(s.pidsLimit)
        }
        guard w.bytes.count <= limits.maxPayload else {
            throw GuestProtocolError.payloadTooLarge(length: w.bytes.count, limit: limits.maxPayload)
        }
        var frame: [UInt8] = [GuestFrame.magic.0, GuestFrame.magic.1, frameVersion, message.type.rawValue]
        frame.reserveCapacity(GuestFrame.headerSize + w.bytes.count)
        let n = UInt32(w.bytes.count)
        frame += [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
        frame += w.bytes
        return frame
    }
}

/// An incremental decoder: feed it bytes as they arrive, take whole messages out.
///
/// It holds at most one frame's worth of bytes beyond what the caller appended (the header is
/// checked, and the length bounded, before the payload is waited for). Once it has thrown, it
/// throws the same error for ever: the stream is out of step and must be dropped.
public struct FrameDecoder: Sendable {
    public let limits: GuestProtocolLimits
    /// Versions accepted in frame headers.
    public var acceptedVersions: ClosedRange<UInt8>
    private var buffer: [UInt8] = []
    private var start = 0
    private var failure: GuestProtocolError?

    public init(limits: GuestProtocolLimits = .default,
                acceptedVersions: ClosedRange<UInt8> = GuestFrame.minimumVersion...GuestFrame.version) {
        self.limits = limits
        self.acceptedVersions = acceptedVersions
    }

    /// Bytes received but not yet consumed as whole frames.
    public var pendingByteCount: Int { buffer.count - start }

    /// Whether the decoder failed (and will keep failing).
    public var hasFailed: Bool { failure != nil }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete message, or nil when more bytes are needed.
    public mutating func next() throws -> Message? {
        if let failure { throw failure }
        do {
            return try decodeNext()
        } catch let error as GuestProtocolError {
            failure = error
            throw error
        }
    }

    /// Decodes every complete message currently buffered.
    public mutating func drain() throws -> [Message] {
        var messages: [Message] = []
        while let message = try next() { messages.append(message) }
        return messages
    }

    private mutating func decodeNext() throws -> Message? {
        let available = buffer.count - start
        // Check what we have of the header as soon as it arrives, so garbage is refused early.
        if available >= 1, buffer[start] != GuestFrame.magic.0 {
            throw GuestProtocolError.badMagic(buffer[start], available >= 2 ? buffer[start + 1] : 0)
        }
        if available >= 2, buffer[start + 1] != GuestFrame.magic.1 {
            throw GuestProtocolError.badMagic(buffer[start], buffer[start + 1])
        }
        if available >= 3, !acceptedVersions.contains(buffer[start + 2]) {
            throw GuestProtocolError.unsupportedVersion(buffer[start + 2])
        }
        if available >= 4, MessageType(rawValue: buffer[start + 3]) == nil {
            throw GuestProtocolError.unknownMessageType(buffer[start + 3])
        }
        if available >= 4, MessageType(rawValue: buffer[start + 3])!.sinceVersion > buffer[start + 2] {
            throw GuestProtocolError.typeNotInVersion(type: buffer[start + 3], version: buffer[start + 2])
        }
        guard available >= GuestFrame.headerSize else { return nil }
        let length = Int(buffer[start + 4]) << 24 | Int(buffer[start + 5]) << 16 | Int(buffer[start + 6]) << 8 | Int(buffer[start + 7])
        guard length <= limits.maxPayload else { throw GuestProtocolError.payloadTooLarge(length: length, limit: limits.maxPayload) }
        guard available >= GuestFrame.headerSize + length else { return nil }
        let type = MessageType(rawValue: buffer[start + 3])!
        let payloadStart = start + GuestFrame.headerSize
        let message = try buffer.withUnsafeBufferPointer { all in
            var r = FieldReader(UnsafeBufferPointer(rebasing: all[payloadStart..<(payloadStart + length)]), limits: limits)
            let message = try Self.decodePayload(type, &r)
            if r.remaining > 0 { throw GuestProtocolError.trailingBytes(r.remaining) }
            return message
        }
        start = payloadStart + length
        // Compact once the consumed prefix dominates, keeping appends amortised O(1).
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 2 * (limits.maxPayload + GuestFrame.headerSize))
            start = 0
        } else if start > 65536, start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        return message
    }

    /// Decodes one payload (exposed for tests and for peers that frame differently).
    public static func decodePayload(_ type: MessageType, payload: [UInt8], limits: GuestProtocolLimits = .default) throws -> Message {
        try payload.withUnsafeBufferPointer { p in
            var r = FieldReader(p, limits: limits)
            let message = try decodePayload(type, &r)
            if r.remaining > 0 { throw GuestProtocolError.trailingBytes(r.remaining) }
            return message
        }
    }

    private static func decodePayload(_ type: MessageType, _ r: inout FieldReader) throws -> Message {
        switch type {
        case .hello:
            let lo = try r.u8("hello.minVersion"), hi = try r.u8("hello.maxVersion")
            guard lo <= hi else { throw GuestProtocolError.invalidValue(field: "hello.maxVersion", value: Int(hi)) }
            return .hello(minVersion: lo, maxVersion: hi, software: try r.string("hello.software"))
        case .create:
            return .create(containerID: try r.string("create.containerID"), spec: try r.document("create.spec"))
        case .created:
            return .created(containerID: try r.string("created.containerID"))
        case .start:
            return .start
        case .exec:
            return .exec(process: try r.u32("exec.process"), spec: try r.document("exec.spec"))
        case .started:
            return .started(process: try r.u32("started.process"), pid: try r.i32("started.pid"))
        case .stdin:
            return .stdin(process: try r.u32("stdin.process"), data: try r.data("stdin.data"))
        case .closeStdin:
            return .closeStdin(process: try r.u32("closeStdin.process"))
        case .output:
            let process = try r.u32("output.process")
            let raw = try r.u8("output.stream")
            guard let stream = ProcessStream(rawValue: raw) else { throw GuestProtocolError.invalidValue(field: "output.stream", value: Int(raw)) }
            return .output(process: process, stream: stream, data: try r.data("output.data"))
        case .signal:
            let process = try r.u32("signal.process")
            let signal = try r.i32("signal.signal")
            guard (1...64).contains(signal) else { throw GuestProtocolError.invalidValue(field: "signal.signal", value: Int(signal)) }
            return .signal(process: process, signal: signal)
        case .windowSize:
            return .windowSize(process: try r.u32("windowSize.process"), rows: try r.u16("windowSize.rows"), columns: try r.u16("windowSize.columns"))
        case .exited:
            let process = try r.u32("exited.process")
            let kind = try r.u8("exited.kind")
            let value = try r.i32("exited.value")
            switch kind {
            case 0: return .exited(process: process, status: .exited(value))
            case 1:
                guard (1...64).contains(value) else { throw GuestProtocolError.invalidValue(field: "exited.signal", value: Int(value)) }
                return .exited(process: process, status: .signaled(value))
            default: throw GuestProtocolError.invalidValue(field: "exited.kind", value: Int(kind))
            }
        case .error:
            return .error(process: try r.u32("error.process"), message: try r.string("error.message"))
        case .shutdown:
            return .shutdown
        case .listProcesses:
            return .listProcesses
        case .statsRequest:
            return .statsRequest
        case .processList:
            let count = Int(try r.u32("processList.count"))
            guard count <= r.limits.maxListCount else {
                throw GuestProtocolError.fieldTooLarge(field: "processList.count", length: count, limit: r.limits.maxListCount)
            }
            var list: [GuestProcessInfo] = []
            for _ in 0..<count {
                list.append(GuestProcessInfo(
                    pid: try r.i32("processList.pid"), ppid: try r.i32("processList.ppid"), uid: try r.u32("processList.uid"),
                    state: try r.string("processList.state"), rssKiB: try r.u64("processList.rssKiB"),
                    command: try r.string("processList.command")))
            }
            return .processList(list)
        case .stats:
            return .stats(GuestStats(
                cpuUsageNanoseconds: try r.u64("stats.cpu"), memoryUsageBytes: try r.u64("stats.memoryUsage"),
                memoryLimitBytes: try r.u64("stats.memoryLimit"), pidsCurrent: try r.u64("stats.pidsCurrent"),
                pidsLimit: try r.u64("stats.pidsLimit")))
        }
    }
}

/// Appends big-endian fields, checking each variable-length field against its limit.
struct FieldWriter {
    let limits: GuestProtocolLimits
    var bytes: [UInt8] = []

    init(limits: GuestProtocolLimits) { self.limits = limits }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xff)] }
    mutating func u32(_ v: UInt32) { bytes += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
    mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
    mutating func u64(_ v: UInt64) { u32(UInt32(v >> 32)); u32(UInt32(v & 0xffff_ffff)) }

    mutating func blob(_ v: [UInt8], field: String, limit: Int) throws {
        guard v.count <= limit else { throw GuestProtocolError.fieldTooLarge(field: field, length: v.count, limit: limit) }
        u32(UInt32(v.count)); bytes += v
    }
    mutating func string(_ s: String, field: String) throws { try blob(Array(s.utf8), field: field, limit: limits.maxString) }
    mutating func document(_ d: [UInt8], field: String) throws { try blob(d, field: field, limit: limits.maxDocument) }
    mutating func data(_ d: [UInt8], field: String) throws { try blob(d, field: field, limit: limits.maxDataChunk) }
}

/// Reads big-endian fields from one payload, never past its end, checking each length before copying.
struct FieldReader {
    let p: UnsafeBufferPointer<UInt8>
    let limits: GuestProtocolLimits
    var offset = 0

    init(_ p: UnsafeBufferPointer<UInt8>, limits: GuestProtocolLimits) { self.p = p; self.limits = limits }

    var remaining: Int { p.count - offset }

    mutating func take(_ n: Int, _ field: String) throws -> UnsafeBufferPointer<UInt8> {
        guard n <= remaining else { throw GuestProtocolError.truncated(field: field) }
        defer { offset += n }
        return UnsafeBufferPointer(rebasing: p[offset..<(offset + n)])
    }
    mutating func u8(_ field: String) throws -> UInt8 { try take(1, field)[0] }
    mutating func u16(_ field: String) throws -> UInt16 { let b = try take(2, field); return UInt16(b[0]) << 8 | UInt16(b[1]) }
    mutating func u32(_ field: String) throws -> UInt32 {
        let b = try take(4, field)
        return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }
    mutating func i32(_ field: String) throws -> Int32 { Int32(bitPattern: try u32(field)) }
    mutating func u64(_ field: String) throws -> UInt64 { UInt64(try u32(field)) << 32 | UInt64(try u32(field)) }

    mutating func blob(_ field: String, limit: Int) throws -> [UInt8] {
        let n = Int(try u32(field))
        guard n <= limit else { throw GuestProtocolError.fieldTooLarge(field: field, length: n, limit: limit) }
        return Array(try take(n, field))
    }
    mutating func string(_ field: String) throws -> String {
        let bytes = try blob(field, limit: limits.maxString)
        guard let s = String(validating: bytes, as: UTF8.self) else { throw GuestProtocolError.invalidUTF8(field: field) }
        return s
    }
    mutating func document(_ field: String) throws -> [UInt8] { try blob(field, limit: limits.maxDocument) }
    mutating func data(_ field: String) throws -> [UInt8] { try blob(field, limit: limits.maxDataChunk) }
}
