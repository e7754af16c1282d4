import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// virtio-blk over a host file: read-only (a shared image) or writable. Requests are checked for shape
/// (header, data, status descriptors and their directions), size (whole sectors) and bounds (capacity).
public final class VirtioBlock: VirtioDevice, @unchecked Sendable {
    public static let sectorSize: UInt64 = 512
    public static let featureReadOnly: UInt64 = 1 << 5
    public static let featureFlush: UInt64 = 1 << 9
    public static let typeIn: UInt32 = 0, typeOut: UInt32 = 1, typeFlush: UInt32 = 4, typeGetID: UInt32 = 8
    public static let statusOK: UInt8 = 0, statusIOError: UInt8 = 1, statusUnsupported: UInt8 = 2

    public let path: String
    public let readOnly: Bool
    public let capacity: UInt64 // sectors
    let fd: FileDescriptor
    let serial: [UInt8]

    public var deviceType: UInt32 { 2 }
    public var name: String { "virtio-blk \(path)" }
    public var queueCount: Int { 1 }
    public var deviceFeatures: UInt64 { (readOnly ? Self.featureReadOnly : 0) | Self.featureFlush }

    /// Opens `path` (read-only when `readOnly`); must happen before confinement.
    public init(path: String, readOnly: Bool, serial: String) throws {
        self.path = path
        self.readOnly = readOnly
        fd = try FileDescriptor.open(path, readOnly ? O_RDONLY : O_RDWR)
        let st = try fd.stat(path: path)
        guard (st.st_mode & S_IFMT) == S_IFREG || (st.st_mode & S_IFMT) == S_IFBLK else {
            throw BootError("disk \(path) is neither a regular file nor a block device")
        }
        var size = UInt64(st.st_size)
        if (st.st_mode & S_IFMT) == S_IFBLK { size = UInt64(lseek(fd.raw, 0, SEEK_END)) }
        capacity = size / Self.sectorSize
        self.serial = Array(serial.utf8.prefix(20))
    }

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        // capacity (le64) at 0; everything else reads as zero.
        var config = [UInt8](repeating: 0, count: 64)
        for i in 0..<8 { config[i] = UInt8(truncatingIfNeeded: capacity >> (8 * UInt64(i))) }
        for i in 0..<data.count { data[i] = offset + UInt64(i) < 64 ? config[Int(offset) + i] : 0 }
    }

    public func reset() {}

    public func process(queue index: Int, queues: inout [Virtqueue], memory: GuestMemory,
                        report: (String) -> Void) throws(VirtioError) -> Bool {
        var used = false
        while let popped = try queues[index].pop(memory) {
            switch popped {
            case .failure(let failure):
                report("request rejected: \(failure.reason)")
                try queues[index].push(memory, head: failure.head, written: 0)
            case .success(let chain):
                let written = handle(chain, memory: memory, report: report)
                try queues[index].push(memory, head: chain.head, written: written)
            }
            used = true
        }
        return used
    }

    /// Serves one request; returns the bytes written into the guest's buffers.
    func handle(_ chain: VirtioChain, memory: GuestMemory, report: (String) -> Void) -> UInt32 {
        guard chain.buffers.count >= 2, let header = chain.buffers.first, let status = chain.buffers.last else {
            report("request rejected: \(chain.buffers.count) descriptors; header and status are needed")
            return 0
        }
        guard !header.writable, header.length >= 16 else {
            report("request rejected: header descriptor is writable or shorter than 16 bytes")
            return 0
        }
        guard status.writable, status.length >= 1 else {
            report("request rejected: status descriptor is read-only or empty")
            return 0
        }
        let type: UInt32, sector: UInt64
        do {
            type = try memory.load(UInt32.self, at: header.address)
            sector = try memory.load(UInt64.self, at: header.address + 8)
        } catch { report("request rejected: \(error)"); return 0 }
        let data = Array(chain.buffers.dropFirst().dropLast())
        func finish(_ code: UInt8, _ written: UInt32) -> UInt32 {
            (try? memory.store(code, at: status.address + UInt64(status.length) - 1)) ?? ()
            // The status byte is the last byte of the status buffer; count the buffer's bytes before it as written data.
            return written + 1
        }
        switch type {
        case Self.typeIn, Self.typeOut:
            let wantWritable = type == Self.typeIn
            guard data.allSatisfy({ $0.writable == wantWritable }) else {
                report("request rejected: data descriptors have the wrong direction for a \(type == 0 ? "read" : "write")")
                return finish(Self.statusIOError, 0)
            }
            let length = data.reduce(UInt64(0)) { $0 + UInt64($1.length) }
            guard length % Self.sectorSize == 0 else {
                report("request rejected: \(length) bytes is not a whole number of sectors")
                return finish(Self.statusIOError, 0)
            }
            guard sector <= capacity, length / Self.sectorSize <= capacity - sector else {
                report("request rejected: sectors \(sector)+\(length / Self.sectorSize) are beyond the disk's \(capacity)")
                return finish(Self.statusIOError, 0)
            }
            if type == Self.typeOut && readOnly {
                report("request rejected: write to a read-only disk")
                return finish(Self.statusIOError, 0)
            }
            var offset = off_t(sector * Self.sectorSize)
            for buffer in data {
                guard let pointer = try? memory.pointer(buffer.address, count: UInt64(buffer.length)) else {
                    return finish(Self.statusIOError, 0)
                }
                var done = 0
                while done < Int(buffer.length) {
                    let n = type == Self.typeIn
                        ? pread(fd.raw, pointer + done, Int(buffer.length) - done, offset + off_t(done))
                        : pwrite(fd.raw, pointer + done, Int(buffer.length) - done, offset + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 {
                        report("\(type == Self.typeIn ? "read" : "write") failed at byte \(offset + off_t(done)): "
                               + (n == 0 ? "end of file" : String(cString: strerror(errno))))
                        return finish(Self.statusIOError, 0)
                    }
                    done += n
                }
                offset += off_t(buffer.length)
            }
            return finish(Self.statusOK, type == Self.typeIn ? UInt32(length) : 0)
        case Self.typeFlush:
            if !readOnly && fsync(fd.raw) != 0 { return finish(Self.statusIOError, 0) }
            return finish(Self.statusOK, 0)
        case Self.typeGetID:
            guard let target = data.first, target.writable, target.length >= 20 else { return finish(Self.statusIOError, 0) }
            var id = serial
            id += [UInt8](repeating: 0, count: 20 - id.count)
            guard (try? memory.write(id, at: target.address)) != nil else { return finish(Self.statusIOError, 0) }
            return finish(Self.statusOK, 20)
        default:
            return finish(Self.statusUnsupported, 0)
        }
    }
}
