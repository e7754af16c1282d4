import Synchronization

/// A device reached through port I/O (the vCPU thread calls it on KVM_EXIT_IO).
public protocol PortDevice: AnyObject, Sendable {
    func read(offset: UInt16, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt16, data: UnsafeRawBufferPointer)
}

/// A device reached through MMIO (the vCPU thread calls it on KVM_EXIT_MMIO).
public protocol MMIODevice: AnyObject, Sendable {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, data: UnsafeRawBufferPointer)
}

/// The machine's port and MMIO address spaces. Accesses nobody claims read as all ones and are counted, so a
/// guest probing for hardware (Linux does, at many ports) is handled, not a reason to stop.
public final class Bus: @unchecked Sendable {
    struct PortRange { let base: UInt16; let count: UInt16; let device: any PortDevice }
    struct MMIORange { let base: UInt64; let size: UInt64; let device: any MMIODevice }
    private var ports: [PortRange] = []
    private var mmio: [MMIORange] = []
    /// How many accesses hit nothing (for the exit report).
    public let unclaimed = Atomic<Int>(0)

    public init() {}

    /// Registers devices before any vCPU runs (the tables are read without locks afterwards).
    public func add(_ device: any PortDevice, ports base: UInt16, count: UInt16) { ports.append(PortRange(base: base, count: count, device: device)) }
    public func add(_ device: any MMIODevice, at base: UInt64, size: UInt64) { mmio.append(MMIORange(base: base, size: size, device: device)) }

    public func portRead(_ port: UInt16, into data: UnsafeMutableRawBufferPointer) {
        for r in ports where port >= r.base && port - r.base < r.count { r.device.read(offset: port - r.base, into: data); return }
        data.initializeMemory(as: UInt8.self, repeating: 0xFF)
        unclaimed.add(1, ordering: .relaxed)
    }

    public func portWrite(_ port: UInt16, data: UnsafeRawBufferPointer) {
        for r in ports where port >= r.base && port - r.base < r.count { r.device.write(offset: port - r.base, data: data); return }
        unclaimed.add(1, ordering: .relaxed)
    }

    public func mmioRead(_ address: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for r in mmio where address >= r.base && address - r.base < r.size { r.device.read(offset: address - r.base, into: data); return }
        data.initializeMemory(as: UInt8.self, repeating: 0xFF)
        unclaimed.add(1, ordering: .relaxed)
    }

    public func mmioWrite(_ address: UInt64, data: UnsafeRawBufferPointer) {
        for r in mmio where address >= r.base && address - r.base < r.size { r.device.write(offset: address - r.base, data: data); return }
        unclaimed.add(1, ordering: .relaxed)
    }
}

/// Little-endian value of an access of 1, 2, 4 or 8 bytes.
@inline(__always) func accessValue(_ data: UnsafeRawBufferPointer) -> UInt64 {
    var v: UInt64 = 0
    for (i, b) in data.prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
    return v
}

@inline(__always) func fill(_ data: UnsafeMutableRawBufferPointer, with value: UInt64) {
    for i in 0..<min(data.count, 8) { data[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    if data.count > 8 { for i in 8..<data.count { data[i] = 0 } }
}
