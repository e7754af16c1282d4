/// Why a virtqueue request or ring was refused. Chain errors cost the guest one request; ring errors kill the
/// device until the driver resets it.
public enum VirtioError: Error, CustomStringConvertible, Sendable, Equatable {
    case badRing(String)
    case badChain(String)

    public var description: String {
        switch self {
        case .badRing(let why): return "virtqueue broken: \(why)"
        case .badChain(let why): return "request rejected: \(why)"
        }
    }
}

/// One buffer of a descriptor chain, already checked to lie in guest RAM.
public struct VirtioBuffer: Sendable, Equatable {
    public let address: UInt64
    public let length: UInt32
    public let writable: Bool
}

/// A popped request: its head index (to return it) and its buffers in order.
public struct VirtioChain: Sendable, Equatable {
    public let head: UInt16
    public let buffers: [VirtioBuffer]
}

/// A split virtqueue whose ring addresses the driver gave. Every index, length and address read from guest
/// memory is checked before use, and each value is read once (the guest may change memory concurrently).
public struct Virtqueue: Sendable {
    public static let descriptorNext: UInt16 = 1, descriptorWrite: UInt16 = 2, descriptorIndirect: UInt16 = 4
    /// The most one request may carry in total (a guest cannot make the VMM walk or copy more).
    public static let maxChainBytes: UInt64 = 16 << 20

    public let size: UInt16
    public let descriptorTable: UInt64
    public let availableRing: UInt64
    public let usedRing: UInt64
    public private(set) var lastAvailable: UInt16 = 0
    public private(set) var nextUsed: UInt16 = 0

    /// Checks the ring geometry against guest memory.
    public init(size: UInt16, maxSize: UInt16, descriptorTable: UInt64, availableRing: UInt64, usedRing: UInt64,
                memory: GuestMemory) throws(VirtioError) {
        guard size > 0, size <= maxSize, size & (size - 1) == 0 else {
            throw .badRing("queue size \(size) is not a power of two ≤ \(maxSize)")
        }
        guard descriptorTable % 16 == 0, availableRing % 2 == 0, usedRing % 4 == 0 else {
            throw .badRing("ring addresses are misaligned")
        }
        let n = UInt64(size)
        do {
            _ = try memory.pointer(descriptorTable, count: 16 * n)
            _ = try memory.pointer(availableRing, count: 6 + 2 * n)
            _ = try memory.pointer(usedRing, count: 6 + 8 * n)
        } catch { throw .badRing(error.description) }
        self.size = size
        self.descriptorTable = descriptorTable
        self.availableRing = availableRing
        self.usedRing = usedRing
    }

    /// The next available chain, or nil when the driver has offered nothing new.
    /// Throws `.badRing` when the ring itself is inconsistent, `.badChain` (with the head, so it can be
    /// returned) when only this request is.
    public mutating func pop(_ memory: GuestMemory) throws(VirtioError) -> Result<VirtioChain, ChainFailure>? {
        let availableIndex: UInt16
        do { availableIndex = try memory.load(UInt16.self, at: availableRing + 2) } catch { throw .badRing(error.description) }
        let pending = availableIndex &- lastAvailable
        if pending == 0 { return nil }
        guard pending <= size else {
            throw .badRing("available index moved by \(pending) entries in a queue of \(size)")
        }
        let head: UInt16
        do { head = try memory.load(UInt16.self, at: availableRing + 4 + 2 * UInt64(lastAvailable % size)) } catch {
            throw .badRing(error.description)
        }
        lastAvailable &+= 1
        guard head < size else { throw .badRing("available ring names descriptor \(head) of \(size)") }
        return walk(head: head, memory: memory)
    }

    /// A request that could not be parsed; its head still goes back to the driver (with nothing written).
    public struct ChainFailure: Error, Sendable, Equatable {
        public let head: UInt16
        public let reason: String
    }

    func walk(head: UInt16, memory: GuestMemory) -> Result<VirtioChain, ChainFailure> {
        var buffers: [VirtioBuffer] = []
        var index = head
        var total: UInt64 = 0
        var seenWritable = false
        while true {
            guard buffers.count < Int(size) else {
                return .failure(ChainFailure(head: head, reason: "descriptor chain loops (longer than the queue's \(size) entries)"))
            }
            let at = descriptorTable + 16 * UInt64(index)
            let address: UInt64, length: UInt32, flags: UInt16, next: UInt16
            do {
                address = try memory.load(UInt64.self, at: at)
                length = try memory.load(UInt32.self, at: at + 8)
                flags = try memory.load(UInt16.self, at: at + 12)
                next = try memory.load(UInt16.self, at: at + 14)
            } catch { return .failure(ChainFailure(head: head, reason: error.description)) }
            if flags & Self.descriptorIndirect != 0 {
                return .failure(ChainFailure(head: head, reason: "indirect descriptor offered but not negotiated"))
            }
            do { _ = try memory.pointer(address, count: UInt64(length)) } catch {
                return .failure(ChainFailure(head: head, reason: "descriptor \(index): \(error.description)"))
            }
            total += UInt64(length)
            guard total <= Self.maxChainBytes else {
                return .failure(ChainFailure(head: head, reason: "request larger than \(Self.maxChainBytes) bytes"))
            }
            let writable = flags & Self.descriptorWrite != 0
            if !writable && seenWritable {
                return .failure(ChainFailure(head: head, reason: "device-readable descriptor after a device-writable one"))
            }
            seenWritable = seenWritable || writable
            buffers.append(VirtioBuffer(address: address, length: length, writable: writable))
            guard flags & Self.descriptorNext != 0 else { break }
            guard next < size else {
                return .failure(ChainFailure(head: head, reason: "descriptor \(index) points to \(next), beyond the queue's \(size)"))
            }
            index = next
        }
        return .success(VirtioChain(head: head, buffers: buffers))
    }

    /// Returns `head` to the driver with `written` bytes written.
    public mutating func push(_ memory: GuestMemory, head: UInt16, written: UInt32) throws(VirtioError) {
        do {
            let slot = usedRing + 4 + 8 * UInt64(nextUsed % size)
            try memory.store(UInt32(head), at: slot)
            try memory.store(written, at: slot + 4)
            nextUsed &+= 1
            try memory.store(nextUsed, at: usedRing + 2)
        } catch { throw .badRing(error.description) }
    }

    /// Whether the driver asked not to be interrupted (VIRTQ_AVAIL_F_NO_INTERRUPT).
    public func interruptSuppressed(_ memory: GuestMemory) -> Bool {
        ((try? memory.load(UInt16.self, at: availableRing)) ?? 0) & 1 != 0
    }
}
