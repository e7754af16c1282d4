/// ELF64 x86-64 images (Linux's vmlinux, our test guests): PT_LOAD segments at their physical addresses,
/// entry from `e_entry`, and the PVH entry note when present.
public enum ELFImage {
    public static let ptLoad: UInt32 = 1, ptNote: UInt32 = 4
    /// XEN_ELFNOTE_PHYS32_ENTRY, in a note named "Xen".
    public static let pvhNoteType: UInt32 = 18

    public struct ProgramHeader: Sendable, Equatable {
        public let type: UInt32
        public let offset: UInt64
        public let physicalAddress: UInt64
        public let fileSize: UInt64
        public let memorySize: UInt64
    }

    public struct Header: Sendable, Equatable {
        public let entry: UInt64
        public let programHeaders: [ProgramHeader]
    }

    /// Parses and checks the ELF header and program headers.
    public static func parse(_ source: BootSource) throws -> Header {
        let ident = try source.bytes(at: 0, count: 64)
        guard ident[0..<4].elementsEqual([0x7F, 0x45, 0x4C, 0x46]) else { throw BootError("not an ELF file") }
        guard ident[4] == 2 else { throw BootError("ELF class \(ident[4]) is not ELF64; a 64-bit kernel is needed") }
        guard ident[5] == 1 else { throw BootError("ELF is not little-endian") }
        let machine = u16(ident, 18)
        guard machine == 0x3E else { throw BootError("ELF machine \(machine) is not x86-64 (62)") }
        let entry = u64(ident, 24)
        let phoff = u64(ident, 32)
        let phentsize = Int(u16(ident, 54))
        let phnum = Int(u16(ident, 56))
        guard phentsize >= 56 else { throw BootError("ELF program header size \(phentsize) is too small") }
        guard phnum > 0, phnum <= 64 else { throw BootError("ELF has \(phnum) program headers (1…64 expected)") }
        let table = try source.bytes(at: phoff, count: phentsize * phnum)
        var headers: [ProgramHeader] = []
        for i in 0..<phnum {
            let b = i * phentsize
            let header = ProgramHeader(type: u32(table, b), offset: u64(table, b + 8), physicalAddress: u64(table, b + 24),
                                       fileSize: u64(table, b + 32), memorySize: u64(table, b + 40))
            if header.type == ptLoad, header.fileSize > header.memorySize {
                throw BootError("ELF segment \(i) has a file size larger than its memory size")
            }
            headers.append(header)
        }
        guard headers.contains(where: { $0.type == ptLoad }) else { throw BootError("ELF has no loadable segment") }
        return Header(entry: entry, programHeaders: headers)
    }

    /// The PVH 32-bit entry from the image's notes, if any.
    public static func pvhEntry(_ source: BootSource, header: Header) throws -> UInt32? {
        for note in header.programHeaders where note.type == ptNote && note.fileSize <= 1 << 20 {
            let bytes = try source.bytes(at: note.offset, count: Int(note.fileSize))
            var at = 0
            while at + 12 <= bytes.count {
                let nameSize = Int(u32(bytes, at)), descSize = Int(u32(bytes, at + 4)), type = u32(bytes, at + 8)
                let nameStart = at + 12
                let descStart = nameStart + align4(nameSize)
                let next = descStart + align4(descSize)
                guard nameSize <= bytes.count, descSize <= bytes.count, next <= bytes.count else { break }
                let name = bytes[nameStart..<(nameStart + nameSize)].prefix { $0 != 0 }
                if type == pvhNoteType, name.elementsEqual(Array("Xen".utf8)), descSize >= 4 {
                    return u32(bytes, descStart)
                }
                at = next
            }
        }
        return nil
    }

    public static func load(_ source: BootSource, into memory: GuestMemory) throws -> LoadedKernel {
        let header = try parse(source)
        var start = UInt64.max, end: UInt64 = 0
        for segment in header.programHeaders where segment.type == ptLoad {
            guard segment.memorySize > 0 else { continue }
            let target: UnsafeMutableRawBufferPointer
            do { target = try memory.buffer(segment.physicalAddress, count: segment.memorySize) } catch {
                throw BootError("ELF segment at \(hex(segment.physicalAddress)) (\(segment.memorySize) bytes) does not fit "
                                + "in guest memory; give the VM more --memory")
            }
            try source.read(into: UnsafeMutableRawBufferPointer(rebasing: target[0..<Int(segment.fileSize)]), at: segment.offset)
            UnsafeMutableRawBufferPointer(rebasing: target[Int(segment.fileSize)...]).initializeMemory(as: UInt8.self, repeating: 0)
            start = min(start, segment.physicalAddress)
            end = max(end, segment.physicalAddress + segment.memorySize)
        }
        // vmlinux links e_entry at its virtual address on some builds; the 64-bit entry is then its physical twin.
        var entry = header.entry
        if entry >= 0xFFFF_FFFF_8000_0000 { entry -= 0xFFFF_FFFF_8000_0000 }
        guard entry >= start, entry < end else {
            throw BootError("ELF entry \(hex(header.entry)) lies outside its loaded segments")
        }
        return LoadedKernel(format: .elf, entry: entry, start: start, end: end,
                            pvhEntry: try pvhEntry(source, header: header), setupHeader: nil)
    }
}

@inline(__always) func align4(_ n: Int) -> Int { (n + 3) & ~3 }
@inline(__always) func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
@inline(__always) func u32(_ b: [UInt8], _ at: Int) -> UInt32 { UInt32(u16(b, at)) | UInt32(u16(b, at + 2)) << 16 }
@inline(__always) func u64(_ b: [UInt8], _ at: Int) -> UInt64 { UInt64(u32(b, at)) | UInt64(u32(b, at + 4)) << 32 }
