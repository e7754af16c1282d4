import CArchive
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// A stream of bytes an importer reads a blob from: a file in a layout directory, or an entry of a tar archive
/// read through libarchive. Sources are read once, front to back.
protocol ByteSource: AnyObject {
    /// Reads up to `buffer.count` bytes; 0 at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// Reads a file through a raw fd it owns.
final class FileByteSource: ByteSource {
    private let fd: Int32
    private let path: String

    init(_ fd: consuming FileDescriptor, path: String) {
        self.fd = fd.take()
        self.path = path
    }

    deinit { _ = Glibc.close(fd) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try sys("read", path) { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }
}

/// Reads the data of the current entry of a libarchive reader (the reader stays owned by its creator).
final class ArchiveEntrySource: ByteSource {
    private let archive: OpaquePointer
    private let name: String

    init(archive: OpaquePointer, name: String) {
        self.archive = archive
        self.name = name
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = archive_read_data(archive, buffer.baseAddress, buffer.count)
        if n < 0 { throw ArchiveError(archive, context: name) }
        return n
    }
}

/// A libarchive failure, with libarchive's own message.
struct ArchiveError: Error, CustomStringConvertible {
    let message: String
    init(_ archive: OpaquePointer?, context: String) {
        let text = archive.flatMap { archive_error_string($0) }.map { String(cString: $0) } ?? "unknown libarchive error"
        message = "\(context): \(text)"
    }
    init(message: String) { self.message = message }
    var description: String { message }
}

/// Reads all of `source`, refusing more than `limit` bytes.
func readAll(_ source: ByteSource, limit: Int, name: String) throws -> [UInt8] {
    var out: [UInt8] = []
    let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    defer { chunk.deallocate() }
    while true {
        let n = try source.read(into: chunk)
        if n == 0 { return out }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        if out.count > limit { throw ImageError.malformedJSON(blob: name, problem: "larger than \(limit) bytes, too large for a manifest, index or config") }
    }
}

/// libarchive's entry types (`AE_IF*`, macros with casts that Swift does not import).
enum EntryType {
    static let ifreg: mode_t = 0o100000
    static let iflnk: mode_t = 0o120000
    static let ifsock: mode_t = 0o140000
    static let ifchr: mode_t = 0o020000
    static let ifblk: mode_t = 0o060000
    static let ifdir: mode_t = 0o040000
    static let ififo: mode_t = 0o010000
}
