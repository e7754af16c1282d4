import CArchive
import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Applies tar entries to a snapshot directory, treating every name in the layer as hostile.
///
/// Every file-system call is relative to a directory fd below the snapshot root, opened with `openat2`
/// `RESOLVE_IN_ROOT` (so `..`, absolute symlinks and symlink chains resolve inside the snapshot), and names passed
/// to the `*at()` calls are single components. New files are created with `O_EXCL | O_NOFOLLOW` after whatever was
/// at the name is removed, so nothing is ever written through a symlink. `..` components are refused outright;
/// a leading `/` is dropped (as tar does). OCI whiteouts become overlayfs whiteouts (char 0:0) and opaque markers
/// (`trusted.overlay.opaque=y`).
final class SnapshotWriter {
    private let root: Int32
    private let layer: Digest
    private var cache: [String: Int32] = [:]
    private var directoryTimes: [(path: [String], access: (Int64, Int64), modification: (Int64, Int64))] = []
    private let resolve: UInt64 = BH_RESOLVE_IN_ROOT_VALUE | BH_RESOLVE_NO_MAGICLINKS_VALUE

    /// fsync every regular file as it is closed (for small layers, instead of one syncfs of the whole file system).
    private let fsyncFiles: Bool

    init(root: Int32, layer: Digest, fsyncFiles: Bool = false) {
        self.root = root
        self.layer = layer
        self.fsyncFiles = fsyncFiles
    }

    deinit { closeCache() }

    func closeCache() {
        for fd in cache.values { _ = Glibc.close(fd) }
        cache.removeAll(keepingCapacity: true)
    }

    // MARK: entries

    func apply(entry: OpaquePointer, archive: OpaquePointer) throws {
        guard let rawPath = archive_entry_pathname(entry) else { throw hostile("<unnamed>", "the entry has no name") }
        // Names are handled as Swift strings; a name that is not UTF-8 would be silently altered, so it is refused.
        guard let path = String(validatingCString: rawPath) else {
            throw ImageError.badLayer(layer: layer, problem: "entry \"\(String(cString: rawPath))\" has a name that is not valid UTF-8, which Bulkhead does not support yet")
        }
        do {
            try applyChecked(entry: entry, archive: archive, path: path)
        } catch let error as SystemError {
            throw ImageError.badLayer(layer: layer, problem: "entry \"\(path)\": \(error)")
        }
    }

    private func applyChecked(entry: OpaquePointer, archive: OpaquePointer, path: String) throws {
        var components = try split(path)
        let type = archive_entry_filetype(entry)
        let hardlink = archive_entry_hardlink(entry)
        guard let last = components.popLast() else {
            // "./": the layer's root directory itself.
            guard hardlink == nil, type == EntryType.ifdir else { throw hostile(path, "replaces the layer root with a non-directory") }
            try sys("fchown", path) { fchown(root, uid(entry), gid(entry)) }
            try sys("fchmod", path) { fchmod(root, perm(entry)) }
            directoryTimes.append(([], accessTime(entry), modificationTime(entry)))
            return
        }

        // OCI whiteouts.
        if last.hasPrefix(".wh.") {
            let parent = try openParent(components, path: path)
            if last == ".wh..wh..opq" {
                try sys("fsetxattr trusted.overlay.opaque", path) { bh_fsetxattr(parent, "trusted.overlay.opaque", "y", 1, 0) }
            } else if last.hasPrefix(".wh..wh.") {
                // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no meaning for overlayfs.
            } else {
                let name = String(last.dropFirst(4))
                guard !name.isEmpty, name != ".", name != ".." else { throw hostile(path, "whiteout of an invalid name") }
                try removeExisting(parent, name, path: path)
                try sys("mknodat", path) { mknodat(parent, name, S_IFCHR, makeDevice(major: 0, minor: 0)) }
            }
            return
        }

        let parent = try openParent(components, path: path)

        if let hardlink {
            guard let targetText = String(validatingCString: hardlink) else {
                throw ImageError.badLayer(layer: layer, problem: "entry \"\(path)\": hard link target is not valid UTF-8, which Bulkhead does not support yet")
            }
            var target = try split(targetText)
            guard let targetName = target.popLast() else { throw hostile(path, "hard link to the layer root") }
            let targetParent: Int32
            do { targetParent = try openParent(target, path: path, create: false) } catch is SystemError {
                throw hostile(path, "hard link target \"\(targetText)\" is not in this layer")
            }
            guard (try? FileDescriptor.statAt(targetParent, targetName)) != nil else {
                throw hostile(path, "hard link target \"\(targetText)\" is not in this layer")
            }
            let same = (try? FileDescriptor.statAt(targetParent, targetName)).map { t in
                (try? FileDescriptor.statAt(parent, last)).map { $0.st_ino == t.st_ino && $0.st_dev == t.st_dev } ?? false
            } ?? false
            if same { return }
            try removeExisting(parent, last, path: path)
            // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
            try sys("linkat", path) { linkat(targetParent, targetName, parent, last, 0) }
            return
        }

        switch type {
        case EntryType.ifreg:
            try writeFile(entry: entry, archive: archive, parent: parent, name: last, path: path)
        case EntryType.ifdir:
            if mkdirat(parent, last, 0o700) != 0 {
                let code = bh_errno()
                guard code == EEXIST else { throw SystemError(operation: "mkdirat", path: path, errno: code) }
                let st = try FileDescriptor.statAt(parent, last)
                if st.st_mode & S_IFMT != S_IFDIR {
                    try removeExisting(parent, last, path: path)
                    try sys("mkdirat", path) { mkdirat(parent, last, 0o700) }
                }
            }
            try sys("fchownat", path) { fchownat(parent, last, uid(entry), gid(entry), AT_SYMLINK_NOFOLLOW) }
            try sys("fchmodat", path) { fchmodat(parent, last, perm(entry), 0) }
            if archive_entry_xattr_count(entry) > 0 {
                let fd = try sys("openat", path) { bh_openat(parent, last, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0) }
                defer { _ = Glibc.close(fd) }
                try applyXattrs(entry: entry, fd: fd, path: path)
            }
            directoryTimes.append((components + [last], accessTime(entry), modificationTime(entry)))
        case EntryType.iflnk:
            guard let target = archive_entry_symlink(entry) else { throw hostile(path, "symlink without a target") }
            try removeExisting(parent, last, path: path)
            // The target is stored as written; it is resolved later only inside the container's root.
            try sys("symlinkat", path) { symlinkat(target, parent, last) }
            try sys("fchownat", path) { fchownat(parent, last, uid(entry), gid(entry), AT_SYMLINK_NOFOLLOW) }
            try setTimes(parent, last, entry: entry, path: path)
        case EntryType.ifchr, EntryType.ifblk, EntryType.ififo:
            try removeExisting(parent, last, path: path)
            let device = type == EntryType.ififo ? 0 : makeDevice(major: UInt32(archive_entry_rdevmajor(entry)), minor: UInt32(archive_entry_rdevminor(entry)))
            try sys("mknodat", path) { mknodat(parent, last, mode_t(type) | perm(entry), device) }
            try sys("fchownat", path) { fchownat(parent, last, uid(entry), gid(entry), AT_SYMLINK_NOFOLLOW) }
            try sys("fchmodat", path) { fchmodat(parent, last, perm(entry), 0) }
            try setTimes(parent, last, entry: entry, path: path)
        case EntryType.ifsock:
            return  // a socket cannot be carried by a tar; nothing to create
        default:
            throw hostile(path, "unsupported entry type \(type)")
        }
    }

    private func writeFile(entry: OpaquePointer, archive: OpaquePointer, parent: Int32, name: String, path: String) throws {
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        var fd = bh_openat(parent, name, flags, 0o600)
        if fd < 0 && bh_errno() == EEXIST {
            try removeExisting(parent, name, path: path)
            fd = bh_openat(parent, name, flags, 0o600)
        }
        if fd < 0 { throw SystemError(operation: "openat", path: path, errno: bh_errno()) }
        defer { _ = Glibc.close(fd) }
        var end: Int64 = 0
        while true {
            var block: UnsafeRawPointer?
            var size = 0
            var offset: la_int64_t = 0
            let r = archive_read_data_block(archive, &block, &size, &offset)
            if r == ARCHIVE_EOF { break }
            if r < ARCHIVE_WARN { throw ArchiveError(archive, context: "layer \(layer): entry \"\(path)\"") }
            guard let block, size > 0 else { continue }
            var done = 0
            while done < size {
                let n = try sys("pwrite", path) { pwrite(fd, block + done, size - done, off_t(offset) + off_t(done)) }
                done += n
            }
            end = max(end, Int64(offset) + Int64(size))
        }
        if archive_entry_size_is_set(entry) != 0, archive_entry_size(entry) > end {
            try sys("ftruncate", path) { ftruncate(fd, off_t(archive_entry_size(entry))) }
        }
        try sys("fchown", path) { fchown(fd, uid(entry), gid(entry)) }
        try sys("fchmod", path) { fchmod(fd, perm(entry)) }   // after fchown, which clears setuid/setgid
        if archive_entry_xattr_count(entry) > 0 { try applyXattrs(entry: entry, fd: fd, path: path) }
        let a = accessTime(entry), m = modificationTime(entry)
        try sys("futimens", path) { bh_futimens(fd, a.0, a.1, m.0, m.1) }
        if fsyncFiles { try sys("fsync", path) { fsync(fd) } }
    }

    private func applyXattrs(entry: OpaquePointer, fd: Int32, path: String) throws {
        archive_entry_xattr_reset(entry)
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK {
            guard let name else { continue }
            let key = String(cString: name)
            // A layer must not forge overlayfs metadata (redirects, metacopy, opaque markers other than whiteouts).
            if key.hasPrefix("trusted.overlay.") { continue }
            try sys("fsetxattr \(key)", path) { bh_fsetxattr(fd, name, value, size, 0) }
        }
    }

    /// Directory times are set last (creating entries inside a directory changes its mtime), deepest first.
    func finish() throws {
        closeCache()
        if fsyncFiles { try sys("fsync", ".") { fsync(root) } }
        for item in directoryTimes.reversed() {
            if item.path.isEmpty {
                try sys("futimens", ".") { bh_futimens(root, item.access.0, item.access.1, item.modification.0, item.modification.1) }
                continue
            }
            var comps = item.path
            let name = comps.removeLast()
            let joined = item.path.joined(separator: "/")
            guard let parent = try? openParent(comps, path: joined, create: false) else { continue }
            if bh_utimensat(parent, name, item.access.0, item.access.1, item.modification.0, item.modification.1, AT_SYMLINK_NOFOLLOW) != 0,
               bh_errno() != ENOENT {
                throw SystemError(operation: "utimensat", path: joined, errno: bh_errno())
            }
        }
        closeCache()
    }

    // MARK: paths

    /// The components of an entry name: empty and `.` components dropped, a leading `/` ignored, `..` refused.
    private func split(_ path: String) throws -> [String] {
        var out: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { throw hostile(path, "contains a \"..\" component") }
            out.append(String(part))
        }
        return out
    }

    /// The directory `components` below the root, created (0755, root-owned) where missing. The fd is cached and
    /// owned by the cache.
    private func openParent(_ components: [String], path: String, create: Bool = true) throws -> Int32 {
        if components.isEmpty { return root }
        let key = components.joined(separator: "/")
        if let fd = cache[key] { return fd }
        var fd = bh_openat2(root, key, UInt64(O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0, resolve)
        if fd < 0 {
            let code = bh_errno()
            guard code == ENOENT, create else {
                if code == ENOTDIR { throw hostile(path, "a parent directory is not a directory") }
                throw SystemError(operation: "openat2", path: key, errno: code)
            }
            // Walk down, creating what is missing; every step resolves inside the root.
            var previous = root
            for i in 0..<components.count {
                let prefix = components[0...i].joined(separator: "/")
                var step = bh_openat2(root, prefix, UInt64(O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0, resolve)
                if step < 0 && bh_errno() == ENOENT {
                    if mkdirat(previous, components[i], 0o755) != 0 && bh_errno() != EEXIST {
                        let code = bh_errno()
                        if previous != root { _ = Glibc.close(previous) }
                        throw SystemError(operation: "mkdirat", path: prefix, errno: code)
                    }
                    step = bh_openat2(root, prefix, UInt64(O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0, resolve)
                }
                let code = bh_errno()
                if previous != root { _ = Glibc.close(previous) }
                if step < 0 {
                    if code == ENOTDIR || code == EEXIST || code == ENOENT { throw hostile(path, "a parent directory is not a directory (\(prefix))") }
                    throw SystemError(operation: "openat2", path: prefix, errno: code)
                }
                previous = step
            }
            fd = previous
        }
        if cache.count >= 256 { closeCache() }
        cache[key] = fd
        return fd
    }

    /// Removes whatever is at `name` (a directory with everything below it), never following symlinks. Cached
    /// directory fds may refer to what was removed, so the cache is dropped.
    private func removeExisting(_ parent: Int32, _ name: String, path: String) throws {
        var st = stat()
        if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            let code = bh_errno()
            if code == ENOENT { return }
            throw SystemError(operation: "fstatat", path: path, errno: code)
        }
        let copy = try sys("dup", path) { bh_fcntl_int(parent, F_DUPFD_CLOEXEC, 0) }
        let owned = FileDescriptor(adopting: copy)
        try owned.removeTree(name)
        closeCache()
    }

    private func setTimes(_ parent: Int32, _ name: String, entry: OpaquePointer, path: String) throws {
        let a = accessTime(entry), m = modificationTime(entry)
        try sys("utimensat", path) { bh_utimensat(parent, name, a.0, a.1, m.0, m.1, AT_SYMLINK_NOFOLLOW) }
    }

    private func hostile(_ entry: String, _ problem: String) -> ImageError {
        .hostileEntry(layer: layer, entry: entry, problem: problem)
    }
}

private func uid(_ entry: OpaquePointer) -> uid_t { uid_t(truncatingIfNeeded: archive_entry_uid(entry)) }
private func gid(_ entry: OpaquePointer) -> gid_t { gid_t(truncatingIfNeeded: archive_entry_gid(entry)) }
private func perm(_ entry: OpaquePointer) -> mode_t { mode_t(archive_entry_perm(entry)) & 0o7777 }
private func modificationTime(_ entry: OpaquePointer) -> (Int64, Int64) {
    (Int64(archive_entry_mtime(entry)), Int64(archive_entry_mtime_nsec(entry)))
}
private func accessTime(_ entry: OpaquePointer) -> (Int64, Int64) {
    archive_entry_atime_is_set(entry) != 0
        ? (Int64(archive_entry_atime(entry)), Int64(archive_entry_atime_nsec(entry))) : modificationTime(entry)
}

extension FileDescriptor {
    static func statAt(_ dir: Int32, _ name: String) throws -> stat {
        var st = Glibc.stat()
        try sys("fstatat", name) { fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) }
        return st
    }

    static func statBorrowed(_ fd: Int32) throws -> stat {
        var st = Glibc.stat()
        try sys("fstat", nil) { fstat(fd, &st) }
        return st
    }
}
