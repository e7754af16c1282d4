#if canImport(Glibc)
import Glibc
#endif
import LinuxOS

/// A guest-physical address range the guest asked for and does not own: the device refuses the request.
public struct GuestMemoryError: Error, CustomStringConvertible, Sendable, Equatable {
    public let address: UInt64
    public let length: UInt64
    public var description: String { "guest address range \(hex(address))+\(hex(length)) is not guest RAM" }
}

/// Guest RAM: one anonymous mapping, split around the MMIO hole below 4 GiB into (at most) two KVM memory slots.
///
/// Every access from device code goes through ``pointer(_:count:)``, which checks the whole range lies in one
/// region (overflow-safe), so a guest-supplied address can never reach host memory outside the mapping.
public final class GuestMemory: @unchecked Sendable {
    public struct Region: Sendable, Equatable {
        public let guestAddress: UInt64
        public let size: UInt64
        public let hostOffset: Int
    }

    /// Devices live in [mmioHoleStart, 4 GiB); RAM beyond it continues at 4 GiB.
    public static let mmioHoleStart: UInt64 = 0xC000_0000
    public static let mmioHoleEnd: UInt64 = 0x1_0000_0000

    public let size: UInt64
    public let regions: [Region]
    let base: UnsafeMutableRawPointer

    /// Maps `size` bytes of anonymous memory (2 MiB huge pages when `hugePages` and the host has them free).
    public init(size: UInt64, hugePages: Bool = false) throws {
        guard size >= 32 << 20, size % 4096 == 0 else {
            throw KVMError("guest memory must be at least 32 MiB and a multiple of 4 KiB, not \(size) bytes")
        }
        var flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        if hugePages { flags |= MAP_HUGETLB }
        let pointer = mmap(nil, Int(size), PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let pointer, pointer != MAP_FAILED else {
            let code = errno
            throw SystemError(operation: "mmap guest memory", path: "\(size >> 20) MiB", errno: code,
                              hint: hugePages ? "reserve huge pages (vm.nr_hugepages) or run without them" : nil)
        }
        base = pointer
        self.size = size
        self.regions = Self.layout(size: size)
    }

    deinit { munmap(base, Int(size)) }

    /// How `size` bytes of RAM are laid out around the MMIO hole.
    public static func layout(size: UInt64) -> [Region] {
        let low = min(size, mmioHoleStart)
        var regions = [Region(guestAddress: 0, size: low, hostOffset: 0)]
        if size > low { regions.append(Region(guestAddress: mmioHoleEnd, size: size - low, hostOffset: Int(low))) }
        return regions
    }

    /// The end of RAM below the MMIO hole.
    public var lowMemoryEnd: UInt64 { regions[0].size }

    public func hostAddress(of region: Region) -> UnsafeMutableRawPointer { base + region.hostOffset }

    /// The host pointer for `count` bytes at guest-physical `address`, or an error when any byte of the range is
    /// not RAM (including ranges that wrap around or straddle the MMIO hole).
    @inline(__always)
    public func pointer(_ address: UInt64, count: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        for region in regions where address >= region.guestAddress {
            let offset = address - region.guestAddress
            if offset <= region.size, count <= region.size - offset {
                return base + region.hostOffset + Int(offset)
            }
        }
        throw GuestMemoryError(address: address, length: count)
    }

    public func buffer(_ address: UInt64, count: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: try pointer(address, count: count), count: Int(count))
    }

    public func load<T: FixedWidthInteger>(_ type: T.Type, at address: UInt64) throws(GuestMemoryError) -> T {
        T(littleEndian: try pointer(address, count: UInt64(MemoryLayout<T>.size)).loadUnaligned(as: T.self))
    }

    public func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws(GuestMemoryError) {
        try pointer(address, count: UInt64(MemoryLayout<T>.size)).storeBytes(of: value.littleEndian, as: T.self)
    }

    public func write(_ bytes: [UInt8], at address: UInt64) throws(GuestMemoryError) {
        let target = try pointer(address, count: UInt64(bytes.count))
        bytes.withUnsafeBytes { target.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    public func read(_ address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let source = try pointer(address, count: UInt64(count))
        return [UInt8](UnsafeRawBufferPointer(start: source, count: count))
    }
}
