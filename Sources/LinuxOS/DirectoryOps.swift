import CShims
#if canImport(Glibc)
import Glibc
#endif

/// `*at()` operations relative to a directory fd. `name` is resolved by the kernel relative to `self`;
/// callers that handle untrusted names open the parent with ``FileDescriptor/openAt2(_:_:mode:resolve:)``
/// (RESOLVE_IN_ROOT / RESOLVE_BENEATH) first and pass a single path component here.
extension FileDescriptor {
    /// Opens a directory below this one; `..`, absolute paths and symlinks stay inside `self`.
    public func openDirectory(_ path: String, resolve: UInt64 = BH_RESOLVE_IN_ROOT) throws -> FileDescriptor {
        try openAt2(path, O_RDONLY | O_DIRECTORY, resolve: resolve)
    }

    public func mkdir(_ name: String, mode: mode_t = 0o755) throws {
        try sys("mkdirat", name) { mkdirat(raw, name, mode) }
    }

    /// mkdirat that accepts an existing directory.
    public func mkdirIfMissing(_ name: String, mode: mode_t = 0o755) throws {
        if mkdirat(raw, name, mode) == 0 { return }
        let code = bh_errno()
        if code == EEXIST { return }
        if code == EINTR { return try mkdirIfMissing(name, mode: mode) }
        throw SystemError(operation: "mkdirat", path: name, errno: code)
    }

    public func unlink(_ name: String, directory: Bool = false) throws {
        try sys("unlinkat", name) { unlinkat(raw, name, directory ? AT_REMOVEDIR : 0) }
    }

    public func rename(_ from: String, to: String, inDirectory targetRaw: Int32? = nil, flags: UInt32 = 0) throws {
        let targetFD = targetRaw ?? raw
        try sys("renameat2", "\(from) -> \(to)") { bh_renameat2(raw, from, targetFD, to, flags) }
    }

    public func symlink(_ name: String, target: String) throws {
        try sys("symlinkat", name) { symlinkat(target, raw, name) }
    }

    public func readlink(_ name: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try sys("readlinkat", name) { readlinkat(raw, name, &buffer, buffer.count - 1) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func mknod(_ name: String, mode: mode_t, device: dev_t = 0) throws {
        try sys("mknodat", name) { mknodat(raw, name, mode, device) }
    }

    public func link(_ existing: String, to name: String, inDirectory targetRaw: Int32? = nil) throws {
        let targetFD = targetRaw ?? raw
        try sys("linkat", name) { linkat(raw, existing, targetFD, name, 0) }
    }

    public func chown(_ name: String, uid: uid_t, gid: gid_t, followSymlinks: Bool = false) throws {
        try sys("fchownat", name) { fchownat(raw, name, uid, gid, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW) }
    }

    public func chmod(_ name: String, mode: mode_t) throws {
        try sys("fchmodat", name) { fchmodat(raw, name, mode, 0) }
    }

    /// lstat-like stat of `name` relative to this directory (does not follow a final symlink by default).
    public func stat(_ name: String, followSymlinks: Bool = false) throws -> stat {
        var st = Glibc.stat()
        try sys("fstatat", name) { fstatat(raw, name, &st, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW) }
        return st
    }

    /// Whether `name` exists (without following a final symlink).
    public func exists(_ name: String) -> Bool {
        var st = Glibc.stat()
        return fstatat(raw, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// The names in this directory, without `.` and `..`. Reads through a duplicate fd, so `self` is untouched.
    public func entries() throws -> [String] {
        let dupFD = try sys("dup", nil) { bh_fcntl_int(raw, F_DUPFD_CLOEXEC, 0) }
        guard let dir = fdopendir(dupFD) else {
            let code = bh_errno()
            _ = Glibc.close(dupFD)
            throw SystemError(operation: "fdopendir", path: nil, errno: code)
        }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes `name` and everything below it, never following symlinks and never leaving `self`.
    public func removeTree(_ name: String) throws {
        let st: stat
        do { st = try stat(name) } catch let error as SystemError where error.errno == ENOENT { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            let child = try openAt2(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, resolve: BH_RESOLVE_BENEATH | BH_RESOLVE_NO_SYMLINKS)
            for entry in try child.entries() { try child.removeTree(entry) }
            try unlink(name, directory: true)
        } else {
            try unlink(name)
        }
    }
}
