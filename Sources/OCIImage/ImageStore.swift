import CShims
import FoundationEssentials
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// An image as the store holds it: what a backend needs to create a container from it.
public struct StoredImage: Sendable {
    /// The name it was resolved by (or its first name), if it has one.
    public let name: String?
    /// `sha256:…` of the manifest.
    public let manifestDigest: String
    public let config: ImageConfiguration
    /// `sha256:…` diff IDs, bottom layer first.
    public let layerDiffIDs: [String]
    /// Who imported it (`root`, `uid:N`) and from where (`oci-archive:FILE`, …); nil when the store does not know.
    public var importedBy: String? = nil
    public var source: String? = nil
}

/// One imported image in the store's state file.
public struct ImageRecord: Codable, Sendable, Equatable {
    public var digest: Digest
    public var names: [String]
    public var config: Digest
    public var layers: [Digest]
    public var diffIDs: [Digest]
    /// Bytes of the image's blobs (manifest, config, compressed layers).
    public var size: Int64
    public var created: String?
    public var imported: String
    public var platform: String
    /// Who imported it: `root`, or `uid:N` of the importing user (the policy's `imported_by`). Absent in records
    /// written before provenance was kept; those count as unknown.
    public var importedBy: String?
    /// Where it came from: `oci:DIR`, `oci-archive:FILE` or `docker-archive:FILE`, absolute (the policy's `source`).
    public var source: String?
}

/// A container's claim on layer snapshots (its prepared root filesystem).
struct ContainerRecord: Codable, Sendable {
    var image: Digest
    var diffIDs: [Digest]
}

/// The store's state file (`images.json`): names, images and the containers using them. Replaced atomically,
/// only under the exclusive store lock.
struct StoreState: Codable, Sendable {
    var images: [ImageRecord] = []
    var containers: [String: ContainerRecord] = [:]
}

/// The content-addressed image store under `<data-root>`:
///
/// ```
/// store.lock              flock: shared to read, exclusive to change state
/// images.json             names → images, images → blobs and layers, containers → layers
/// blobs/sha256/<hex>      verified blobs (manifests, configs, compressed layers), shared between images
/// snapshots/<diff hex>    each layer unpacked once, keyed by its diff ID (uncompressed digest)
/// rootfs/<container>/     upper, work and merged (overlayfs) of one container
/// tmp/<id> + tmp/<id>.lock  an import or removal in progress; stale ones (lock not held) are cleaned up
/// ```
///
/// Nothing becomes visible before it is complete: imports are staged under `tmp/`, synced, renamed into place, and
/// only then named in `images.json` (written to a temporary file, fsynced, renamed).
public struct ImageStore: Sendable {
    public let dataRoot: String
    /// Limits applied to each layer unpacked by this store.
    public var limits: UnpackLimits = UnpackLimits()

    public init(dataRoot: String) throws {
        guard dataRoot.hasPrefix("/") else {
            throw SystemError(operation: "data root", path: dataRoot, errno: EINVAL, hint: "give an absolute path")
        }
        var normalized = dataRoot
        while normalized.count > 1 && normalized.hasSuffix("/") { normalized.removeLast() }
        self.dataRoot = normalized
        try HostPath.makeDirectories(normalized, mode: 0o755)
        let root = try FileDescriptor.open(normalized, O_RDONLY | O_DIRECTORY)
        for dir in ["blobs", "blobs/sha256", "snapshots", "rootfs", "tmp"] { try root.mkdirIfMissing(dir, mode: 0o700) }
    }

    // MARK: locations

    func openRoot() throws -> FileDescriptor { try FileDescriptor.open(dataRoot, O_RDONLY | O_DIRECTORY) }
    var blobsPath: String { dataRoot + "/blobs/sha256" }
    var snapshotsPath: String { dataRoot + "/snapshots" }
    func snapshotPath(_ diffID: Digest) -> String { "\(snapshotsPath)/\(diffID.hex)" }

    // MARK: locking

    enum LockMode { case shared, exclusive }

    /// Runs `body` holding the store lock. Imports unpack without it and take it only to commit.
    func withLock<T>(_ mode: LockMode, _ body: () throws -> T) throws -> T {
        let path = dataRoot + "/store.lock"
        let fd = try FileDescriptor.open(path, O_RDWR | O_CREAT, mode: 0o600)
        try sys("flock", path) { flock(fd.raw, mode == .exclusive ? LOCK_EX : LOCK_SH) }
        let result = try body()
        _ = fd.raw    // the lock is released when `fd` closes, after `body`
        return result
    }

    // MARK: state

    func loadState() throws -> StoreState {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(dataRoot + "/images.json", O_RDONLY) } catch let e as SystemError where e.errno == ENOENT {
            return StoreState()
        }
        let bytes = try fd.readAll(path: dataRoot + "/images.json")
        return try JSON.decode(StoreState.self, from: bytes, blob: dataRoot + "/images.json")
    }

    func saveState(_ state: StoreState) throws {
        let root = try openRoot()
        try root.writeFileAtomically("images.json", bytes: try JSON.encode(state, pretty: true), mode: 0o600)
    }

    // MARK: reading

    /// All images, newest import first.
    public func list() throws -> [ImageRecord] {
        try withLock(.shared) { try loadState().images.sorted { $0.imported > $1.imported } }
    }

    /// Finds an image by `name:tag`, `name` (meaning `name:latest`), a full digest or a unique digest prefix.
    public func resolve(_ reference: String) throws -> StoredImage {
        let (record, name) = try withLock(.shared) { try Self.find(reference, in: try loadState()) }
        let config = try readConfig(record)
        return StoredImage(name: name, manifestDigest: record.digest.description, config: config,
                           layerDiffIDs: record.diffIDs.map(\.description), importedBy: record.importedBy,
                           source: record.source)
    }

    func readBlob(_ digest: Digest, limit: Int = 16 << 20) throws -> [UInt8] {
        let path = "\(blobsPath)/\(digest.hex)"
        return try FileDescriptor.open(path, O_RDONLY).readAll(limit: limit, path: path)
    }

    func readConfig(_ record: ImageRecord) throws -> ImageConfiguration {
        try JSON.decode(ImageConfiguration.self, from: try readBlob(record.config), blob: record.config.description)
    }

    /// The manifest and config of an image, as JSON (`image inspect`).
    public func inspect(_ reference: String) throws -> String {
        let (record, _) = try withLock(.shared) { try Self.find(reference, in: try loadState()) }
        let manifest = String(decoding: try readBlob(record.digest), as: UTF8.self)
        let config = String(decoding: try readBlob(record.config), as: UTF8.self)
        let names = "[" + record.names.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
        return """
            {
              "digest": "\(record.digest)",
              "names": \(names),
              "size": \(record.size),
              "created": \(record.created.map { "\"\($0)\"" } ?? "null"),
              "imported": "\(record.imported)",
              "platform": "\(record.platform)",
              "layers": [\(record.diffIDs.map { "\"\($0)\"" }.joined(separator: ", "))],
              "manifest": \(manifest.trimmingTrailingWhitespace()),
              "config": \(config.trimmingTrailingWhitespace())
            }
            """
    }

    static func find(_ reference: String, in state: StoreState) throws -> (ImageRecord, String?) {
        let ref = reference.trimmingTrailingWhitespace()
        if ref.isEmpty { throw ImageError.invalidReference(reference, problem: "empty") }
        var hexPrefix: String?
        if ref.hasPrefix("sha256:") { hexPrefix = String(ref.dropFirst(7)) }
        if hexPrefix == nil {
            let full = ImageName.normalize(ref)
            if let hit = state.images.first(where: { $0.names.contains(full) }) { return (hit, full) }
            // "busybox" also finds "localhost/busybox:latest" when that is the only such name.
            let tail = state.images.flatMap { img in img.names.filter { ImageName.shortForm($0) == full }.map { (img, $0) } }
            if tail.count == 1 { return (tail[0].0, tail[0].1) }
            if tail.count > 1 { throw ImageError.ambiguousReference(reference, matches: tail.map(\.1)) }
            if ref.count >= 4, ref.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) { hexPrefix = ref }
        }
        guard let hex = hexPrefix, !hex.isEmpty else { throw ImageError.notFound(reference) }
        let matches = state.images.filter { $0.digest.hex.hasPrefix(hex) }
        if matches.count > 1 { throw ImageError.ambiguousReference(reference, matches: matches.map { $0.digest.short }) }
        guard let hit = matches.first else { throw ImageError.notFound(reference) }
        return (hit, hit.names.first)
    }

    // MARK: staging and cleanup

    /// A private directory under `tmp/` for one operation, with a held lock file beside it; anything left by a
    /// process that died (its lock no longer held) is removed first.
    final class Staging {
        let name: String
        let lockFD: Int32
        let dir: FileDescriptor
        let tmp: FileDescriptor

        init(store: ImageStore) throws {
            try store.cleanStale()
            let tmp = try FileDescriptor.open(store.dataRoot + "/tmp", O_RDONLY | O_DIRECTORY)
            while true {
                let name = String(UInt64.random(in: 1...UInt64.max), radix: 16)
                let lock = bh_openat(tmp.raw, name + ".lock", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                if lock < 0 {
                    if bh_errno() == EEXIST { continue }
                    throw SystemError(operation: "create", path: store.dataRoot + "/tmp/\(name).lock", errno: bh_errno())
                }
                try sys("flock", name) { flock(lock, LOCK_EX) }
                // A cleaner may have taken and unlinked the lock file before we locked it: start again.
                var st = stat()
                if fstat(lock, &st) != 0 || st.st_nlink == 0 { _ = Glibc.close(lock); continue }
                try tmp.mkdir(name, mode: 0o700)
                self.name = name
                self.lockFD = lock
                self.dir = try tmp.openDirectory(name, resolve: BH_RESOLVE_BENEATH_VALUE)
                self.tmp = tmp
                return
            }
        }

        /// Removes the staging directory and its lock.
        func discard() {
            try? tmp.removeTree(name)
            _ = unlinkat(tmp.raw, name + ".lock", 0)
        }

        deinit {
            discard()
            _ = Glibc.close(lockFD)
        }
    }

    /// Removes what crashed or killed processes left under `tmp/` (their locks are free).
    func cleanStale() throws {
        let tmp = try FileDescriptor.open(dataRoot + "/tmp", O_RDONLY | O_DIRECTORY)
        let names = try tmp.entries()
        let locks = Set(names.filter { $0.hasSuffix(".lock") })
        for name in names where !name.hasSuffix(".lock") {
            let lockName = name + ".lock"
            if locks.contains(lockName) {
                let fd = bh_openat(tmp.raw, lockName, O_RDWR | O_CLOEXEC, 0)
                if fd < 0 { continue }
                defer { _ = Glibc.close(fd) }
                if flock(fd, LOCK_EX | LOCK_NB) != 0 { continue }   // its owner is alive
                try tmp.removeTree(name)
                _ = unlinkat(tmp.raw, lockName, 0)
            } else {
                try tmp.removeTree(name)   // an owner always creates its lock first and removes it last
            }
        }
        for lockName in locks where !names.contains(String(lockName.dropLast(5))) {
            let fd = bh_openat(tmp.raw, lockName, O_RDWR | O_CLOEXEC, 0)
            if fd < 0 { continue }
            defer { _ = Glibc.close(fd) }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { _ = unlinkat(tmp.raw, lockName, 0) }
        }
    }
}

/// Image names: `name[:tag]`, with `:latest` implied.
public enum ImageName {
    /// Adds `:latest` when the name has no tag.
    public static func normalize(_ name: String) -> String {
        if name.contains("@") { return name }
        let lastSlash = name.lastIndex(of: "/")
        let tail = lastSlash.map { name[name.index(after: $0)...] } ?? name[...]
        return tail.contains(":") ? name : name + ":latest"
    }

    /// `localhost/busybox:latest` → `busybox:latest`.
    static func shortForm(_ name: String) -> String {
        guard let slash = name.lastIndex(of: "/") else { return name }
        return String(name[name.index(after: slash)...])
    }

    /// Checks a name given by the user or found in an archive.
    public static func validate(_ name: String) throws -> String {
        let normalized = normalize(name)
        guard !name.isEmpty, name.utf8.count <= 255 else { throw ImageError.invalidReference(name, problem: "must be 1 to 255 characters") }
        let allowed = name.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || "._-/:@".unicodeScalars.contains($0)
        }
        guard allowed, !name.hasPrefix("/"), !name.hasPrefix(":"), !name.hasPrefix("sha256:") else {
            throw ImageError.invalidReference(name, problem: "use letters, digits and . _ - / : only, as in busybox:1.36")
        }
        return normalized
    }
}

extension String {
    func trimmingTrailingWhitespace() -> String {
        var s = self
        while let last = s.last, last.isWhitespace { s.removeLast() }
        while let first = s.first, first.isWhitespace { s.removeFirst() }
        return s
    }
}
