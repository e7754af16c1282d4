import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Container ids `0 ..< size` are host ids `uid ..< uid+size` (and `gid ..< gid+size`): the mapping of a
/// container that runs in its own user namespace.
public struct IDShift: Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt32
    public init(uid: UInt32, gid: UInt32, size: UInt32) { self.uid = uid; self.gid = gid; self.size = size }
}

/// How a container's rootfs was made to belong to its id range.
public enum RootfsShiftMethod: String, Sendable, CaseIterable {
    /// Each shared layer is attached through an idmapped mount (overlayfs on Linux ≥ 5.19 accepts idmapped
    /// layers; an overlay mount itself cannot be idmapped): nothing is copied or rewritten, the layers stay
    /// shared with every other container of the image.
    case idmappedLayers = "idmapped-layers"
    /// Every file of the merged view is chowned into the range. With overlayfs' metacopy only the metadata is
    /// copied up into the container's own upper layer; the shared layers are not touched.
    case chown
}

extension ImageStore {
    /// Makes the prepared rootfs of `containerID` (see ``prepareRootfs(image:containerID:)``) belong to the
    /// id range `shift`: the merged view shows the image's files owned by the range (root's files by `shift.uid`),
    /// and what the container writes lands in its upper layer owned by its host ids. Remounts the overlay, so it
    /// is called before the container starts. `method` forces one way; by default idmapped layers are used
    /// where the kernel and file system allow them, else chown.
    @discardableResult
    public func shiftRootfs(containerID: String, shift: IDShift, method: RootfsShiftMethod? = nil) throws -> RootfsShiftMethod {
        try Self.validateContainerID(containerID)
        guard shift.size > 0 else { throw SystemError(operation: "shift rootfs", path: containerID, errno: EINVAL, hint: "the id range is empty") }
        let base = "\(dataRoot)/rootfs/\(containerID)"
        let merged = base + "/merged"
        return try withLock(.exclusive) {
            let state = try loadState()
            guard let record = state.containers[containerID], try Mount.mountPoints(under: merged).contains(merged) else {
                throw SystemError(operation: "shift rootfs", path: merged, errno: ENOENT, hint: "prepare the container's rootfs first")
            }
            try Mount.unmount(merged)
            // The container's root, an unprivileged host uid, walks the path to its rootfs when it mounts it:
            // `<data-root>/rootfs` becomes traversable (not listable) by everyone, and the container's own
            // directory belongs to the container's root alone (0700), so no other host user can reach it.
            let all = try FileDescriptor.open(dataRoot + "/rootfs", O_RDONLY | O_DIRECTORY)
            let mode = try all.stat(path: dataRoot + "/rootfs").st_mode & 0o7777
            if mode & 0o011 != 0o011 {
                // Containers' directories from before this store held user-namespace containers may be 0711:
                // close them before their parent opens.
                for name in try all.entries() where name != containerID {
                    if let st = try? all.stat(name), st.st_mode & S_IFMT == S_IFDIR, st.st_uid == 0, st.st_mode & 0o077 != 0 {
                        try all.chmod(name, mode: st.st_mode & 0o700)
                    }
                }
                try all.chmod(mode: mode | 0o011, path: dataRoot + "/rootfs")
            }
            try all.chown(containerID, uid: shift.uid, gid: shift.gid)
            try all.chmod(containerID, mode: 0o700)
            let dir = try FileDescriptor.open(base, O_RDONLY | O_DIRECTORY)
            // The root of the merged view comes from the upper directory: it belongs to the container's root.
            try dir.chown("upper", uid: shift.uid, gid: shift.gid)
            if method != .chown {
                do {
                    try mountIdmapped(base: base, directory: dir, diffIDs: record.diffIDs, shift: shift)
                    return .idmappedLayers
                } catch let e as SystemError where method == nil && [EINVAL, EPERM, ENOSYS, EOPNOTSUPP, ENOTSUP].contains(e.errno) {
                    // Fall through to chown, below.
                } catch {
                    try? remountPlain(base: base, diffIDs: record.diffIDs)
                    throw error
                }
            }
            do {
                try mountOverlay(base: base, lowers: plainLowers(base: base, diffIDs: record.diffIDs), metacopy: true)
            } catch let e as SystemError where e.errno == EINVAL {
                // A kernel without CONFIG_OVERLAY_FS_METACOPY: chown then copies whole files up.
                try mountOverlay(base: base, lowers: plainLowers(base: base, diffIDs: record.diffIDs), metacopy: false)
            }
            let root = try FileDescriptor.open(merged, O_RDONLY | O_DIRECTORY)
            try Self.shiftTree(root, shift: shift)
            return .chown
        }
    }

    func plainLowers(base: String, diffIDs: [Digest]) -> [String] {
        let lowers = diffIDs.reversed().map { snapshotPath($0) }
        return lowers.isEmpty ? [base + "/empty"] : lowers
    }

    /// The overlay of `<base>/upper` over `lowers` (top layer first) at `<base>/merged`.
    func mountOverlay(base: String, lowers: [String], metacopy: Bool) throws {
        var options = "lowerdir=\(lowers.map(Self.escapeOverlayPath).joined(separator: ":")),upperdir=\(Self.escapeOverlayPath(base + "/upper")),workdir=\(Self.escapeOverlayPath(base + "/work"))"
        if metacopy { options += ",metacopy=on" }
        guard options.utf8.count < Int(getpagesize()) - 1 else {
            throw SystemError(operation: "mount overlay", path: base + "/merged", errno: E2BIG, hint: "\(lowers.count) layers make overlayfs options longer than a page; use a shorter --data-root")
        }
        try Mount.mount(source: "overlay", target: base + "/merged", type: "overlay", flags: 0, data: options)
    }

    func remountPlain(base: String, diffIDs: [Digest]) throws {
        if try Mount.mountPoints(under: base + "/merged").contains(base + "/merged") { return }
        try mountOverlay(base: base, lowers: plainLowers(base: base, diffIDs: diffIDs), metacopy: false)
    }

    /// Attaches an idmapped clone of every layer at `<base>/lower/N`, mounts the overlay over them, then
    /// detaches them again (overlayfs keeps its own private references to its layers).
    func mountIdmapped(base: String, directory dir: borrowing FileDescriptor, diffIDs: [Digest], shift: IDShift) throws {
        let userns = try UserNamespace.make(uid: [IDMapEntry(inside: 0, outside: shift.uid, count: shift.size)],
                                            gid: [IDMapEntry(inside: 0, outside: shift.gid, count: shift.size)])
        try dir.mkdirIfMissing("lower", mode: 0o700)
        var attached: [String] = []
        defer {
            for point in attached.reversed() { try? Mount.unmount(point, flags: Int32(MNT_DETACH)) }
            try? dir.removeTree("lower")
        }
        var lowers: [String] = []
        for (i, diffID) in diffIDs.reversed().enumerated() {
            let point = "\(base)/lower/\(i)"
            try sys("mkdir", point) { Glibc.mkdir(point, 0o700) }
            let tree = try Mount.idmappedClone(of: snapshotPath(diffID), userNamespace: userns)
            try Mount.attach(tree, at: point)
            attached.append(point)
            lowers.append(point)
        }
        if lowers.isEmpty { lowers = [base + "/empty"] }
        try mountOverlay(base: base, lowers: lowers, metacopy: false)
    }

    /// chowns every entry below (and including) `root` from container ids to host ids, without following
    /// symlinks or leaving the tree. Ids already in the host range are left alone (so a repeated walk, or a hard
    /// link met twice, is not shifted twice); ids outside `0 ..< size` are left as they are (the container sees
    /// them as the overflow id). set-user/group-ID bits, which chown clears, are put back.
    static func shiftTree(_ root: borrowing FileDescriptor, shift: IDShift) throws {
        try shiftEntry(root, ".", shift: shift)
        try shiftChildren(root, shift: shift)
    }

    static func shiftChildren(_ dir: borrowing FileDescriptor, shift: IDShift) throws {
        for name in try dir.entries() {
            let st = try shiftEntry(dir, name, shift: shift)
            if st.st_mode & S_IFMT == S_IFDIR {
                let child = try dir.openAt2(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, resolve: BH_RESOLVE_BENEATH | BH_RESOLVE_NO_SYMLINKS)
                try shiftChildren(child, shift: shift)
            }
        }
    }

    @discardableResult
    static func shiftEntry(_ dir: borrowing FileDescriptor, _ name: String, shift: IDShift) throws -> stat {
        let st = try dir.stat(name)
        func moved(_ id: UInt32, _ start: UInt32) -> UInt32? {
            if id >= start && UInt64(id) < UInt64(start) + UInt64(shift.size) { return nil }   // already shifted
            return id < shift.size ? start + id : nil
        }
        let uid = moved(st.st_uid, shift.uid), gid = moved(st.st_gid, shift.gid)
        guard uid != nil || gid != nil else { return st }
        try dir.chown(name, uid: uid ?? st.st_uid, gid: gid ?? st.st_gid)
        let type = st.st_mode & S_IFMT
        if type != S_IFLNK && st.st_mode & (S_ISUID | S_ISGID) != 0 {
            try dir.chmod(name, mode: st.st_mode & 0o7777)
        }
        return st
    }
}
