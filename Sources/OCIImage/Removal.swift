import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// What `image rm` or `image prune` did.
public struct RemovalResult: Sendable {
    public var untagged: [String] = []
    public var deletedImages: [Digest] = []
    public var deletedBlobs = 0
    public var deletedSnapshots = 0
    public var freedBytes: Int64 = 0
}

extension ImageStore {
    /// Removes a name, or (by digest, or its last name) an image. Blobs and snapshots go only when no other image
    /// and no prepared container rootfs uses them.
    public func remove(_ reference: String) throws -> RemovalResult {
        try withLock(.exclusive) {
            var state = try loadState()
            let (record, name) = try Self.find(reference, in: state)
            var result = RemovalResult()
            let byName = name != nil && !reference.hasPrefix("sha256:") && !record.digest.hex.hasPrefix(reference)
            guard let index = state.images.firstIndex(where: { $0.digest == record.digest }) else { throw ImageError.notFound(reference) }
            if byName, let name, record.names.count > 1 {
                state.images[index].names.removeAll { $0 == name }
                result.untagged = [name]
                try saveState(state)
                return result
            }
            result.untagged = record.names
            result.deletedImages = [record.digest]
            state.images.remove(at: index)
            try saveState(state)
            try collectGarbage(state: state, candidates: record, into: &result)
            return result
        }
    }

    /// Removes images without a name that no container uses, every blob and snapshot nothing references, and what
    /// killed imports left under `tmp/`.
    public func prune() throws -> RemovalResult {
        try cleanStale()
        return try withLock(.exclusive) {
            var state = try loadState()
            var result = RemovalResult()
            let used = Set(state.containers.values.map(\.image))
            let dangling = state.images.filter { $0.names.isEmpty && !used.contains($0.digest) }
            if !dangling.isEmpty {
                state.images.removeAll { d in dangling.contains { $0.digest == d.digest } }
                result.deletedImages = dangling.map(\.digest)
                try saveState(state)
            }
            try collectGarbage(state: state, candidates: nil, into: &result)
            return result
        }
    }

    /// Deletes unreferenced blobs and snapshots: those of `candidates`, or (nil) everything in the store. Each is first
    /// renamed into `tmp/` (it disappears atomically) and then removed; a crash half-way leaves only `tmp/` debris.
    private func collectGarbage(state: StoreState, candidates: ImageRecord?, into result: inout RemovalResult) throws {
        var blobRefs = Set<String>(), snapshotRefs = Set<String>()
        for image in state.images {
            blobRefs.insert(image.digest.hex)
            blobRefs.insert(image.config.hex)
            for l in image.layers { blobRefs.insert(l.hex) }
            for d in image.diffIDs { snapshotRefs.insert(d.hex) }
        }
        for container in state.containers.values { for d in container.diffIDs { snapshotRefs.insert(d.hex) } }

        let blobs = try FileDescriptor.open(blobsPath, O_RDONLY | O_DIRECTORY)
        let snapshots = try FileDescriptor.open(snapshotsPath, O_RDONLY | O_DIRECTORY)
        let blobNames: [String], snapshotNames: [String]
        if let c = candidates {
            blobNames = [c.digest.hex, c.config.hex] + c.layers.map(\.hex)
            snapshotNames = c.diffIDs.map(\.hex)
        } else {
            blobNames = try blobs.entries()
            snapshotNames = try snapshots.entries()
        }
        let staging = try Staging(store: self)
        for name in Set(blobNames) where !blobRefs.contains(name) && blobs.exists(name) {
            if let st = try? blobs.stat(name) { result.freedBytes += Int64(st.st_size) }
            try blobs.rename(name, to: "blob-" + name, inDirectory: staging.dir.raw)
            result.deletedBlobs += 1
        }
        for name in Set(snapshotNames) where !snapshotRefs.contains(name) && snapshots.exists(name) {
            try snapshots.rename(name, to: "snapshot-" + name, inDirectory: staging.dir.raw)
            result.deletedSnapshots += 1
        }
        try blobs.fsync()
        try snapshots.fsync()
        staging.discard()
    }
}
