import CArchive
import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Where an import reads from: an OCI layout directory, or a tar archive (OCI archive or docker-archive).
/// Paths are relative names inside the source (`index.json`, `blobs/sha256/…`, `manifest.json`).
protocol ImageSource: AnyObject {
    var label: String { get }
    /// The whole (small) file at `path`, or nil when the source has no such file.
    func readSmall(_ path: String, limit: Int) throws -> [UInt8]?
    /// Whether the source has a file at `path`.
    func has(_ path: String) -> Bool
    /// Streams each of `paths` once, in whatever order suits the source, to `body`.
    func stream(_ paths: [String], _ body: (String, ByteSource) throws -> Void) throws
}

/// An OCI image layout directory, read through a directory fd with RESOLVE_IN_ROOT.
final class LayoutDirectorySource: ImageSource {
    let label: String
    private let dir: Int32

    init(path: String) throws {
        label = path
        dir = try FileDescriptor.open(path, O_RDONLY | O_DIRECTORY).take()
    }

    deinit { _ = Glibc.close(dir) }

    private func open(_ path: String) throws -> FileDescriptor? {
        let fd = bh_openat2(dir, path, UInt64(O_RDONLY | O_CLOEXEC), 0, BH_RESOLVE_IN_ROOT_VALUE | BH_RESOLVE_NO_MAGICLINKS_VALUE)
        if fd < 0 {
            let code = bh_errno()
            if code == ENOENT { return nil }
            throw SystemError(operation: "openat2", path: "\(label)/\(path)", errno: code)
        }
        return FileDescriptor(adopting: fd)
    }

    func readSmall(_ path: String, limit: Int) throws -> [UInt8]? {
        guard let fd = try open(path) else { return nil }
        return try readAll(FileByteSource(fd, path: path), limit: limit, name: path)
    }

    func has(_ path: String) -> Bool {
        bh_openat2(dir, path, UInt64(O_RDONLY | O_CLOEXEC), 0, BH_RESOLVE_IN_ROOT_VALUE).map { fd in
            if fd >= 0 { _ = Glibc.close(fd); return true }
            return false
        }
    }

    func stream(_ paths: [String], _ body: (String, ByteSource) throws -> Void) throws {
        for path in paths {
            guard let fd = try open(path) else { throw ImageError.missingBlob(path, in: label) }
            try body(path, FileByteSource(fd, path: "\(label)/\(path)"))
        }
    }
}

private extension Int32 {
    func map<T>(_ body: (Int32) -> T) -> T { body(self) }
}

/// Serves bytes held in memory.
final class MemoryByteSource: ByteSource {
    private let bytes: [UInt8]
    private var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - offset)
        if n > 0 {
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            offset += n
        }
        return n
    }
}

/// A tar archive of an image (OCI archive or docker-archive), read through libarchive: nothing is extracted
/// to host paths. A first pass lists the entries and keeps the small ones (index, manifests, configs) in memory;
/// `stream` makes one more pass for the large ones (layers), handing each entry's data straight to the unpacker.
final class TarArchiveSource: ImageSource {
    let label: String
    private let path: String
    private var small: [String: [UInt8]] = [:]
    private var regular: Set<String> = []
    private var aliases: [String: String] = [:]

    static let smallLimit = 1 << 20
    static let smallTotal = 64 << 20

    init(path: String) throws {
        self.path = path
        label = path
        var held = 0
        try Self.walk(path) { name, entry, archive in
            if let link = archive_entry_hardlink(entry) {
                aliases[name] = Self.normalize(String(cString: link))
                return
            }
            switch archive_entry_filetype(entry) {
            case EntryType.iflnk:
                if let target = archive_entry_symlink(entry) {
                    let dir = name.split(separator: "/").dropLast().joined(separator: "/")
                    aliases[name] = Self.normalize(dir.isEmpty ? String(cString: target) : dir + "/" + String(cString: target))
                }
            case EntryType.ifreg:
                regular.insert(name)
                let size = archive_entry_size(entry)
                if size <= Self.smallLimit, held + Int(size) <= Self.smallTotal {
                    small[name] = try readAll(ArchiveEntrySource(archive: archive, name: "\(path): \(name)"), limit: Self.smallLimit, name: name)
                    held += Int(size)
                }
            default:
                break
            }
        }
    }

    /// Whether the file at `path` looks like a tar archive (libarchive can read a tar header from it).
    static func isTar(_ path: String) -> Bool {
        guard let a = archive_read_new() else { return false }
        defer { archive_read_free(a) }
        archive_read_support_format_tar(a)
        guard archive_read_open_filename(a, path, 1 << 16) == ARCHIVE_OK else { return false }
        var entry: OpaquePointer?
        return archive_read_next_header(a, &entry) == ARCHIVE_OK
    }

    /// Normalizes a name inside the archive: no leading `/` or `./`, `.` dropped, `..` applied lexically.
    static func normalize(_ name: String) -> String {
        var out: [Substring] = []
        for part in name.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = out.popLast(); continue }
            out.append(part)
        }
        return out.joined(separator: "/")
    }

    private func resolve(_ name: String) -> String {
        var current = Self.normalize(name)
        var hops = 0
        while let next = aliases[current], hops < 16 { current = next; hops += 1 }
        return current
    }

    private static func walk(_ path: String, _ body: (String, OpaquePointer, OpaquePointer) throws -> Void) throws {
        guard let a = archive_read_new() else { throw ArchiveError(message: "libarchive: out of memory") }
        defer { archive_read_free(a) }
        archive_read_support_format_tar(a)
        guard archive_read_open_filename(a, path, 1 << 20) == ARCHIVE_OK else { throw ArchiveError(a, context: path) }
        var entry: OpaquePointer?
        while true {
            let r = archive_read_next_header(a, &entry)
            if r == ARCHIVE_EOF { return }
            if r < ARCHIVE_WARN { throw ArchiveError(a, context: path) }
            try body(normalize(String(cString: archive_entry_pathname(entry!))), entry!, a)
        }
    }

    func readSmall(_ name: String, limit: Int) throws -> [UInt8]? {
        let real = resolve(name)
        if let bytes = small[real] {
            if bytes.count > limit { throw ImageError.malformedJSON(blob: name, problem: "larger than \(limit) bytes") }
            return bytes
        }
        guard regular.contains(real) else { return nil }
        var result: [UInt8]?
        try stream([name]) { _, source in result = try readAll(source, limit: limit, name: name) }
        return result
    }

    func has(_ name: String) -> Bool { regular.contains(resolve(name)) }

    func stream(_ paths: [String], _ body: (String, ByteSource) throws -> Void) throws {
        var wanted: [String: [String]] = [:]
        for p in paths {
            let real = resolve(p)
            guard regular.contains(real) else { throw ImageError.missingBlob(p, in: label) }
            if let bytes = small[real] { try body(p, MemoryByteSource(bytes)); continue }
            wanted[real, default: []].append(p)
        }
        if wanted.isEmpty { return }
        var done = 0
        try Self.walk(path) { name, entry, archive in
            guard let requested = wanted[name], archive_entry_filetype(entry) == EntryType.ifreg, archive_entry_hardlink(entry) == nil else { return }
            wanted[name] = nil
            try body(requested[0], ArchiveEntrySource(archive: archive, name: "\(path): \(name)"))
            done += 1
        }
        if let missing = wanted.values.first { throw ImageError.missingBlob(missing[0], in: label) }
    }
}
