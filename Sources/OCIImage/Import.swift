import CArchive
import CShims
import FoundationEssentials
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// What `image import` was asked to do.
public struct ImportOptions: Sendable {
    /// `NAME[:TAG]` to give the image (default: the name recorded in the archive, if any).
    public var name: String?
    /// The platform to pick from a multi-platform index (default: this host's).
    public var platform: Platform?
    /// Which image of a layout or archive holding several (`org.opencontainers.image.ref.name` or a RepoTag).
    public var ref: String?

    public init(name: String? = nil, platform: Platform? = nil, ref: String? = nil) {
        self.name = name
        self.platform = platform
        self.ref = ref
    }
}

/// Progress of an import, for a terminal display.
public enum ImportEvent: Sendable {
    /// Layer `index` of `count` starts; `shared` when its snapshot is already in the store (nothing to do).
    case layer(index: Int, count: Int, digest: Digest, size: Int64, shared: Bool)
    /// Bytes of the source read so far, in total.
    case bytes(Int64)
    case layerDone(index: Int, entries: Int)
}

/// What an import did.
public struct ImportResult: Sendable {
    public var record: ImageRecord
    public var layersUnpacked: Int
    public var layersShared: Int
    public var bytesRead: Int64
}

/// A manifest and config resolved from a source, before any layer is read.
struct ResolvedImage {
    var manifestBytes: [UInt8]
    var manifestDigest: Digest
    var manifest: Manifest
    var configBytes: [UInt8]
    var config: ImageConfiguration
    /// Source path of each layer blob.
    var layerPaths: [String]
    /// Whether layer descriptors are known up front (OCI) or computed while streaming (docker-archive).
    var layersKnown: Bool
    var names: [String]
}

extension ImageStore {
    static let jsonLimit = 4 << 20
    static let smallUnpackBytes: Int64 = 8 << 20

    /// Imports an OCI layout directory, OCI archive or docker-archive at `path`. Every blob is verified (digest and
    /// size) while it streams into a private staging area, layers are unpacked once into snapshots keyed by diff ID,
    /// and only a complete, verified image is moved into the store and named. On any error the store is as before.
    public func importImage(from path: String, options: ImportOptions = ImportOptions(),
                            progress: (ImportEvent) -> Void = { _ in }) throws -> ImportResult {
        do {
            return try importOnce(from: path, options: options, progress: progress)
        } catch is SharedContentVanished {
            // A concurrent `image rm`/`prune` removed a layer this import counted on sharing; now it is read again.
            return try importOnce(from: path, options: options, progress: progress)
        }
    }

    private struct SharedContentVanished: Error {}

    private func importOnce(from path: String, options: ImportOptions, progress: (ImportEvent) -> Void) throws -> ImportResult {
        let source = try Self.openSource(path)
        var resolved: ResolvedImage
        let isDockerArchive = source.has("manifest.json") && !source.has("index.json")
        if isDockerArchive {
            resolved = try resolveDockerArchive(source, options: options)
        } else {
            resolved = try resolveLayout(source, options: options)
        }
        let name = try (options.name ?? resolved.names.first).map { try ImageName.validate($0) }

        let diffIDs = resolved.config.rootfs.diffIDs
        let count = resolved.layerPaths.count
        guard count == diffIDs.count else {
            throw ImageError.layerCountMismatch(manifest: resolved.manifestDigest, layers: count, diffIDs: diffIDs.count)
        }

        let staging = try Staging(store: self)
        try staging.dir.mkdir("blobs", mode: 0o700)
        try staging.dir.mkdir("snapshots", mode: 0o700)
        let stagedBlobs = try staging.dir.openDirectory("blobs", resolve: BH_RESOLVE_BENEATH_VALUE)
        let stagedSnapshots = try staging.dir.openDirectory("snapshots", resolve: BH_RESOLVE_BENEATH_VALUE)
        let blobs = try FileDescriptor.open(blobsPath, O_RDONLY | O_DIRECTORY)
        let snapshots = try FileDescriptor.open(snapshotsPath, O_RDONLY | O_DIRECTORY)

        // Which layers need work: a layer whose snapshot and blob are both stored is shared and costs nothing.
        struct Job { var index: Int; var path: String; var needSnapshot: Bool; var needBlob: Bool }
        var jobs: [String: Job] = [:]
        var order: [String] = []
        var shared = 0
        var layerDescriptors = resolved.manifest.layers
        for i in 0..<count {
            let diffID = diffIDs[i]
            let path = resolved.layerPaths[i]
            let haveSnapshot = snapshots.exists(diffID.hex)
            let haveBlob = resolved.layersKnown && blobs.exists(layerDescriptors[i].digest.hex)
            if haveSnapshot && haveBlob {
                shared += 1
                progress(.layer(index: i, count: count, digest: diffID, size: layerDescriptors[i].size, shared: true))
                continue
            }
            if jobs[path] != nil { continue }
            jobs[path] = Job(index: i, path: path, needSnapshot: !haveSnapshot, needBlob: !haveBlob)
            order.append(path)
        }

        // Durability: a large unpack is flushed with one syncfs at the end; a small one (a few MB, the usual case
        // when most layers are shared) fsyncs its own files instead of flushing everyone's dirty data.
        let toUnpack = jobs.values.filter(\.needSnapshot)
        let smallUnpack = resolved.layersKnown
            && toUnpack.reduce(Int64(0)) { $0 + layerDescriptors[$1.index].size } < Self.smallUnpackBytes
        var bytesRead: Int64 = 0
        var unpacked = 0
        var computed: [String: LayerResult] = [:]
        var stagedSnapshotNames: Set<String> = []
        try source.stream(order) { path, byteSource in
            guard let job = jobs[path] else { return }
            let diffID = diffIDs[job.index]
            let descriptor: Descriptor? = resolved.layersKnown ? layerDescriptors[job.index] : nil
            let blobName = descriptor?.digest.description ?? "\(source.label): \(path)"
            progress(.layer(index: job.index, count: count, digest: diffID, size: descriptor?.size ?? 0, shared: false))
            let partial = "layer-\(job.index).partial"
            let blobFD = try stagedBlobs.openAt(partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
            var snapshotFD: FileDescriptor? = nil
            let snapshotName = diffID.hex
            if job.needSnapshot && !stagedSnapshotNames.contains(snapshotName) {
                try stagedSnapshots.mkdir(snapshotName, mode: 0o755)
                snapshotFD = try stagedSnapshots.openDirectory(snapshotName, resolve: BH_RESOLVE_BENEATH_VALUE)
            }
            let result = try withoutActuallyEscaping(progress) { progress in
                let pipeline = LayerPipeline(source: byteSource, blobFD: blobFD.raw, name: blobName, layer: diffID,
                                             expectedDigest: descriptor?.digest, expectedSize: descriptor?.size, limits: limits) { n in
                    bytesRead += n
                    progress(.bytes(bytesRead))
                }
                return try pipeline.run(into: snapshotFD?.raw, fsyncFiles: smallUnpack)
            }
            if result.diffID != diffID {
                throw ImageError.diffIDMismatch(layer: descriptor?.digest ?? result.digest, expected: diffID, actual: result.diffID)
            }
            if let descriptor {
                try Self.checkCompression(result.filter, mediaType: descriptor.mediaType, blob: descriptor.digest.description)
            } else if result.filter != ARCHIVE_FILTER_NONE && result.filter != ARCHIVE_FILTER_GZIP && result.filter != ARCHIVE_FILTER_ZSTD {
                throw ImageError.badLayer(layer: diffID, problem: "compressed with a method OCI images do not allow (only gzip and zstd)")
            }
            try blobFD.fsync(path: partial)
            try stagedBlobs.rename(partial, to: result.digest.hex)
            if snapshotFD != nil {
                stagedSnapshotNames.insert(snapshotName)
                unpacked += 1
            } else {
                shared += 1   // read for its blob, but its snapshot was already there
            }
            computed[path] = result
            progress(.layerDone(index: job.index, entries: result.entries))
        }

        // docker-archive: the manifest is written now that the layer digests and compressions are known.
        if !resolved.layersKnown {
            layerDescriptors = try resolved.layerPaths.map { path in
                guard let result = computed[path] else { throw ImageError.missingBlob(path, in: source.label) }
                let mediaType = result.filter == ARCHIVE_FILTER_GZIP ? MediaType.ociLayerGzip
                    : result.filter == ARCHIVE_FILTER_ZSTD ? MediaType.ociLayerZstd : MediaType.ociLayerTar
                return Descriptor(mediaType: mediaType, digest: result.digest, size: result.size)
            }
            resolved.manifest.layers = layerDescriptors
            resolved.manifestBytes = try JSON.encode(resolved.manifest)
            resolved.manifestDigest = Digest(of: resolved.manifestBytes)
        }

        // Manifest and config are staged like the layers.
        let configDigest = resolved.manifest.config.digest
        for (digest, bytes) in [(resolved.manifestDigest, resolved.manifestBytes), (configDigest, resolved.configBytes)] {
            let fd = try stagedBlobs.openAt(digest.hex, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o600)
            try fd.writeAll(bytes, path: digest.description)
            try fd.fsync(path: digest.description)
        }
        // One syncfs makes every unpacked file durable before anything is renamed into place.
        if unpacked > 0 && !smallUnpack {
            try staging.dir.syncFilesystem(path: "\(dataRoot)/tmp/\(staging.name)")
        }
        try stagedBlobs.fsync()
        try stagedSnapshots.fsync()

        let size = Int64(resolved.manifestBytes.count) + resolved.manifest.config.size + layerDescriptors.reduce(0) { $0 + $1.size }
        let record = ImageRecord(
            digest: resolved.manifestDigest, names: name.map { [$0] } ?? [], config: configDigest,
            layers: layerDescriptors.map(\.digest), diffIDs: diffIDs, size: size, created: resolved.config.created,
            imported: Timestamp.now(), platform: resolved.config.platform.description,
            importedBy: Self.importer(), source: Self.sourceDescription(path, isDockerArchive: isDockerArchive))

        let finalRecord: ImageRecord = try withLock(.exclusive) {
            for staged in try stagedBlobs.entries() where Digest(hex: staged) != nil {
                if !blobs.exists(staged) { try stagedBlobs.rename(staged, to: staged, inDirectory: blobs.raw) }
            }
            for staged in stagedSnapshotNames where !snapshots.exists(staged) {
                try stagedSnapshots.rename(staged, to: staged, inDirectory: snapshots.raw)
            }
            try blobs.fsync()
            try snapshots.fsync()
            // Everything the record names must be in place (a concurrent removal may have taken a shared layer).
            for digest in record.layers + [record.config, record.digest] where !blobs.exists(digest.hex) { throw SharedContentVanished() }
            for diffID in record.diffIDs where !snapshots.exists(diffID.hex) { throw SharedContentVanished() }
            var state = try loadState()
            var merged = record
            if let name {   // a name moves to the newly imported image
                for i in state.images.indices { state.images[i].names.removeAll { $0 == name } }
            }
            if let existing = state.images.firstIndex(where: { $0.digest == record.digest }) {
                merged.names = state.images[existing].names + record.names.filter { !state.images[existing].names.contains($0) }
                merged.imported = state.images[existing].imported
                // Provenance is the first import's; a record from before provenance was kept takes this one's.
                merged.importedBy = state.images[existing].importedBy ?? record.importedBy
                merged.source = state.images[existing].source ?? record.source
                state.images[existing] = merged
            } else {
                state.images.append(merged)
            }
            try saveState(state)
            return merged
        }
        return ImportResult(record: finalRecord, layersUnpacked: unpacked, layersShared: shared, bytesRead: bytesRead)
    }

    /// The importing user as the policy names it: `root`, or `uid:N`.
    static func importer() -> String {
        let uid = getuid()
        return uid == 0 ? "root" : "uid:\(uid)"
    }

    /// `oci:DIR`, `oci-archive:FILE` or `docker-archive:FILE`, with the path made absolute.
    static func sourceDescription(_ path: String, isDockerArchive: Bool) -> String {
        var absolute = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
            if let real = realpath(path, &buffer) { absolute = String(cString: real) }
        }
        var st = stat()
        let isDirectory = stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
        let kind = isDirectory ? "oci" : (isDockerArchive ? "docker-archive" : "oci-archive")
        return kind + ":" + absolute
    }

    static func openSource(_ path: String) throws -> ImageSource {
        var st = stat()
        try sys("stat", path) { fstatat(AT_FDCWD, path, &st, 0) }
        if st.st_mode & S_IFMT == S_IFDIR {
            let source = try LayoutDirectorySource(path: path)
            guard source.has("index.json") || source.has("manifest.json") else { throw ImageError.unrecognisedSource(path) }
            return source
        }
        guard st.st_mode & S_IFMT == S_IFREG, TarArchiveSource.isTar(path) else { throw ImageError.unrecognisedSource(path) }
        let source = try TarArchiveSource(path: path)
        guard source.has("index.json") || source.has("manifest.json") else { throw ImageError.unrecognisedSource(path) }
        return source
    }

    static func checkCompression(_ filter: Int32, mediaType: String, blob: String) throws {
        let expected: Int32 = mediaType.hasSuffix("+gzip") || mediaType.hasSuffix(".gzip") ? ARCHIVE_FILTER_GZIP
            : mediaType.hasSuffix("+zstd") ? ARCHIVE_FILTER_ZSTD : ARCHIVE_FILTER_NONE
        if filter != expected {
            throw ImageError.badLayer(layer: try Digest(parsing: blob), problem: "media type \(mediaType) does not match the blob's compression (\(filterName(filter)))")
        }
    }

    static func filterName(_ filter: Int32) -> String {
        switch filter {
        case ARCHIVE_FILTER_NONE: "none"
        case ARCHIVE_FILTER_GZIP: "gzip"
        case ARCHIVE_FILTER_ZSTD: "zstd"
        case ARCHIVE_FILTER_BZIP2: "bzip2"
        case ARCHIVE_FILTER_XZ: "xz"
        default: "libarchive filter \(filter)"
        }
    }

    // MARK: resolving what to import

    /// Reads a small blob (index, manifest, config) and checks its size and digest against its descriptor.
    static func readVerified(_ source: ImageSource, _ descriptor: Descriptor) throws -> [UInt8] {
        let path = "blobs/sha256/\(descriptor.digest.hex)"
        guard descriptor.size <= jsonLimit else {
            throw ImageError.malformedJSON(blob: descriptor.digest.description, problem: "descriptor claims \(descriptor.size) bytes, too large for JSON metadata")
        }
        guard let bytes = try source.readSmall(path, limit: Int(descriptor.size) + 1) else {
            throw ImageError.missingBlob(descriptor.digest.description, in: source.label)
        }
        if Int64(bytes.count) != descriptor.size {
            throw ImageError.sizeMismatch(blob: descriptor.digest.description, expected: descriptor.size, actual: Int64(bytes.count))
        }
        let actual = Digest(of: bytes)
        if actual != descriptor.digest { throw ImageError.digestMismatch(blob: descriptor.digest.description, expected: descriptor.digest, actual: actual) }
        return bytes
    }

    func resolveLayout(_ source: ImageSource, options: ImportOptions) throws -> ResolvedImage {
        guard let layoutBytes = try source.readSmall("oci-layout", limit: 4096) else {
            throw ImageError.missingBlob("oci-layout", in: source.label)
        }
        _ = try JSON.decode(LayoutMarker.self, from: layoutBytes, blob: "oci-layout")
        guard let indexBytes = try source.readSmall("index.json", limit: Self.jsonLimit) else {
            throw ImageError.missingBlob("index.json", in: source.label)
        }
        let index = try JSON.decode(ImageIndex.self, from: indexBytes, blob: "index.json")

        // Collect manifests, descending into nested indexes.
        var candidates: [(Descriptor, String?)] = []
        func collect(_ descriptors: [Descriptor], refName: String?, depth: Int, blob: String) throws {
            guard depth < 8 else { throw ImageError.malformedJSON(blob: blob, problem: "indexes nested more than 8 deep") }
            for d in descriptors {
                let ref = d.annotations?["org.opencontainers.image.ref.name"] ?? refName
                if MediaType.indexes.contains(d.mediaType) {
                    let nested = try JSON.decode(ImageIndex.self, from: try Self.readVerified(source, d), blob: d.digest.description)
                    try collect(nested.manifests, refName: ref, depth: depth + 1, blob: d.digest.description)
                } else if MediaType.manifests.contains(d.mediaType) {
                    candidates.append((d, ref))
                } else {
                    throw ImageError.unknownMediaType(blob: d.digest.description, mediaType: d.mediaType)
                }
            }
        }
        try collect(index.manifests, refName: nil, depth: 0, blob: "index.json")
        if let ref = options.ref {
            candidates = candidates.filter { $0.1 == ref || $0.1.map(ImageName.normalize) == ImageName.normalize(ref) }
            if candidates.isEmpty { throw ImageError.notFound("\(source.label) (ref \(ref))") }
        }
        let wanted = options.platform ?? hostPlatform()
        let described = candidates.filter { $0.0.platform != nil && $0.0.platform?.os != "unknown" }
        var matching = candidates.filter { $0.0.platform.map { $0.satisfies(wanted) } ?? true }
        if matching.isEmpty {
            throw ImageError.noMatchingPlatform(wanted: wanted.description, available: described.map { $0.0.platform!.description })
        }
        // Prefer an exact variant match among several.
        if matching.count > 1, let exact = matching.first(where: { $0.0.platform == wanted }) { matching = [exact] }
        let distinct = Set(matching.map(\.0.digest))
        if distinct.count > 1 {
            throw ImageError.ambiguousImage(source: source.label, candidates: matching.map { "\($0.1 ?? $0.0.digest.short)\($0.0.platform.map { "@\($0)" } ?? "")" })
        }
        let (descriptor, refName) = matching[0]

        let manifestBytes = try Self.readVerified(source, descriptor)
        let manifest = try JSON.decode(Manifest.self, from: manifestBytes, blob: descriptor.digest.description)
        if let type = manifest.mediaType, !MediaType.manifests.contains(type) {
            throw ImageError.unknownMediaType(blob: descriptor.digest.description, mediaType: type)
        }
        guard MediaType.configs.contains(manifest.config.mediaType) else {
            throw ImageError.unknownMediaType(blob: manifest.config.digest.description, mediaType: manifest.config.mediaType)
        }
        for layer in manifest.layers where !MediaType.layers.contains(layer.mediaType) {
            throw ImageError.unknownMediaType(blob: layer.digest.description, mediaType: layer.mediaType)
        }
        let configBytes = try Self.readVerified(source, manifest.config)
        let config = try JSON.decode(ImageConfiguration.self, from: configBytes, blob: manifest.config.digest.description)
        if options.platform != nil, descriptor.platform == nil, !config.platform.satisfies(wanted) {
            throw ImageError.noMatchingPlatform(wanted: wanted.description, available: [config.platform.description])
        }
        var names: [String] = []
        if let full = descriptor.annotations?["io.containerd.image.name"] { names.append(full) }
        if let refName, refName.contains(":") || refName.contains("/") { names.append(refName) }
        return ResolvedImage(manifestBytes: manifestBytes, manifestDigest: descriptor.digest, manifest: manifest,
                             configBytes: configBytes, config: config,
                             layerPaths: manifest.layers.map { "blobs/sha256/\($0.digest.hex)" }, layersKnown: true, names: names)
    }

    func resolveDockerArchive(_ source: ImageSource, options: ImportOptions) throws -> ResolvedImage {
        guard let bytes = try source.readSmall("manifest.json", limit: Self.jsonLimit) else {
            throw ImageError.missingBlob("manifest.json", in: source.label)
        }
        var entries = try JSON.decode([DockerArchiveEntry].self, from: bytes, blob: "manifest.json")
        if let ref = options.ref {
            entries = entries.filter { ($0.repoTags ?? []).contains { $0 == ref || $0 == ImageName.normalize(ref) || ImageName.shortForm($0) == ImageName.normalize(ref) } }
            if entries.isEmpty { throw ImageError.notFound("\(source.label) (ref \(ref))") }
        }
        guard let entry = entries.first else { throw ImageError.malformedJSON(blob: "manifest.json", problem: "lists no images") }
        if entries.count > 1 {
            throw ImageError.ambiguousImage(source: source.label, candidates: entries.map { $0.repoTags?.first ?? $0.config })
        }
        guard let configBytes = try source.readSmall(entry.config, limit: Self.jsonLimit) else {
            throw ImageError.missingBlob(entry.config, in: source.label)
        }
        let configDigest = Digest(of: configBytes)
        // Config files are named by their digest (`<hex>.json` or `blobs/sha256/<hex>`): check it when they are.
        let stem = entry.config.split(separator: "/").last.map { String($0.split(separator: ".").first ?? $0) } ?? ""
        if let named = Digest(hex: stem), named != configDigest {
            throw ImageError.digestMismatch(blob: entry.config, expected: named, actual: configDigest)
        }
        let config = try JSON.decode(ImageConfiguration.self, from: configBytes, blob: entry.config)
        if let wanted = options.platform, !config.platform.satisfies(wanted) {
            throw ImageError.noMatchingPlatform(wanted: wanted.description, available: [config.platform.description])
        }
        let manifest = Manifest(config: Descriptor(mediaType: MediaType.ociConfig, digest: configDigest, size: Int64(configBytes.count)), layers: [])
        return ResolvedImage(manifestBytes: [], manifestDigest: configDigest, manifest: manifest, configBytes: configBytes,
                             config: config, layerPaths: entry.layers, layersKnown: false, names: entry.repoTags ?? [])
    }
}
