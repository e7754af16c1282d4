import CShims
#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor with exactly one owner: it is closed when its owner goes away.
///
/// Non-copyable on purpose: an fd is moved, borrowed, or explicitly released with ``take()``,
/// never silently shared. Every fd Bulkhead opens is `O_CLOEXEC`.
public struct FileDescriptor: ~Copyable, @unchecked Sendable {
    public let raw: Int32

    /// Takes ownership of `raw`.
    public init(adopting raw: Int32) { self.raw = raw }

    deinit { if raw >= 0 { _ = Glibc.close(raw) } }

    /// Gives up ownership and returns the raw fd; the caller must close it.
    public consuming func take() -> Int32 {
        let fd = raw
        discard self
        return fd
    }

    /// Closes now, reporting an error (a close error on a written file can mean lost data).
    public consuming func close(path: String? = nil) throws {
        let fd = take()
        if Glibc.close(fd) != 0 { throw SystemError(operation: "close", path: path, errno: bh_errno()) }
    }

    /// Opens `path` relative to the working directory (or absolute).
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> FileDescriptor {
        FileDescriptor(adopting: try sys("open", path) { bh_openat(AT_FDCWD, path, flags | O_CLOEXEC, mode) })
    }

    /// Opens `path` relative to this directory fd with plain openat(2) semantics.
    public func openAt(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> FileDescriptor {
        FileDescriptor(adopting: try sys("openat", path) { bh_openat(raw, path, flags | O_CLOEXEC, mode) })
    }

    /// Opens `path` relative to this directory fd with openat2(2) `resolve` flags, e.g.
    /// `RESOLVE_IN_ROOT` so that `..`, absolute paths and symlinks cannot leave the directory.
    public func openAt2(_ path: String, _ flags: Int32, mode: mode_t = 0, resolve: UInt64) throws -> FileDescriptor {
        let fd = try sys("openat2", path) {
            bh_openat2(raw, path, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), UInt64(mode), resolve)
        }
        return FileDescriptor(adopting: fd)
    }

    /// Writes all of `bytes`, retrying short writes and EINTR.
    public func writeAll(_ bytes: UnsafeRawBufferPointer, path: String? = nil) throws {
        var offset = 0
        while offset < bytes.count {
            let n = try sys("write", path) { Glibc.write(raw, bytes.baseAddress! + offset, bytes.count - offset) }
            offset += n
        }
    }

    public func writeAll(_ bytes: [UInt8], path: String? = nil) throws {
        try bytes.withUnsafeBytes { (buffer) throws in try writeAll(buffer, path: path) }
    }

    public func writeAll(_ text: String, path: String? = nil) throws {
        try writeAll(Array(text.utf8), path: path)
    }

    /// Reads up to `buffer.count` bytes; 0 means end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer, path: String? = nil) throws -> Int {
        try sys("read", path) { Glibc.read(raw, buffer.baseAddress, buffer.count) }
    }

    /// Reads until end of file, refusing more than `limit` bytes.
    ///
    /// The buffer starts at the size fstat gives a regular file (so one read fills it; /proc files and pipes say 0 and
    /// start at 4 KiB), grows by doubling, and is never zeroed: zeroing a 64 KiB chunk for every file read cost page
    /// faults in every container start.
    public func readAll(limit: Int = 64 << 20, path: String? = nil) throws -> [UInt8] {
        var st = Glibc.stat()
        let size = fstat(raw, &st) == 0 && st.st_mode & S_IFMT == S_IFREG ? Int(st.st_size) : 0
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(max(size + 1, 4096), limit + 1), alignment: 1)
        defer { buffer.deallocate() }
        var count = 0
        while true {
            if count == buffer.count {
                let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: min(buffer.count * 2, limit + 1), alignment: 1)
                grown.copyMemory(from: UnsafeRawBufferPointer(buffer))
                buffer.deallocate()
                buffer = grown
            }
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[count...]), path: path)
            if n == 0 { return [UInt8](UnsafeRawBufferPointer(rebasing: buffer[0..<count])) }
            count += n
            if count > limit {
                throw SystemError(operation: "read", path: path, errno: EFBIG, hint: "the file is larger than \(limit) bytes")
            }
        }
    }

    public func fsync(path: String? = nil) throws {
        try sys("fsync", path) { Glibc.fsync(raw) }
    }

    public func stat(path: String? = nil) throws -> stat {
        var st = Glibc.stat()
        try sys("fstat", path) { fstat(raw, &st) }
        return st
    }
}
