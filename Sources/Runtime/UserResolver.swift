import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Resolves a `user[:group]` string (names or numbers, as Docker and runc take them) against a container's own
/// /etc/passwd and /etc/group, read through a directory fd of its root (openat2 RESOLVE_IN_ROOT: a symlink in
/// the image cannot point the lookup at the host's files).
public struct ResolvedUser: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var additionalGids: [UInt32]
    public var home: String?
    public init(uid: UInt32, gid: UInt32, additionalGids: [UInt32] = [], home: String? = nil) {
        self.uid = uid; self.gid = gid; self.additionalGids = additionalGids; self.home = home
    }
}

public enum UserResolver {
    public static func resolve(_ spec: String, root: borrowing FileDescriptor) throws -> ResolvedUser {
        let passwd = read(root, "/etc/passwd")
        let group = read(root, "/etc/group")
        return try resolve(spec, passwd: passwd, group: group)
    }

    static func read(_ root: borrowing FileDescriptor, _ path: String) -> String {
        guard let fd = try? root.openAt2(path, O_RDONLY, resolve: BH_RESOLVE_IN_ROOT_VALUE),
              let bytes = try? fd.readAll(limit: 16 << 20) else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The rule (Docker's): `user` or `uid`, optionally `:group` or `:gid`. A name must exist in the image's
    /// files; a number need not. Without a group, the user's primary group from /etc/passwd (0 when the uid is
    /// not listed). Supplementary groups: every group in /etc/group that lists the user's name.
    public static func resolve(_ spec: String, passwd: String, group: String) throws -> ResolvedUser {
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let userPart = parts[0].isEmpty ? "0" : parts[0]
        let groupPart = parts.count > 1 ? parts[1] : nil
        let users = passwd.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }.filter { $0.count >= 7 }
        let groups = group.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }.filter { $0.count >= 4 }
        var uid: UInt32
        var gid: UInt32 = 0
        var name: String?
        var home: String?
        if let n = UInt32(userPart) {
            uid = n
            if let entry = users.first(where: { UInt32($0[2]) == n }) {
                gid = UInt32(entry[3]) ?? 0; name = entry[0]; home = entry[5]
            }
        } else if let entry = users.first(where: { $0[0] == userPart }) {
            guard let u = UInt32(entry[2]) else { throw RuntimeError("user \"\(userPart)\" has a malformed uid in the image's /etc/passwd") }
            uid = u; gid = UInt32(entry[3]) ?? 0; name = entry[0]; home = entry[5]
        } else {
            throw RuntimeError("unable to find user \(userPart): no matching entries in the image's /etc/passwd (use a numeric uid, or add the user to the image)")
        }
        if let groupPart, !groupPart.isEmpty {
            if let g = UInt32(groupPart) { gid = g }
            else if let entry = groups.first(where: { $0[0] == groupPart }), let g = UInt32(entry[2]) { gid = g }
            else { throw RuntimeError("unable to find group \(groupPart): no matching entries in the image's /etc/group") }
        }
        var extra: [UInt32] = []
        if let name {
            for entry in groups where entry[3].split(separator: ",").contains(Substring(name)) {
                if let g = UInt32(entry[2]), g != gid, !extra.contains(g) { extra.append(g) }
            }
        }
        return ResolvedUser(uid: uid, gid: gid, additionalGids: extra, home: home)
    }
}
