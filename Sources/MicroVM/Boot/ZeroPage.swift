/// Linux's `struct boot_params` (the zero page): 4 KiB the kernel reads at its 64-bit entry through RSI.
public struct ZeroPage: Sendable {
    public static let size = 4096
    // Offsets in struct boot_params.
    public static let extRamdiskImage = 0x0C0, extRamdiskSize = 0x0C4, extCmdLinePtr = 0x0C8
    public static let e820Entries = 0x1E8
    public static let setupHeader = 0x1F1
    public static let bootFlag = 0x1FE, headerMagic = 0x202, version = 0x206
    public static let typeOfLoader = 0x210, loadFlags = 0x211
    public static let ramdiskImage = 0x218, ramdiskSize = 0x21C
    public static let heapEndPtr = 0x224
    public static let cmdLinePtr = 0x228
    public static let kernelAlignment = 0x230
    public static let cmdlineSize = 0x238
    public static let e820Table = 0x2D0
    public static let e820MaxEntries = 128

    public private(set) var bytes = [UInt8](repeating: 0, count: size)

    /// A zero page for `kernel` (its setup header copied in for a bzImage, a minimal one otherwise).
    public init(kernel: LoadedKernel) {
        if let header = kernel.setupHeader {
            bytes.replaceSubrange(Self.setupHeader..<(Self.setupHeader + header.count), with: header)
        } else {
            put(UInt16(0xAA55), at: Self.bootFlag)
            put(UInt32(0x5372_6448), at: Self.headerMagic) // "HdrS"
            put(UInt16(0x020F), at: Self.version)
            put(UInt32(0x100_0000), at: Self.kernelAlignment)
        }
        bytes[Self.typeOfLoader] = 0xFF // undefined loader
        bytes[Self.loadFlags] |= 0x01 | 0x80 // LOADED_HIGH, CAN_USE_HEAP
        put(UInt16(0xFE00), at: Self.heapEndPtr)
    }

    public mutating func setCommandLine(address: UInt64, length: Int) {
        put(UInt32(truncatingIfNeeded: address), at: Self.cmdLinePtr)
        put(UInt32(truncatingIfNeeded: address >> 32), at: Self.extCmdLinePtr)
        if bytes[Self.version + 1] < 2 || readU32(Self.cmdlineSize) == 0 { put(UInt32(length), at: Self.cmdlineSize) }
    }

    public mutating func setInitrd(address: UInt64, size: UInt64) {
        put(UInt32(truncatingIfNeeded: address), at: Self.ramdiskImage)
        put(UInt32(truncatingIfNeeded: size), at: Self.ramdiskSize)
        put(UInt32(truncatingIfNeeded: address >> 32), at: Self.extRamdiskImage)
        put(UInt32(truncatingIfNeeded: size >> 32), at: Self.extRamdiskSize)
    }

    public mutating func setE820(_ entries: [E820Entry]) throws {
        guard entries.count <= Self.e820MaxEntries else { throw BootError("too many e820 entries (\(entries.count))") }
        bytes[Self.e820Entries] = UInt8(entries.count)
        for (i, entry) in entries.enumerated() {
            let at = Self.e820Table + i * 20
            bytes.replaceSubrange(at..<(at + 20), with: entry.bytes)
        }
    }

    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        bytes.replaceSubrange(offset..<(offset + MemoryLayout<T>.size), with: littleEndianBytes(value))
    }

    public func readU32(_ offset: Int) -> UInt32 { u32(bytes, offset) }
}
