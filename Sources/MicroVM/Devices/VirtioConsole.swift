import CKVM
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// virtio-console with multiport: named ports (the agent's control and stdio channels), each joined to one end
/// of a host socket pair. Control messages are checked; unknown ports and events are reported and ignored.
public final class VirtioConsole: VirtioDevice, @unchecked Sendable {
    public static let featureMultiport: UInt64 = 1 << 1
    public static let deviceReady: UInt16 = 0, deviceAdd: UInt16 = 1, portReady: UInt16 = 3, consolePort: UInt16 = 4
    public static let portOpen: UInt16 = 6, portName: UInt16 = 7
    static let pendingLimit = 64 << 10

    /// One port: its name, the VMM's socket end, and what the guest has said about it.
    struct Port {
        let name: String
        let fd: Int32
        var guestReady = false
        var guestOpen = false
        var pending: [UInt8] = []
    }

    private var ports: [Port]
    private var control: [[UInt8]] = []
    private let queues: Int
    public var deviceType: UInt32 { 3 }
    public var name: String { "virtio-console" }
    public var queueCount: Int { queues }
    public var deviceFeatures: UInt64 { Self.featureMultiport }

    /// Creates the ports; returns the device and, per port, the host's end of its socket pair (the caller closes it).
    /// A port named in `endpoints` is joined to that already connected stream socket instead (the device takes it
    /// over; its host end is reported as -1): that is how `bulkhead vm run --port` hands a port to a monitor.
    public static func make(portNames: [String], endpoints: [String: Int32] = [:]) throws -> (VirtioConsole, [Int32]) {
        guard !portNames.isEmpty, portNames.count <= 16 else { throw KVMError("virtio-console needs 1…16 ports") }
        guard Set(portNames).count == portNames.count else { throw KVMError("virtio-console port names must differ: \(portNames)") }
        if let stray = endpoints.keys.first(where: { !portNames.contains($0) }) {
            throw KVMError("console endpoint for port '\(stray)', which is not one of the ports \(portNames)")
        }
        var vmmEnds: [Int32] = []
        var hostEnds: [Int32] = []
        for name in portNames {
            if let fd = endpoints[name] {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                vmmEnds.append(fd)
                hostEnds.append(-1)
                continue
            }
            var pair: [Int32] = [0, 0]
            try sys("socketpair", "console port \(name)") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) }
            _ = fcntl(pair[0], F_SETFL, O_NONBLOCK)
            vmmEnds.append(pair[0])
            hostEnds.append(pair[1])
        }
        let device = VirtioConsole(ports: zip(portNames, vmmEnds).map { Port(name: $0, fd: $1) })
        return (device, hostEnds)
    }

    init(ports: [Port]) {
        self.ports = ports
        queues = 2 * (ports.count + 1)
    }

    deinit { for p in ports { close(p.fd) } }

    /// The VMM-side fds, for the IO thread to watch (token = port index).
    public var portFDs: [Int32] { ports.map(\.fd) }

    static func receiveQueue(_ port: Int) -> Int { port == 0 ? 0 : 2 * port + 2 }
    static func transmitQueue(_ port: Int) -> Int { port == 0 ? 1 : 2 * port + 3 }
    static let controlReceive = 2, controlTransmit = 3

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        var config = [UInt8](repeating: 0, count: 12)
        config[0] = 80; config[2] = 25 // cols, rows
        config[4] = UInt8(ports.count)  // max_nr_ports
        for i in 0..<data.count { data[i] = offset + UInt64(i) < 12 ? config[Int(offset) + i] : 0 }
    }

    public func reset() {
        for i in ports.indices { ports[i].guestReady = false; ports[i].guestOpen = false; ports[i].pending.removeAll() }
        control.removeAll()
    }

    func sendControl(_ id: Int, _ event: UInt16, _ value: UInt16, _ extra: [UInt8] = []) {
        control.append(littleEndianBytes(UInt32(id)) + littleEndianBytes(event) + littleEndianBytes(value) + extra)
    }

    public func process(queue index: Int, queues: inout [Virtqueue], memory: GuestMemory,
                        report: (String) -> Void) throws(VirtioError) -> Bool {
        var used = false
        if index == Self.controlTransmit {
            while let popped = try queues[index].pop(memory) {
                switch popped {
                case .failure(let f): report("control message rejected: \(f.reason)"); try queues[index].push(memory, head: f.head, written: 0)
                case .success(let chain):
                    if let message = gather(chain, memory: memory, limit: 64), message.count >= 8 {
                        handleControl(id: Int(u32(message, 0)), event: u16(message, 4), value: u16(message, 6), report: report)
                    } else {
                        report("control message rejected: shorter than 8 bytes or not device-readable")
                    }
                    try queues[index].push(memory, head: chain.head, written: 0)
                }
                used = true
            }
        } else if let port = ports.indices.first(where: { Self.transmitQueue($0) == index }) {
            while let popped = try queues[index].pop(memory) {
                switch popped {
                case .failure(let f): report("port \(ports[port].name): transmit rejected: \(f.reason)"); try queues[index].push(memory, head: f.head, written: 0)
                case .success(let chain):
                    if let bytes = gather(chain, memory: memory, limit: 1 << 20) { writeHost(port, bytes, report: report) }
                    else { report("port \(ports[port].name): transmit buffer is device-writable") }
                    try queues[index].push(memory, head: chain.head, written: 0)
                }
                used = true
            }
        }
        // New receive buffers or new control messages: deliver what is waiting.
        used = try deliver(queues: &queues, memory: memory, report: report) || used
        return used
    }

    public func hostEvent(token: Int, queues: inout [Virtqueue], memory: GuestMemory, report: (String) -> Void) throws(VirtioError) -> Bool {
        guard token < ports.count else { return false }
        var chunk = [UInt8](repeating: 0, count: 4096)
        while ports[token].pending.count < Self.pendingLimit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(ports[token].fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            ports[token].pending.append(contentsOf: chunk[0..<n])
        }
        return try deliver(queues: &queues, memory: memory, report: report)
    }

    /// Whether the IO thread should watch port `index` for host input (not while its backlog is full).
    public func wantsHostInput(_ index: Int) -> Bool { index < ports.count && ports[index].pending.count < Self.pendingLimit }

    func handleControl(id: Int, event: UInt16, value: UInt16, report: (String) -> Void) {
        switch event {
        case Self.deviceReady:
            guard value == 1 else { report("driver reported device failure (DEVICE_READY \(value))"); return }
            for p in ports.indices { sendControl(p, Self.deviceAdd, 1) }
        case Self.portReady:
            guard id < ports.count else { report("PORT_READY for port \(id), which does not exist"); return }
            ports[id].guestReady = value == 1
            if value == 1 {
                sendControl(id, Self.portName, 1, Array(ports[id].name.utf8))
                sendControl(id, Self.portOpen, 1)
            }
        case Self.portOpen:
            guard id < ports.count else { report("PORT_OPEN for port \(id), which does not exist"); return }
            ports[id].guestOpen = value == 1
        default:
            report("control event \(event) for port \(id) is not one a driver sends; ignored")
        }
    }

    func gather(_ chain: VirtioChain, memory: GuestMemory, limit: Int) -> [UInt8]? {
        var bytes: [UInt8] = []
        for buffer in chain.buffers {
            guard !buffer.writable else { return nil }
            guard let chunk = try? memory.read(buffer.address, count: min(Int(buffer.length), limit - bytes.count)) else { return nil }
            bytes += chunk
            if bytes.count >= limit { break }
        }
        return bytes
    }

    func writeHost(_ port: Int, _ bytes: [UInt8], report: (String) -> Void) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(ports[port].fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN {
                var p = pollfd(fd: ports[port].fd, events: Int16(POLLOUT), revents: 0)
                if poll(&p, 1, 1000) <= 0 { report("port \(ports[port].name): host end is not reading; dropped \(bytes.count - done) bytes"); return }
                continue
            }
            if n <= 0 { report("port \(ports[port].name): host end closed; dropped \(bytes.count - done) bytes"); return }
            done += n
        }
    }

    /// Copies pending control messages and port data into the guest's receive buffers.
    func deliver(queues: inout [Virtqueue], memory: GuestMemory, report: (String) -> Void) throws(VirtioError) -> Bool {
        var used = false
        while !control.isEmpty, let popped = try queues[Self.controlReceive].pop(memory) {
            switch popped {
            case .failure(let f): report("control receive buffer rejected: \(f.reason)"); try queues[Self.controlReceive].push(memory, head: f.head, written: 0)
            case .success(let chain):
                let n = scatter(control[0], into: chain, memory: memory)
                if n < control[0].count { report("control receive buffer too small for a \(control[0].count)-byte message") }
                control.removeFirst()
                try queues[Self.controlReceive].push(memory, head: chain.head, written: UInt32(n))
            }
            used = true
        }
        for p in ports.indices where !ports[p].pending.isEmpty && ports[p].guestReady {
            let q = Self.receiveQueue(p)
            while !ports[p].pending.isEmpty, let popped = try queues[q].pop(memory) {
                switch popped {
                case .failure(let f): report("port \(ports[p].name): receive buffer rejected: \(f.reason)"); try queues[q].push(memory, head: f.head, written: 0)
                case .success(let chain):
                    let n = scatter(ports[p].pending, into: chain, memory: memory)
                    ports[p].pending.removeFirst(n)
                    try queues[q].push(memory, head: chain.head, written: UInt32(n))
                }
                used = true
            }
        }
        return used
    }

    func scatter(_ bytes: [UInt8], into chain: VirtioChain, memory: GuestMemory) -> Int {
        var done = 0
        for buffer in chain.buffers where buffer.writable && done < bytes.count {
            let n = min(Int(buffer.length), bytes.count - done)
            guard (try? memory.write(Array(bytes[done..<(done + n)]), at: buffer.address)) != nil else { break }
            done += n
        }
        return done
    }
}
