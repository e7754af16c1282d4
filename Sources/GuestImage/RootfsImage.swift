import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The filesystem of a shared read-only rootfs image.
public enum RootfsFormat: String, Sendable, CaseIterable {
    /// erofs (`mkfs.erofs`, uncompressed): built for read-only images, smallest and fastest to build here.
    case erofs
    /// ext4 without a journal (`mke2fs -d`), mounted read-only with `noload`: works with any guest kernel.
    case ext4

    /// The format Bulkhead uses unless told otherwise (see bench/rootfs-image.sh and the README).
    public static let preferred = RootfsFormat.erofs
}

/// What the scan of a source tree found.
public struct TreeSummary: Sendable, Equatable {
    public var files = 0
    public var directories = 0
    public var symlinks = 0
    public var others = 0
    /// Sum of regular file sizes.
    public var bytes: Int64 = 0
    /// Bytes rounded up to 4 KiB blocks per file (for sizing ext4).
    public var blockBytes: Int64 = 0
    public var maxDepth = 0
    /// Longest path below the root, in bytes.
    public var maxPathLength = 0
}

/// A built image in the cache.
public struct RootfsImage: Sendable {
    public let path: String
    public let format: RootfsFormat
    /// The file's size in bytes.
    public let size: Int64
    /// Whether this call built it (false: it was already cached).
    public let built: Bool
    /// The scan of the source (only when built).
    public let summary: TreeSummary?
}

/// Builds, once per image digest, the read-only filesystem image every microVM of that image shares
/// (attached read-only as the first virtio disk; the agent joins it with a writable layer by overlayfs).
///
/// The input is the image's **merged** root (the unpacked layers with whiteouts applied — e.g. an overlay
/// mount of the layers, or the namespace tier's merged snapshot). A whiteout left in the input (a 0/0
/// character device or a `.wh.` name) means the caller passed an unmerged layer: the build refuses it,
/// rather than baking a whiteout into a lower layer where the guest's overlayfs would misread it.
///
/// Safety: the source is read-only input; the only file written is a temporary file in the cache
/// directory, published by rename(2) once complete and fsynced. The tools never follow the tree's
/// symlinks (they store them as symlinks), so symlink tricks cannot redirect a write.
public struct RootfsImageStore: Sendable {
    public let directory: String
    /// Refuse sources over this many bytes of file data.
    public var maxBytes: Int64 = 64 << 30
    /// Refuse trees deeper than this (each level holds an fd while scanning).
    public var maxDepth = 256

    public init(directory: String) {
        self.directory = directory
    }

    /// `sha256:<64 hex>` → the cache file name, refusing anything else (the digest names a file).
    public static func fileName(digest: String, format: RootfsFormat) throws -> String {
        let hex = digest.hasPrefix("sha256:") ? String(digest.dropFirst(7)) : ""
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw Tool.Failure(description: "rootfs image: '\(digest)' is not a sha256 digest (expected sha256: and 64 lower-case hex digits)")
        }
        return "sha256-\(hex).\(format.rawValue)"
    }

    public func path(digest: String, format: RootfsFormat = .preferred) throws -> String {
        "\(directory)/\(try Self.fileName(digest: digest, format: format))"
    }

    /// Paths at least this long defeat mkfs.erofs 1.5 (it builds PATH_MAX-sized path strings and fails
    /// with ENOMEM); such trees go to ext4, which mke2fs -d populates directory by directory.
    public static let erofsPathLimit = 4000

    /// The cached image for `digest`, building it from `source` if it is not there yet. Concurrent
    /// callers for one digest wait for a single build. With `fallback`, a tree erofs cannot hold (paths
    /// over ``erofsPathLimit``) is built as ext4 instead; without it, that is an error.
    public func image(digest: String, source: String, format requested: RootfsFormat = .preferred, fallback: Bool = true) throws -> RootfsImage {
        var format = requested
        let lockName = try Self.fileName(digest: digest, format: .preferred)
        try HostPath.makeDirectories(directory, mode: 0o700)
        let dir = try FileDescriptor.open(directory, O_RDONLY | O_DIRECTORY)
        let lock = try FileLock(path: "\(directory)/.\(lockName).lock")
        _ = lock
        for candidate in fallback && requested == .erofs ? [RootfsFormat.erofs, .ext4] : [requested] {
            let name = try Self.fileName(digest: digest, format: candidate)
            if dir.exists(name) {
                let st = try dir.stat(name)
                return RootfsImage(path: "\(directory)/\(name)", format: candidate, size: Int64(st.st_size), built: false, summary: nil)
            }
        }
        // The source must be a real directory (not a symlink to one).
        let sourceFD = try FileDescriptor.open(source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        var summary = TreeSummary()
        try scan(sourceFD, depth: 0, path: "", into: &summary)
        if summary.bytes > maxBytes {
            throw Tool.Failure(description: "rootfs image: \(source) holds \(summary.bytes) bytes, over the limit of \(maxBytes)")
        }
        if format == .erofs, summary.maxPathLength >= Self.erofsPathLimit {
            guard fallback else {
                throw Tool.Failure(description: "rootfs image: \(source) has a path of \(summary.maxPathLength) bytes, too long for mkfs.erofs; build it as ext4")
            }
            format = .ext4
        }
        let name = try Self.fileName(digest: digest, format: format)
        let temp = ".tmp-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try build(format: format, sourceFD: sourceFD.raw, output: "\(directory)/\(temp)", summary: summary)
            let out = try dir.openAt(temp, O_RDONLY)
            try out.fsync(path: temp)
            try dir.chmod(temp, mode: 0o444)
            try dir.rename(temp, to: name)
            try dir.fsync(path: directory)
        } catch {
            try? dir.unlink(temp)
            throw error
        }
        let st = try dir.stat(name)
        return RootfsImage(path: "\(directory)/\(name)", format: format, size: Int64(st.st_size), built: true, summary: summary)
    }

    /// Runs the tool on the checked source directory fd, which the tool inherits as fd 3 and reads as
    /// `/proc/self/fd/3/.` — the very directory we scanned, whatever happens to its path meanwhile.
    func build(format: RootfsFormat, sourceFD: Int32, output: String, summary: TreeSummary) throws {
        let real = "/proc/self/fd/3/."
        switch format {
        case .erofs:
            guard let mkfs = Tool.find("mkfs.erofs") else {
                throw Tool.Failure(description: "rootfs image: mkfs.erofs not found; install erofs-utils (scripts/setup does)")
            }
            try Tool.run(mkfs, ["--quiet", "--preserve-mtime", "-x", "1", output, real], package: "erofs-utils", inheriting: sourceFD)
        case .ext4:
            guard let mke2fs = Tool.find("mke2fs") else {
                throw Tool.Failure(description: "rootfs image: mke2fs not found; install e2fsprogs (scripts/setup does)")
            }
            let inodes = summary.files + summary.directories + summary.symlinks + summary.others + 64
            // Data blocks + one block per directory/symlink + inode tables (256 B each) + 10% + 8 MiB of metadata room.
            let raw = summary.blockBytes + Int64(summary.directories + summary.symlinks) * 4096 + Int64(inodes) * 256
            let kib = (raw + raw / 10 + (8 << 20)) / 1024
            try Tool.run(mke2fs, ["-q", "-F", "-t", "ext4", "-O", "^has_journal,^resize_inode", "-b", "4096", "-m", "0",
                                  "-N", String(inodes), "-E", "root_owner=0:0,lazy_itable_init=0", "-L", "bulkhead-rootfs",
                                  "-d", real, output, "\(kib)k"], package: "e2fsprogs", inheriting: sourceFD)
        }
    }

    /// Walks the tree through directory fds (never following symlinks), counting, bounding depth and
    /// refusing whiteouts.
    func scan(_ dir: borrowing FileDescriptor, depth: Int, path: String, into summary: inout TreeSummary) throws {
        if depth > maxDepth {
            throw Tool.Failure(description: "rootfs image: the tree is deeper than \(maxDepth) levels at \(path.prefix(200))…; refusing it")
        }
        summary.maxDepth = max(summary.maxDepth, depth)
        summary.maxPathLength = max(summary.maxPathLength, path.utf8.count)
        summary.directories += 1
        for name in try dir.entries() {
            let full = "\(path)/\(name)"
            summary.maxPathLength = max(summary.maxPathLength, full.utf8.count)
            let where_ = full.utf8.count < 512 ? full : "…\(full.suffix(200))"
            if name.hasPrefix(".wh.") {
                throw Tool.Failure(description: "rootfs image: \(where_) is an OCI whiteout; pass the merged root of the image, not a layer")
            }
            let st = try dir.stat(name)
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                let child = try dir.openAt2(name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, resolve: BH_RESOLVE_BENEATH_VALUE | BH_RESOLVE_NO_SYMLINKS_VALUE)
                try scan(child, depth: depth + 1, path: full, into: &summary)
            case S_IFREG:
                summary.files += 1
                summary.bytes += Int64(st.st_size)
                summary.blockBytes += (Int64(st.st_size) + 4095) / 4096 * 4096
            case S_IFLNK:
                summary.symlinks += 1
            case S_IFCHR where st.st_rdev == 0:
                throw Tool.Failure(description: "rootfs image: \(where_) is an overlay whiteout (0/0 device); pass the merged root of the image, not a layer")
            default:
                summary.others += 1
            }
        }
    }

}
