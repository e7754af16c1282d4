import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

extension ImageStore {
    /// Prepares the root filesystem of container `containerID`: an overlayfs mount whose lower layers are the
    /// image's layer snapshots (shared by every container of the image) and whose upper and work directories are
    /// the container's own, under `<data-root>/rootfs/<containerID>/`. Returns the absolute path of the merged
    /// directory. The container is recorded as a user of the layers, so `image rm`/`prune` keep them. Calling it
    /// again for a prepared container returns the same path.
    public func prepareRootfs(image: StoredImage, containerID: String) throws -> String {
        try Self.validateContainerID(containerID)
        let manifest = try Digest(parsing: image.manifestDigest)
        let diffIDs = try image.layerDiffIDs.map { try Digest(parsing: $0) }
        let base = "\(dataRoot)/rootfs/\(containerID)"
        let merged = base + "/merged"
        return try withLock(.exclusive) {
            let snapshots = try FileDescriptor.open(snapshotsPath, O_RDONLY | O_DIRECTORY)
            for diffID in diffIDs where !snapshots.exists(diffID.hex) {
                throw ImageError.badLayer(layer: diffID, problem: "its snapshot is missing from \(snapshotsPath); import the image again")
            }
            var state = try loadState()
            if try Mount.mountPoints(under: merged).contains(merged) {
                if let existing = state.containers[containerID], existing.image == manifest { return merged }
                throw ImageError.inUse("root filesystem of container \(containerID)", users: ["a prepared rootfs of another image"])
            }
            state.containers[containerID] = ContainerRecord(image: manifest, diffIDs: diffIDs)
            try saveState(state)

            let rootfs = try FileDescriptor.open(dataRoot + "/rootfs", O_RDONLY | O_DIRECTORY)
            // 0700: only root (or, under --userns auto, the container's root; see shiftRootfs) may enter it.
            try rootfs.mkdirIfMissing(containerID, mode: 0o700)
            let dir = try rootfs.openDirectory(containerID, resolve: BH_RESOLVE_BENEATH_VALUE | BH_RESOLVE_NO_SYMLINKS_VALUE)
            for sub in ["upper", "work", "merged", "empty"] { try dir.mkdirIfMissing(sub, mode: 0o755) }

            // overlayfs: the leftmost lowerdir is the top layer.
            var lowers = diffIDs.reversed().map { Self.escapeOverlayPath(snapshotPath($0)) }
            if lowers.isEmpty { lowers = [Self.escapeOverlayPath(base + "/empty")] }
            let options = "lowerdir=\(lowers.joined(separator: ":")),upperdir=\(Self.escapeOverlayPath(base + "/upper")),workdir=\(Self.escapeOverlayPath(base + "/work"))"
            guard options.utf8.count < Int(getpagesize()) - 1 else {
                throw ImageError.badLayer(layer: diffIDs.last ?? manifest, problem: "\(diffIDs.count) layers make overlayfs options longer than a page; use a shorter --data-root")
            }
            do {
                try Mount.mount(source: "overlay", target: merged, type: "overlay", flags: 0, data: options)
            } catch {
                state.containers[containerID] = nil
                try? saveState(state)
                throw error
            }
            return merged
        }
    }

    /// Unmounts a container's root filesystem and removes its upper and work directories. Idempotent.
    public func releaseRootfs(containerID: String) throws {
        try Self.validateContainerID(containerID)
        let merged = "\(dataRoot)/rootfs/\(containerID)/merged"
        try withLock(.exclusive) {
            for point in try Mount.mountPoints(under: merged) {
                do { try Mount.unmount(point) } catch let e as SystemError where e.errno == EBUSY {
                    try Mount.unmount(point, flags: Int32(MNT_DETACH))
                }
            }
            let rootfs = try FileDescriptor.open(dataRoot + "/rootfs", O_RDONLY | O_DIRECTORY)
            try rootfs.removeTree(containerID)
            var state = try loadState()
            if state.containers.removeValue(forKey: containerID) != nil { try saveState(state) }
        }
    }

    static func validateContainerID(_ id: String) throws {
        let ok = !id.isEmpty && id.utf8.count <= 128 && id.first != "." && id.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || "_.-".unicodeScalars.contains($0)
        }
        guard ok else {
            throw SystemError(operation: "container id", path: id, errno: EINVAL, hint: "use 1 to 128 letters, digits, _ . -, not starting with a dot")
        }
    }

    /// overlayfs option values separate with `,` and `:`; a backslash escapes them.
    static func escapeOverlayPath(_ path: String) -> String {
        var out = ""
        for c in path {
            if c == "," || c == ":" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }
}
