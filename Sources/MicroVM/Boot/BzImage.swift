/// Linux's bzImage: the real-mode setup sectors with the setup header at 0x1F1, then protected-mode code whose
/// 64-bit entry is at its load address + 0x200 (boot protocol ≥ 2.12 with XLF_KERNEL_64).
public enum BzImage {
    public static let minimumProtocol: UInt16 = 0x020C
    public static let loadedHigh: UInt8 = 0x01
    public static let xlfKernel64: UInt16 = 0x01

    public struct SetupHeader: Sendable, Equatable {
        public let setupSectors: Int
        public let protocolVersion: UInt16
        public let loadFlags: UInt8
        public let initrdAddressMax: UInt32
        public let kernelAlignment: UInt32
        public let relocatable: Bool
        public let xloadFlags: UInt16
        public let commandLineSize: UInt32
        public let preferredAddress: UInt64
        public let initSize: UInt32
        /// Bytes 0x1F1 up to the end of the header (0x202 + the byte at 0x201).
        public let raw: [UInt8]

        /// Where the protected-mode code starts in the file.
        public var protectedModeOffset: UInt64 { UInt64(setupSectors + 1) * 512 }
    }

    /// Parses and checks the setup header in the first sectors of `head`.
    public static func parseHeader(_ head: [UInt8]) throws -> SetupHeader {
        guard head.count >= 0x268 else { throw BootError("bzImage is too short for a setup header") }
        guard u16(head, 0x1FE) == 0xAA55 else { throw BootError("bzImage has no 0xAA55 boot flag at 0x1FE") }
        guard head[0x202..<0x206].elementsEqual(Array("HdrS".utf8)) else { throw BootError("bzImage has no HdrS magic at 0x202") }
        let version = u16(head, 0x206)
        guard version >= minimumProtocol else {
            throw BootError("bzImage speaks boot protocol \(version >> 8).\(version & 0xFF); 2.12 or later is needed for the 64-bit entry")
        }
        let xload = u16(head, 0x236)
        guard xload & xlfKernel64 != 0 else { throw BootError("bzImage has no 64-bit entry (XLF_KERNEL_64 not set)") }
        let loadFlags = head[0x211]
        guard loadFlags & loadedHigh != 0 else { throw BootError("bzImage is not a high-loaded (bz) kernel") }
        var sectors = Int(head[0x1F1])
        if sectors == 0 { sectors = 4 }
        let headerEnd = 0x202 + Int(head[0x201])
        guard headerEnd <= head.count else { throw BootError("bzImage setup header runs past the image") }
        return SetupHeader(setupSectors: sectors, protocolVersion: version, loadFlags: loadFlags,
                           initrdAddressMax: u32(head, 0x22C), kernelAlignment: u32(head, 0x230),
                           relocatable: head[0x234] != 0, xloadFlags: xload, commandLineSize: u32(head, 0x238),
                           preferredAddress: u64(head, 0x258), initSize: u32(head, 0x260),
                           raw: Array(head[0x1F1..<headerEnd]))
    }

    /// Where the protected-mode code goes: the preferred address (16 MiB on x86-64 builds) when set, else 1 MiB.
    public static func loadAddress(_ header: SetupHeader) -> UInt64 {
        header.preferredAddress >= BootLayout.highMemoryStart ? header.preferredAddress : BootLayout.highMemoryStart
    }

    public static func load(_ source: BootSource, into memory: GuestMemory) throws -> LoadedKernel {
        let header = try parseHeader(try source.bytes(at: 0, count: Int(min(source.size, 4096))))
        guard header.protectedModeOffset < source.size else { throw BootError("bzImage has no protected-mode code") }
        let size = source.size - header.protectedModeOffset
        let address = loadAddress(header)
        let footprint = max(size, UInt64(header.initSize))
        let target: UnsafeMutableRawBufferPointer
        do {
            _ = try memory.pointer(address, count: footprint)
            target = try memory.buffer(address, count: size)
        } catch {
            throw BootError("bzImage needs \(footprint) bytes at \(hex(address)); give the VM more --memory")
        }
        try source.read(into: target, at: header.protectedModeOffset)
        return LoadedKernel(format: .bzImage, entry: address + 0x200, start: address, end: address + footprint,
                            pvhEntry: nil, setupHeader: header.raw)
    }
}
