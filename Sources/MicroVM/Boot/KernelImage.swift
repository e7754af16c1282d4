import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// A boot image that does not have the shape its format promises; says which check failed.
public struct BootError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Random-access bytes of a kernel or initrd: a file (pread) or, in tests, an array.
public protocol BootSource: Sendable {
    var size: UInt64 { get }
    /// Reads exactly `buffer.count` bytes at `offset`; throws if the source is shorter.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
}

extension BootSource {
    public func bytes(at offset: UInt64, count: Int) throws -> [UInt8] {
        guard offset <= size, UInt64(count) <= size - offset else {
            throw BootError("image is \(size) bytes; cannot read \(count) bytes at offset \(offset)")
        }
        var result = [UInt8](repeating: 0, count: count)
        try result.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return result
    }
}

public struct ByteSource: BootSource {
    public let data: [UInt8]
    public init(_ data: [UInt8]) { self.data = data }
    public var size: UInt64 { UInt64(data.count) }
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        guard offset <= size, UInt64(buffer.count) <= size - offset else { throw BootError("read past the end of the image") }
        data.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<(Int(offset) + buffer.count)])) }
    }
}

/// A file opened before confinement; reads with pread so the fd's offset is never shared state.
public final class FileSource: BootSource, @unchecked Sendable {
    public let path: String
    let fd: FileDescriptor
    public let size: UInt64

    public init(path: String) throws {
        self.path = path
        fd = try FileDescriptor.open(path, O_RDONLY)
        let st = try fd.stat(path: path)
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw BootError("\(path) is not a regular file") }
        size = UInt64(st.st_size)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let n = try sys("pread", path) { pread(fd.raw, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done)) }
            if n == 0 { throw BootError("\(path) ended at \(offset + UInt64(done)) bytes, before the data its headers describe") }
            done += n
        }
    }
}

/// What the kernel loader placed where.
public struct LoadedKernel: Sendable, Equatable {
    public enum Format: String, Sendable { case elf, bzImage, flat }
    public let format: Format
    /// Guest-physical address of the 64-bit entry point.
    public let entry: UInt64
    /// Guest-physical [start, end) of what was loaded.
    public let start: UInt64
    public let end: UInt64
    /// The PVH entry (XEN_ELFNOTE_PHYS32_ENTRY) when the ELF carries one.
    public let pvhEntry: UInt32?
    /// For bzImage: the setup header bytes (0x1F1 up to its end), to be copied into the zero page.
    public let setupHeader: [UInt8]?
}

/// Loads a kernel (or test guest) into guest memory, choosing the format from its magic numbers:
/// ELF (`\x7fELF`), bzImage (`HdrS` at 0x202), otherwise a flat 64-bit binary entered at its first byte.
public enum KernelLoader {
    public static func load(_ source: BootSource, into memory: GuestMemory) throws -> LoadedKernel {
        let head = try source.bytes(at: 0, count: Int(min(source.size, 4096)))
        if head.count >= 4, head[0] == 0x7F, head[1] == 0x45, head[2] == 0x4C, head[3] == 0x46 {
            return try ELFImage.load(source, into: memory)
        }
        if head.count >= 0x206, head[0x202..<0x206].elementsEqual(Array("HdrS".utf8)) {
            return try BzImage.load(source, into: memory)
        }
        guard source.size > 0 else { throw BootError("the kernel image is empty") }
        let target = try memory.buffer(BootLayout.kernelLoadAddress, count: source.size)
        try source.read(into: target, at: 0)
        return LoadedKernel(format: .flat, entry: BootLayout.kernelLoadAddress, start: BootLayout.kernelLoadAddress,
                            end: BootLayout.kernelLoadAddress + source.size, pvhEntry: nil, setupHeader: nil)
    }

    /// Places an initrd as high as allowed below `maxAddress` (and below the MMIO hole), page-aligned and above the
    /// kernel; returns its guest address.
    public static func placeInitrd(size: UInt64, kernelEnd: UInt64, memory: GuestMemory, maxAddress: UInt64 = 0x37FF_FFFF) throws -> UInt64 {
        let ceiling = min(maxAddress &+ 1, memory.lowMemoryEnd)
        guard size > 0, size <= ceiling else { throw BootError("the initrd (\(size) bytes) does not fit in guest memory; give the VM more --memory") }
        let address = (ceiling - size) & ~UInt64(0xFFF)
        guard address >= kernelEnd else {
            throw BootError("the initrd (\(size) bytes) would overlap the kernel (ends at \(hex(kernelEnd))); give the VM more --memory")
        }
        return address
    }
}
