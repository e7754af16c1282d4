import CKVM
import Testing
@testable import MicroVM

@Suite("x86-64 boot structures (bytes)")
struct BootStructureTests {
    @Test func gdtEntriesEncodeAsTheCPUExpects() {
        #expect(GDTEntry.code64.encoded == 0x00AF_9B00_0000_FFFF)
        #expect(GDTEntry.data.encoded == 0x00CF_9300_0000_FFFF)
        #expect(GDTEntry.tss.encoded == 0x008F_8B00_0000_FFFF)
        #expect(GDTEntry(flags: 0xA09B, base: 0x1234_5678, limit: 0xABCDE).encoded == 0x12AA_9B34_5678_BCDE)
        let bytes = BootGDT.bytes
        #expect(bytes.count == 40)
        #expect(Array(bytes[0..<16]) == [UInt8](repeating: 0, count: 16))
        #expect(Array(bytes[16..<24]) == [0xFF, 0xFF, 0, 0, 0, 0x9B, 0xAF, 0x00])
        #expect(Array(bytes[24..<32]) == [0xFF, 0xFF, 0, 0, 0, 0x93, 0xCF, 0x00])
    }

    @Test func segmentsForLongMode() {
        let cs = CPUSetup.segment(.code64, selector: BootGDT.codeSelector)
        #expect(cs.selector == 0x10 && cs.type == 0xB && cs.l == 1 && cs.db == 0 && cs.g == 1 && cs.s == 1 && cs.present == 1)
        #expect(cs.limit == 0xFFFF_FFFF)
        let ds = CPUSetup.segment(.data, selector: BootGDT.dataSelector)
        #expect(ds.selector == 0x18 && ds.type == 3 && ds.l == 0 && ds.db == 1)
        let tr = CPUSetup.segment(.tss, selector: BootGDT.tssSelector)
        #expect(tr.type == 0xB && tr.s == 0 && tr.selector == 0x20)
        let sregs = CPUSetup.longModeSregs(from: kvm_sregs())
        #expect(sregs.cr3 == 0x9000 && sregs.cr4 == 0x20 && sregs.efer == 0x500)
        #expect(sregs.cr0 & 0x8000_0001 == 0x8000_0001)
        #expect(sregs.gdt.base == 0x500 && sregs.gdt.limit == 39 && sregs.idt.base == 0x520)
        let regs = CPUSetup.entryRegs(entry: 0x100_0000)
        #expect(regs.rip == 0x100_0000 && regs.rsi == 0x7000 && regs.rflags == 2)
    }

    @Test func pageTablesIdentityMapFourGiBWithTwoMiBPages() {
        let bytes = PageTables.bytes
        #expect(bytes.count == 6 * 4096)
        func entry(_ i: Int) -> UInt64 { bytes[(i * 8)..<(i * 8 + 8)].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }
        #expect(entry(0) == 0xA003)              // PML4[0] → PDPT
        #expect(entry(1) == 0)
        #expect(entry(512) == 0xB003)            // PDPT[0] → PD 0
        #expect(entry(515) == 0xE003)            // PDPT[3] → PD 3
        #expect(entry(516) == 0)
        #expect(entry(1024) == 0x83)             // PD 0 [0]: 0 MiB, present, writable, 2 MiB
        #expect(entry(1025) == 0x20_0083)
        #expect(entry(1024 + 512) == 0x4000_0083) // 1 GiB
        #expect(entry(1024 + 2047) == 0xFFE0_0083) // last 2 MiB below 4 GiB
    }

    @Test func e820MapAroundTheMMIOHole() {
        let small = E820Entry.map(for: GuestMemory.layout(size: 128 << 20))
        #expect(small == [E820Entry(address: 0, size: 0x9FC00, type: 1), E820Entry(address: 0x9FC00, size: 0x400, type: 2),
                          E820Entry(address: 0xF0000, size: 0x10000, type: 2),
                          E820Entry(address: 0x10_0000, size: (128 << 20) - 0x10_0000, type: 1)])
        #expect(small[0].bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0xFC, 0x09, 0, 0, 0, 0, 0, 1, 0, 0, 0])
        let big = E820Entry.map(for: GuestMemory.layout(size: 4 << 30))
        #expect(big.last == E820Entry(address: 0x1_0000_0000, size: 1 << 30, type: 1))
        #expect(big[3] == E820Entry(address: 0x10_0000, size: 0xC000_0000 - 0x10_0000, type: 1))
    }

    @Test func zeroPageForAnELFKernel() throws {
        let kernel = LoadedKernel(format: .elf, entry: 0x100_0000, start: 0x100_0000, end: 0x200_0000, pvhEntry: nil, setupHeader: nil)
        var page = ZeroPage(kernel: kernel)
        page.setCommandLine(address: 0x20000, length: 12)
        page.setInitrd(address: 0x3000_0000, size: 0x12345)
        let e820 = E820Entry.map(for: GuestMemory.layout(size: 128 << 20))
        try page.setE820(e820)
        let b = page.bytes
        #expect(b.count == 4096)
        #expect(b[0x1FE] == 0x55 && b[0x1FF] == 0xAA)
        #expect(Array(b[0x202..<0x206]) == Array("HdrS".utf8))
        #expect(b[0x210] == 0xFF)                     // type_of_loader
        #expect(b[0x211] & 0x81 == 0x81)              // LOADED_HIGH | CAN_USE_HEAP
        #expect(page.readU32(0x228) == 0x20000)       // cmd_line_ptr
        #expect(page.readU32(0x238) == 12)            // cmdline_size
        #expect(page.readU32(0x218) == 0x3000_0000)   // ramdisk_image
        #expect(page.readU32(0x21C) == 0x12345)       // ramdisk_size
        #expect(b[0x1E8] == UInt8(e820.count))
        #expect(Array(b[0x2D0..<(0x2D0 + 20)]) == e820[0].bytes)
        #expect(Array(b[(0x2D0 + 60)..<(0x2D0 + 80)]) == e820[3].bytes)
    }

    @Test func bzImageHeaderParsingAndPlacement() throws {
        let image = syntheticBzImage()
        let header = try BzImage.parseHeader(image)
        #expect(header.setupSectors == 2 && header.protocolVersion == 0x020F && header.protectedModeOffset == 1536)
        #expect(header.preferredAddress == 0x100_0000 && header.commandLineSize == 2047 && header.initSize == 0x40_0000)
        #expect(header.raw.count == 0x26C - 0x1F1 && header.raw[0] == 2)
        let memory = try GuestMemory(size: 64 << 20)
        let loaded = try KernelLoader.load(ByteSource(image), into: memory)
        #expect(loaded.format == .bzImage)
        #expect(loaded.entry == 0x100_0200)            // protected-mode code + 0x200: the 64-bit entry
        #expect(loaded.end == 0x100_0000 + 0x40_0000)  // init_size reserved
        #expect(try memory.read(0x100_0000, count: 4) == [0xDE, 0xAD, 0xBE, 0xEF])
        var page = ZeroPage(kernel: loaded)
        page.setCommandLine(address: 0x20000, length: 5)
        #expect(page.bytes[0x1F1] == 2)                // setup header copied
        #expect(page.readU32(0x238) == 2047)           // the kernel's cmdline_size is kept
        #expect(page.bytes[0x210] == 0xFF)
    }

    @Test func bzImageRefusals() {
        var old = syntheticBzImage()
        old[0x206] = 0x0B
        #expect(throws: BootError.self) { try BzImage.parseHeader(old) }
        var no64 = syntheticBzImage()
        no64[0x236] = 0
        #expect { try BzImage.parseHeader(no64) } throws: { "\($0)".contains("XLF_KERNEL_64") }
        var noFlag = syntheticBzImage()
        noFlag[0x1FE] = 0
        #expect(throws: BootError.self) { try BzImage.parseHeader(noFlag) }
        #expect(throws: BootError.self) { try BzImage.parseHeader(Array(syntheticBzImage().prefix(0x200))) }
    }

    @Test func elfLoadZeroFillsAndFindsThePVHNote() throws {
        let image = syntheticELF()
        let memory = try GuestMemory(size: 64 << 20)
        try memory.write([UInt8](repeating: 0xAA, count: 64), at: 0x100_0000)
        let loaded = try KernelLoader.load(ByteSource(image), into: memory)
        #expect(loaded.format == .elf && loaded.entry == 0x100_0000 && loaded.end == 0x100_0000 + 64)
        #expect(loaded.pvhEntry == 0x100_0010)
        #expect(try memory.read(0x100_0000, count: 4) == [0x90, 0x90, 0xF4, 0xEB])
        #expect(try memory.read(0x100_0000 + 16, count: 48) == [UInt8](repeating: 0, count: 48)) // bss zeroed
        var wrong = image
        wrong[18] = 0xB7 // aarch64
        #expect { try KernelLoader.load(ByteSource(wrong), into: memory) } throws: { "\($0)".contains("not x86-64") }
        var far = image
        far.replaceSubrange((64 + 24)..<(64 + 32), with: littleEndianBytes(UInt64(0x1_0000_0000)))
        #expect { try KernelLoader.load(ByteSource(far), into: memory) } throws: { "\($0)".contains("does not fit") }
    }

    @Test func initrdPlacement() throws {
        let memory = try GuestMemory(size: 128 << 20)
        let at = try KernelLoader.placeInitrd(size: 0x1234, kernelEnd: 0x200_0000, memory: memory)
        #expect(at % 4096 == 0 && at + 0x1234 <= 128 << 20 && at > 127 << 20)
        #expect(throws: BootError.self) { try KernelLoader.placeInitrd(size: 127 << 20, kernelEnd: 0x200_0000, memory: memory) }
        let capped = try KernelLoader.placeInitrd(size: 4096, kernelEnd: 0, memory: memory, maxAddress: 0xFF_FFFF)
        #expect(capped == 0xFF_F000)
    }

    @Test func cpuidIsFilteredPerVCPU() {
        var leaf1 = kvm_cpuid_entry2(); leaf1.function = 1; leaf1.ebx = 0xFFFF_0800
        var leafB0 = kvm_cpuid_entry2(); leafB0.function = 0xB; leafB0.index = 0
        var leafB1 = kvm_cpuid_entry2(); leafB1.function = 0xB; leafB1.index = 1
        let filtered = CPUSetup.filterCPUID([leaf1, leafB0, leafB1], vcpu: 3, of: 4)
        #expect(filtered[0].ebx >> 24 == 3 && (filtered[0].ebx >> 16) & 0xFF == 4 && filtered[0].ebx & 0xFFFF == 0x0800)
        #expect(filtered[0].ecx & (1 << 31) != 0)
        #expect(filtered[1].edx == 3 && filtered[1].ebx == 1)
        #expect(filtered[2].edx == 3 && filtered[2].eax == 2 && filtered[2].ebx == 4 && (filtered[2].ecx >> 8) & 0xFF == 2)
    }
}

/// A minimal bzImage: 2 setup sectors, boot protocol 2.15, 64-bit entry, protected-mode code starting DEADBEEF.
func syntheticBzImage() -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 1536 + 4096)
    b[0x1F1] = 2
    b[0x1FE] = 0x55; b[0x1FF] = 0xAA
    b[0x201] = 0x6A // header ends at 0x26C
    b.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
    b[0x206] = 0x0F; b[0x207] = 0x02
    b[0x211] = 0x01
    b.replaceSubrange(0x22C..<0x230, with: littleEndianBytes(UInt32(0x7FFF_FFFF)))
    b.replaceSubrange(0x230..<0x234, with: littleEndianBytes(UInt32(0x20_0000)))
    b[0x234] = 1
    b[0x236] = 0x01
    b.replaceSubrange(0x238..<0x23C, with: littleEndianBytes(UInt32(2047)))
    b.replaceSubrange(0x258..<0x260, with: littleEndianBytes(UInt64(0x100_0000)))
    b.replaceSubrange(0x260..<0x264, with: littleEndianBytes(UInt32(0x40_0000)))
    b.replaceSubrange(1536..<1540, with: [0xDE, 0xAD, 0xBE, 0xEF])
    return b
}

/// A minimal ELF64: one PT_LOAD (16 bytes of code, 64 in memory) at 16 MiB and a PT_NOTE with a PVH entry.
func syntheticELF() -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 0x200)
    b.replaceSubrange(0..<4, with: [0x7F, 0x45, 0x4C, 0x46]); b[4] = 2; b[5] = 1; b[6] = 1
    b[16] = 2; b[18] = 0x3E
    b.replaceSubrange(24..<32, with: littleEndianBytes(UInt64(0x100_0000)))
    b.replaceSubrange(32..<40, with: littleEndianBytes(UInt64(64)))
    b[54] = 56; b[56] = 2
    func ph(_ at: Int, type: UInt32, offset: UInt64, address: UInt64, file: UInt64, memory: UInt64) {
        b.replaceSubrange(at..<(at + 4), with: littleEndianBytes(type))
        b.replaceSubrange((at + 8)..<(at + 16), with: littleEndianBytes(offset))
        b.replaceSubrange((at + 16)..<(at + 24), with: littleEndianBytes(address))
        b.replaceSubrange((at + 24)..<(at + 32), with: littleEndianBytes(address))
        b.replaceSubrange((at + 32)..<(at + 40), with: littleEndianBytes(file))
        b.replaceSubrange((at + 40)..<(at + 48), with: littleEndianBytes(memory))
    }
    ph(64, type: 1, offset: 0x100, address: 0x100_0000, file: 16, memory: 64)
    ph(120, type: 4, offset: 0x180, address: 0, file: 20, memory: 20)
    b.replaceSubrange(0x100..<0x104, with: [0x90, 0x90, 0xF4, 0xEB])
    let note: [UInt8] = littleEndianBytes(UInt32(4)) + littleEndianBytes(UInt32(4)) + littleEndianBytes(UInt32(18))
        + Array("Xen".utf8) + [0] + littleEndianBytes(UInt32(0x100_0010))
    b.replaceSubrange(0x180..<(0x180 + note.count), with: note)
    return b
}
