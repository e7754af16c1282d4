/// Where the VMM puts the x86-64 boot structures in guest-physical memory (all below 1 MiB, as Linux expects).
public enum BootLayout {
    public static let gdtAddress: UInt64 = 0x500
    public static let idtAddress: UInt64 = 0x520
    public static let zeroPageAddress: UInt64 = 0x7000
    public static let stackTop: UInt64 = 0x8FF0
    public static let pml4Address: UInt64 = 0x9000
    public static let pdptAddress: UInt64 = 0xA000
    /// Four page directories (0xB000–0xEFFF) identity-map the first 4 GiB with 2 MiB pages.
    public static let pdAddress: UInt64 = 0xB000
    public static let commandLineAddress: UInt64 = 0x20000
    /// Linux's x86 COMMAND_LINE_SIZE when the kernel does not say (the ELF entry has no setup header).
    public static let defaultCommandLineMax = 2048
    /// Start of the extended BIOS data area: RAM below it is usable.
    public static let ebdaStart: UInt64 = 0x9FC00
    public static let highMemoryStart: UInt64 = 0x10_0000
    /// Where ELF and flat test guests, and bzImage protected-mode code without a preference, are loaded.
    public static let kernelLoadAddress: UInt64 = 0x100_0000
    /// KVM's TSS (three pages) and identity-map page sit just below the MMIO hole's devices.
    public static let tssAddress: UInt64 = 0xFFFB_D000
    public static let identityMapAddress: UInt64 = 0xFFFB_C000
    /// virtio-mmio devices: one 4 KiB window each from here, IRQ 5, 6, … (announced on the command line).
    public static let virtioMMIOBase: UInt64 = 0xD000_0000
    public static let virtioMMIOStride: UInt64 = 0x1000
    public static let virtioFirstIRQ: UInt32 = 5
    public static let serialIRQ: UInt32 = 4
}

/// An x86 GDT entry, built from the packed flags word (access byte + G/DB/L/AVL nibble), base and limit.
public struct GDTEntry: Sendable, Equatable {
    public let flags: UInt16
    public let base: UInt32
    public let limit: UInt32

    public init(flags: UInt16, base: UInt32, limit: UInt32) {
        self.flags = flags
        self.base = base
        self.limit = limit
    }

    public static let null = GDTEntry(flags: 0, base: 0, limit: 0)
    public static let code64 = GDTEntry(flags: 0xA09B, base: 0, limit: 0xFFFFF)
    public static let data = GDTEntry(flags: 0xC093, base: 0, limit: 0xFFFFF)
    public static let tss = GDTEntry(flags: 0x808B, base: 0, limit: 0xFFFFF)

    /// The 8-byte descriptor.
    public var encoded: UInt64 {
        let b = UInt64(base), l = UInt64(limit), f = UInt64(flags)
        return ((b & 0xFF00_0000) << 32) | ((f & 0xF0FF) << 40) | ((l & 0xF_0000) << 32) | ((b & 0xFF_FFFF) << 16)
            | (l & 0xFFFF)
    }

    var present: Bool { flags & 0x80 != 0 }
    var dpl: UInt8 { UInt8((flags >> 5) & 3) }
    var system: Bool { flags & 0x10 != 0 }
    var type: UInt8 { UInt8(flags & 0xF) }
    var granularity: Bool { flags & 0x8000 != 0 }
    var defaultBig: Bool { flags & 0x4000 != 0 }
    var long: Bool { flags & 0x2000 != 0 }
    var available: Bool { flags & 0x1000 != 0 }
    /// The limit in bytes as the CPU sees it (scaled by 4 KiB when G is set).
    var effectiveLimit: UInt32 { granularity ? (limit << 12) | 0xFFF : limit }
}

/// The boot GDT: Linux's 64-bit boot protocol wants CS = 0x10 and DS/ES/SS = 0x18.
public enum BootGDT {
    public static let entries: [GDTEntry] = [.null, .null, .code64, .data, .tss]
    public static let codeSelector: UInt16 = 0x10
    public static let dataSelector: UInt16 = 0x18
    public static let tssSelector: UInt16 = 0x20

    public static var bytes: [UInt8] { entries.flatMap { littleEndianBytes($0.encoded) } }
}

/// Identity-mapped page tables for the first 4 GiB (PML4 → one PDPT → four PDs of 2 MiB pages).
public enum PageTables {
    public static let present: UInt64 = 1, writable: UInt64 = 2, pageSize: UInt64 = 0x80

    /// The 24 KiB from ``BootLayout/pml4Address`` to the end of the last page directory.
    public static var bytes: [UInt8] {
        var table = [UInt64](repeating: 0, count: 6 * 512)
        table[0] = BootLayout.pdptAddress | present | writable
        for i in 0..<4 { table[512 + i] = (BootLayout.pdAddress + UInt64(i) * 0x1000) | present | writable }
        for i in 0..<(4 * 512) { table[1024 + i] = (UInt64(i) << 21) | present | writable | pageSize }
        return table.flatMap { littleEndianBytes($0) }
    }
}

/// One e820 entry: usable RAM (1) or reserved (2).
public struct E820Entry: Sendable, Equatable {
    public static let ram: UInt32 = 1
    public static let reserved: UInt32 = 2
    public let address: UInt64
    public let size: UInt64
    public let type: UInt32
    public init(address: UInt64, size: UInt64, type: UInt32) {
        self.address = address
        self.size = size
        self.type = type
    }

    /// The memory map for guest RAM as ``GuestMemory/layout(size:)`` places it.
    public static func map(for regions: [GuestMemory.Region]) -> [E820Entry] {
        var entries = [E820Entry(address: 0, size: BootLayout.ebdaStart, type: ram),
                       E820Entry(address: BootLayout.ebdaStart, size: 0xA0000 - BootLayout.ebdaStart, type: reserved),
                       E820Entry(address: 0xF0000, size: 0x10000, type: reserved)]
        let low = regions[0]
        entries.append(E820Entry(address: BootLayout.highMemoryStart, size: low.size - BootLayout.highMemoryStart, type: ram))
        for region in regions.dropFirst() { entries.append(E820Entry(address: region.guestAddress, size: region.size, type: ram)) }
        return entries
    }

    /// The 20-byte `struct boot_e820_entry`.
    public var bytes: [UInt8] { littleEndianBytes(address) + littleEndianBytes(size) + littleEndianBytes(type) }
}

@inline(__always) func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}
