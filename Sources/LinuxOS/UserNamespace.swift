import CShims
#if canImport(Glibc)
import Glibc
#endif

/// One line of a user namespace's `uid_map` or `gid_map`: ids `inside ..< inside+count` in the namespace are
/// ids `outside ..< outside+count` in its parent.
public struct IDMapEntry: Sendable, Hashable, Codable {
    public var inside: UInt32
    public var outside: UInt32
    public var count: UInt32

    public init(inside: UInt32, outside: UInt32, count: UInt32) {
        self.inside = inside; self.outside = outside; self.count = count
    }
}

/// User namespaces from the outside: writing a process's id maps, and namespaces made only to carry a mapping
/// (for idmapped mounts).
public enum UserNamespace {
    /// The text the kernel expects in uid_map/gid_map: one `inside outside count` line per entry.
    public static func mapText(_ entries: [IDMapEntry]) -> String {
        entries.map { "\($0.inside) \($0.outside) \($0.count)\n" }.joined()
    }

    /// Writes the id maps of `pid`, which must have just created its user namespace and be waiting. Each map
    /// goes in one write(2), as the kernel requires (a map can be written once). `denySetgroups` writes
    /// "deny" to /proc/PID/setgroups first: needed when the writer lacks CAP_SETGID over the parent namespace
    /// (an unprivileged runtime), and harmless otherwise only if the container never calls setgroups(2).
    public static func writeMaps(pid: pid_t, uid: [IDMapEntry], gid: [IDMapEntry], denySetgroups: Bool) throws {
        if denySetgroups {
            let path = "/proc/\(pid)/setgroups"
            let fd = try FileDescriptor.open(path, O_WRONLY)
            try fd.writeAll("deny", path: path)
        }
        for (file, entries) in [("uid_map", uid), ("gid_map", gid)] {
            let path = "/proc/\(pid)/\(file)"
            let fd = try FileDescriptor.open(path, O_WRONLY)
            let text = mapText(entries)
            let n = try text.withCString { p in try sys("write", path) { Glibc.write(fd.raw, p, strlen(p)) } }
            if n != text.utf8.count {
                throw SystemError(operation: "write", path: path, errno: EIO, hint: "the kernel took only \(n) of \(text.utf8.count) bytes of the map")
            }
        }
    }

    /// The id maps of `pid` as the kernel reports them (from `/proc/PID/uid_map` or `gid_map`).
    public static func readMap(pid: pid_t, _ file: String) throws -> [IDMapEntry] {
        let path = "/proc/\(pid)/\(file)"
        let fd = try FileDescriptor.open(path, O_RDONLY)
        return parseMap(String(decoding: try fd.readAll(limit: 1 << 16, path: path), as: UTF8.self))
    }

    /// Parses the text of a uid_map/gid_map (columns separated by any run of spaces).
    public static func parseMap(_ text: String) -> [IDMapEntry] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 3, let a = UInt32(f[0]), let b = UInt32(f[1]), let c = UInt32(f[2]) else { return nil }
            return IDMapEntry(inside: a, outside: b, count: c)
        }
    }

    /// A new user namespace carrying `uid`/`gid` maps and nothing else, as an fd of its `ns/user` file: what
    /// `MOUNT_ATTR_IDMAP` takes. A short-lived child holds the namespace while its maps are written and the fd
    /// is opened; the fd keeps the namespace alive after the child is gone.
    public static func make(uid: [IDMapEntry], gid: [IDMapEntry]) throws -> FileDescriptor {
        var release: Int32 = -1
        let pid = try sys("clone", "CLONE_NEWUSER", hint: "user namespaces may be disabled (kernel.unprivileged_userns_clone, user.max_user_namespaces)") {
            bh_spawn_userns_holder(&release)
        }
        defer {
            _ = Glibc.close(release)  // the holder's read(2) returns and it exits
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        try writeMaps(pid: pid, uid: uid, gid: gid, denySetgroups: geteuid() != 0)
        let path = "/proc/\(pid)/ns/user"
        return FileDescriptor(adopting: try sys("open", path) { bh_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0) })
    }
}

extension Mount {
    /// A detached copy of the mount at `path` (the whole tree below it when `recursive`) with the ids it shows
    /// shifted by the maps of `userNamespace` (an idmapped mount): a file stored as uid N appears as the
    /// namespace's outside id for N, and writes through it store the reverse. The filesystem must support
    /// idmapped mounts (ext4, xfs, btrfs, tmpfs, …; not overlayfs itself). Attach it with ``attach(_:at:)``.
    public static func idmappedClone(of path: String, userNamespace: borrowing FileDescriptor,
                                     recursive: Bool = false) throws -> FileDescriptor {
        let tree = FileDescriptor(adopting: try sys("open_tree", path) { bh_open_tree_clone(AT_FDCWD, path, recursive ? 1 : 0) })
        try sys("mount_setattr MOUNT_ATTR_IDMAP", path, hint: idmapHint) {
            bh_mount_setattr_idmap(tree.raw, userNamespace.raw, recursive ? 1 : 0)
        }
        return tree
    }

    /// Attaches a detached mount tree (from ``idmappedClone(of:userNamespace:recursive:)``) at `target`.
    public static func attach(_ tree: borrowing FileDescriptor, at target: String) throws {
        try sys("move_mount", target) { bh_move_mount_to(tree.raw, AT_FDCWD, target) }
    }

    static let idmapHint = "the file system or kernel does not support idmapped mounts here (Linux 5.12+ and a file system that allows them)"
}
