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
    public func readAll(limit: Int = 64 << 20, path: String? = nil) throws -> [UInt8] {
        var result: [UInt8] = []
        // A small limit (a /proc file) needs no 64 KiB buffer to zero.
        var chunk = [UInt8](repeating: 0, count: limit < 65536 ? limit + 1 : 65536)
        while true {
            let n = try chunk.withUnsafeMutableBytes { (b) throws in try read(into: b, path: path) }
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
            if result.count > limit {
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
