import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Metadata, positioned I/O and durability helpers on fds and `*at()` names.
extension FileDescriptor {
    /// fchown(2) on this fd.
    public func chown(uid: uid_t, gid: gid_t, path: String? = nil) throws {
        try sys("fchown", path) { fchown(raw, uid, gid) }
    }

    /// fchmod(2) on this fd (call after ``chown(uid:gid:path:)``: a chown clears setuid/setgid bits).
    public func chmod(mode: mode_t, path: String? = nil) throws {
        try sys("fchmod", path) { fchmod(raw, mode) }
    }

    /// futimens(2): sets access and modification times of this fd.
    public func setTimes(access: (Int64, Int64), modification: (Int64, Int64), path: String? = nil) throws {
        try sys("futimens", path) { bh_futimens(raw, access.0, access.1, modification.0, modification.1) }
    }

    /// utimensat(2) on `name` relative to this directory, never following a final symlink.
    public func setTimes(_ name: String, access: (Int64, Int64), modification: (Int64, Int64)) throws {
        try sys("utimensat", name) {
            bh_utimensat(raw, name, access.0, access.1, modification.0, modification.1, AT_SYMLINK_NOFOLLOW)
        }
    }

    /// fsetxattr(2) on this fd.
    public func setXattr(_ name: String, value: [UInt8], path: String? = nil) throws {
        try sys("fsetxattr \(name)", path) {
            value.withUnsafeBytes { bh_fsetxattr(raw, name, $0.baseAddress, $0.count, 0) }
        }
    }

    /// fgetxattr(2) on this fd; nil when the attribute is not set.
    public func getXattr(_ name: String, path: String? = nil) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { bh_fgetxattr(raw, name, $0.baseAddress, $0.count) }
        if n < 0 {
            let code = bh_errno()
            if code == ENODATA { return nil }
            throw SystemError(operation: "fgetxattr \(name)", path: path, errno: code)
        }
        return Array(buffer[0..<n])
    }

    /// pwrite(2) of all of `bytes` at `offset`.
    public func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String? = nil) throws {
        var done = 0
        while done < bytes.count {
            let n = try sys("pwrite", path) { pwrite(raw, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
            done += n
        }
    }

    /// ftruncate(2).
    public func truncate(to size: Int64, path: String? = nil) throws {
        try sys("ftruncate", path) { ftruncate(raw, off_t(size)) }
    }

    /// syncfs(2): flushes the whole file system holding this fd (one call instead of an fsync per file).
    public func syncFilesystem(path: String? = nil) throws {
        try sys("syncfs", path) { bh_syncfs(raw) }
    }

    /// A second, independent owner of the same open file.
    public func duplicate(path: String? = nil) throws -> FileDescriptor {
        FileDescriptor(adopting: try sys("dup", path) { bh_fcntl_int(raw, F_DUPFD_CLOEXEC, 0) })
    }

    /// Creates a regular file `name` in this directory, writes `bytes`, fsyncs it, renames it over `target`
    /// and fsyncs the directory: readers see either the old or the new content, never a mix, even after a crash.
    public func writeFileAtomically(_ target: String, bytes: [UInt8], mode: mode_t = 0o644) throws {
        let temporary = ".\(target).\(getpid()).tmp"
        let fd = try openAt(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: mode)
        do {
            try fd.writeAll(bytes, path: temporary)
            try fd.fsync(path: temporary)
            try fd.close(path: temporary)
            try rename(temporary, to: target)
            try fsync()
        } catch {
            _ = unlinkat(raw, temporary, 0)
            throw error
        }
    }
}

/// Whether `fd` is a terminal.
public func isTerminal(_ fd: Int32) -> Bool { bh_isatty(fd) == 1 }

/// makedev(3).
public func makeDevice(major: UInt32, minor: UInt32) -> dev_t { dev_t(bh_makedev(major, minor)) }

/// lgetxattr(2) on a path (not following a final symlink); nil when unset or unreadable.
public func linkXattr(_ path: String, _ name: String) -> [UInt8]? {
    var buffer = [UInt8](repeating: 0, count: 65536)
    let n = buffer.withUnsafeMutableBytes { bh_lgetxattr(path, name, $0.baseAddress, $0.count) }
    return n < 0 ? nil : Array(buffer[0..<n])
}
