import CKVM

/// Initial CPU state for entering a 64-bit kernel directly in long mode, and the per-vCPU CPUID filter.
public enum CPUSetup {
    public static let cr0PE: UInt64 = 1, cr0ET: UInt64 = 0x10, cr0PG: UInt64 = 0x8000_0000
    public static let cr0NW: UInt64 = 1 << 29, cr0CD: UInt64 = 1 << 30
    public static let cr4PAE: UInt64 = 0x20
    public static let eferLME: UInt64 = 0x100, eferLMA: UInt64 = 0x400

    /// A `kvm_segment` for a GDT entry.
    public static func segment(_ entry: GDTEntry, selector: UInt16) -> kvm_segment {
        var s = kvm_segment()
        s.base = UInt64(entry.base)
        s.limit = entry.effectiveLimit
        s.selector = selector
        s.type = entry.type
        s.present = entry.present ? 1 : 0
        s.dpl = entry.dpl
        s.db = entry.defaultBig ? 1 : 0
        s.s = entry.system ? 1 : 0
        s.l = entry.long ? 1 : 0
        s.g = entry.granularity ? 1 : 0
        s.avl = entry.available ? 1 : 0
        s.unusable = entry.present ? 0 : 1
        return s
    }

    /// Special registers for long mode with the boot GDT and identity-mapped page tables.
    public static func longModeSregs(from initial: kvm_sregs) -> kvm_sregs {
        var sregs = initial
        let code = segment(.code64, selector: BootGDT.codeSelector)
        let data = segment(.data, selector: BootGDT.dataSelector)
        sregs.cs = code
        sregs.ds = data; sregs.es = data; sregs.fs = data; sregs.gs = data; sregs.ss = data
        sregs.tr = segment(.tss, selector: BootGDT.tssSelector)
        sregs.gdt.base = BootLayout.gdtAddress
        sregs.gdt.limit = UInt16(BootGDT.entries.count * 8 - 1)
        sregs.idt.base = BootLayout.idtAddress
        sregs.idt.limit = 7
        sregs.cr0 = (initial.cr0 & ~(cr0CD | cr0NW)) | cr0PE | cr0ET | cr0PG
        sregs.cr3 = BootLayout.pml4Address
        sregs.cr4 = cr4PAE
        sregs.efer = eferLME | eferLMA
        return sregs
    }

    /// General registers at the kernel's 64-bit entry: boot_params in RSI, a stack below the zero page's page.
    public static func entryRegs(entry: UInt64) -> kvm_regs {
        var regs = kvm_regs()
        regs.rflags = 2
        regs.rip = entry
        regs.rsp = BootLayout.stackTop
        regs.rbp = BootLayout.stackTop
        regs.rsi = BootLayout.zeroPageAddress
        return regs
    }

    /// MSRs reset for a 64-bit entry: SYSENTER/SYSCALL state cleared, TSC 0, fast strings enabled.
    public static let bootMSRs: [(UInt32, UInt64)] = [
        (0x174, 0), (0x175, 0), (0x176, 0),          // IA32_SYSENTER_CS/ESP/EIP
        (0xC000_0081, 0), (0xC000_0082, 0), (0xC000_0083, 0), (0xC000_0084, 0), // STAR, LSTAR, CSTAR, SFMASK
        (0xC000_0102, 0),                              // KERNEL_GS_BASE
        (0x10, 0),                                     // TSC
        (0x1A0, 1),                                    // IA32_MISC_ENABLE: fast strings
        (0x2FF, 0x806),                                // MTRRdefType: MTRRs on, default write-back
    ]

    /// The host's supported CPUID filtered for vCPU `index` of `count`: APIC IDs (leaf 1, 0xB, 0x1F), a flat
    /// topology of `count` cores in one package, and the hypervisor bit in leaf 1 ECX.
    public static func filterCPUID(_ supported: [kvm_cpuid_entry2], vcpu index: UInt32, of count: UInt32) -> [kvm_cpuid_entry2] {
        let coreBits = UInt32(count <= 1 ? 0 : 32 - (count - 1).leadingZeroBitCount)
        return supported.map { entry in
            var e = entry
            switch e.function {
            case 1:
                e.ebx = (e.ebx & 0x0000_FFFF) | (index << 24) | (min(count, 255) << 16)
                e.ecx |= 1 << 31 // running under a hypervisor
                if count > 1 { e.edx |= 1 << 28 } // HTT: the count in EBX[23:16] is valid
            case 4:
                // Cores per package − 1 in EAX[31:26]; no cache sharing beyond one core.
                e.eax = (e.eax & 0x03FF_FFFF) | ((count - 1) << 26)
                e.eax &= ~(0xFFF << 14)
            case 0xB, 0x1F:
                e.edx = index
                switch e.index {
                case 0: e.eax = 0; e.ebx = 1; e.ecx = (1 << 8) | 0   // SMT level: one thread
                case 1: e.eax = coreBits; e.ebx = count; e.ecx = (2 << 8) | 1 // core level
                default: e.eax = 0; e.ebx = 0; e.ecx = e.index
                }
            case 6:
                e.ecx &= ~UInt32(1 << 3) // no energy-performance bias
            default:
                break
            }
            return e
        }
    }
}
