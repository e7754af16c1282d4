import CArchive
import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Limits that stop a hostile layer (a decompression bomb, a tar of a million empty files) before it fills the disk.
public struct UnpackLimits: Sendable, Equatable {
    /// Most uncompressed bytes (the tar stream) one layer may have. Default 32 GiB.
    public var maxBytes: Int64
    /// Most entries one layer may have. Default 2 000 000.
    public var maxEntries: Int

    public init(maxBytes: Int64 = 32 << 30, maxEntries: Int = 2_000_000) {
        self.maxBytes = maxBytes
        self.maxEntries = maxEntries
    }
}

/// What streaming one layer blob produced.
struct LayerResult {
    var digest: Digest          // of the blob as stored (compressed)
    var size: Int64
    var diffID: Digest          // of the uncompressed tar stream
    var uncompressedSize: Int64
    var entries: Int
    /// libarchive's code for the compression found (ARCHIVE_FILTER_NONE, _GZIP, _ZSTD, …).
    var filter: Int32
}

/// Streams one layer blob exactly once: the compressed bytes are hashed, counted and copied into the staged
/// blob file; libarchive decompresses them (gzip, zstd, or none) through a `raw` reader whose output is hashed
/// for the diff ID and fed to a second libarchive reader that parses the tar and unpacks it into a snapshot.
final class LayerPipeline {
    private let source: ByteSource
    private let blobFD: Int32
    private let name: String
    private let expectedSize: Int64?
    private let expectedDigest: Digest?
    private let limits: UnpackLimits
    private let progress: (Int64) -> Void

    private var compressed = SHA256Hasher()
    private var uncompressed = SHA256Hasher()
    private var sourceDone = false
    private var outerDone = false
    private var failure: Error?
    private let buffer: UnsafeMutableRawBufferPointer
    private var outer: OpaquePointer?
    private var inner: OpaquePointer?
    private let layerForErrors: Digest

    /// - Parameters:
    ///   - blobFD: the staged blob file to copy the compressed bytes into (borrowed; -1 for none).
    ///   - expectedSize: the descriptor's size; reading stops one byte past it.
    init(source: ByteSource, blobFD: Int32, name: String, layer: Digest, expectedDigest: Digest?, expectedSize: Int64?, limits: UnpackLimits,
         progress: @escaping (Int64) -> Void = { _ in }) {
        self.source = source
        self.blobFD = blobFD
        self.name = name
        self.layerForErrors = layer
        self.expectedSize = expectedSize
        self.expectedDigest = expectedDigest
        self.limits = limits
        self.progress = progress
        buffer = .allocate(byteCount: 1 << 20, alignment: 64)
    }

    deinit {
        if let inner { archive_read_free(inner) }
        if let outer { archive_read_free(outer) }
        buffer.deallocate()
    }

    // MARK: the two libarchive readers

    /// Called by the outer reader: the next chunk of compressed bytes from the source.
    fileprivate func readCompressed(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        if sourceDone { return 0 }
        do {
            var want = buffer.count
            if let expectedSize {   // never read more than one byte past the declared size
                want = Int(min(Int64(want), max(1, expectedSize + 1 - compressed.count)))
            }
            let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]))
            if n == 0 { sourceDone = true; return 0 }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            compressed.update(chunk)
            if blobFD >= 0 { try FileDescriptor.writeAllBorrowed(blobFD, chunk, path: name) }
            progress(Int64(n))
            if let expectedSize, compressed.count > expectedSize {
                throw ImageError.sizeMismatch(blob: name, expected: expectedSize, actual: compressed.count)
            }
            out?.pointee = UnsafeRawPointer(buffer.baseAddress!)
            return n
        } catch {
            failure = failure ?? error
            return -1
        }
    }

    /// Called by the inner (tar) reader: the next chunk of uncompressed bytes.
    fileprivate func readUncompressed(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        guard let outer, !outerDone else { return 0 }
        var block: UnsafeRawPointer?
        var size = 0
        var offset: la_int64_t = 0
        let r = archive_read_data_block(outer, &block, &size, &offset)
        if r == ARCHIVE_EOF { outerDone = true; return 0 }
        if r < ARCHIVE_WARN {
            failure = failure ?? ArchiveError(outer, context: "blob \(name)")
            return -1
        }
        guard let block, size > 0 else { return readUncompressed(out) }
        uncompressed.update(UnsafeRawBufferPointer(start: block, count: size))
        if uncompressed.count > limits.maxBytes {
            failure = failure ?? ImageError.limitExceeded(layer: layerForErrors, problem: "more than \(limits.maxBytes) bytes uncompressed")
            return -1
        }
        out?.pointee = block
        return size
    }

    /// Runs the pipeline. With `root`, the tar is unpacked into that snapshot directory; without, the layer is only
    /// decompressed and hashed (to check its diff ID).
    func run(into root: Int32?, fsyncFiles: Bool = false) throws -> LayerResult {
        let context = Unmanaged.passUnretained(self).toOpaque()
        guard let outer = archive_read_new(), let inner = archive_read_new() else { throw ArchiveError(message: "libarchive: out of memory") }
        self.outer = outer
        self.inner = inner
        archive_read_support_filter_all(outer)
        archive_read_support_format_raw(outer)
        archive_read_support_format_tar(inner)
        var entries = 0
        do {
            guard archive_read_open(outer, context, nil, { _, ctx, out in
                Unmanaged<LayerPipeline>.fromOpaque(ctx!).takeUnretainedValue().readCompressed(out)
            }, nil) == ARCHIVE_OK else { throw failure ?? ArchiveError(outer, context: "blob \(name)") }
            var rawEntry: OpaquePointer?
            let hr = archive_read_next_header(outer, &rawEntry)
            if hr == ARCHIVE_EOF { throw ImageError.badLayer(layer: layerForErrors, problem: "empty blob") }
            guard hr >= ARCHIVE_WARN else { throw failure ?? ArchiveError(outer, context: "blob \(name)") }

            guard archive_read_open(inner, context, nil, { _, ctx, out in
                Unmanaged<LayerPipeline>.fromOpaque(ctx!).takeUnretainedValue().readUncompressed(out)
            }, nil) == ARCHIVE_OK else { throw failure ?? ArchiveError(inner, context: "layer \(layerForErrors)") }

            let writer = root.map { SnapshotWriter(root: $0, layer: layerForErrors, fsyncFiles: fsyncFiles) }
            defer { writer?.closeCache() }
            var entry: OpaquePointer?
            while true {
                let r = archive_read_next_header(inner, &entry)
                if r == ARCHIVE_EOF { break }
                if r < ARCHIVE_WARN { throw failure ?? ArchiveError(inner, context: "layer \(layerForErrors) (tar)") }
                entries += 1
                if entries > limits.maxEntries {
                    throw ImageError.limitExceeded(layer: layerForErrors, problem: "more than \(limits.maxEntries) entries")
                }
                if archive_entry_size_is_set(entry) != 0, archive_entry_size(entry) > limits.maxBytes {
                    throw ImageError.limitExceeded(layer: layerForErrors, problem: "an entry claims \(archive_entry_size(entry)) bytes")
                }
                if let writer {
                    try writer.apply(entry: entry!, archive: inner)
                } else {
                    _ = archive_read_data_skip(inner)
                }
                if let failure { throw failure }
            }
            try writer?.finish()
            // The diff ID covers the whole uncompressed stream, end-of-archive padding included.
            var sink: UnsafeRawPointer?
            while readUncompressed(&sink) > 0 {}
            if let failure { throw failure }
        } catch {
            // A damaged blob usually shows as a tar or decompression error first; name the real cause.
            try? drainSource()
            try checkBlob()
            throw error
        }
        try drainSource()
        try checkBlob()
        return LayerResult(digest: compressed.finalize(), size: compressed.count, diffID: uncompressed.finalize(),
                           uncompressedSize: uncompressed.count, entries: entries, filter: archive_filter_code(outer, 0))
    }

    private func drainSource() throws {
        var sink: UnsafeRawPointer?
        while !sourceDone {
            if readCompressed(&sink) < 0 { throw failure! }
        }
    }

    /// Size and digest checks against the descriptor, once the whole source has been read.
    private func checkBlob() throws {
        guard sourceDone else { return }
        if let expectedSize, compressed.count != expectedSize {
            throw ImageError.sizeMismatch(blob: name, expected: expectedSize, actual: compressed.count)
        }
        if let expectedDigest, compressed.finalize() != expectedDigest {
            throw ImageError.digestMismatch(blob: name, expected: expectedDigest, actual: compressed.finalize())
        }
    }

    var compressedDigest: Digest { compressed.finalize() }
}

/// Copies a blob that needs no unpacking (a manifest, a config, or a layer whose snapshot already exists), hashing
/// and counting it on the way. Reads at most one byte more than `expectedSize`.
func copyBlob(from source: ByteSource, to fd: Int32, name: String, expectedSize: Int64?, progress: (Int64) -> Void = { _ in }) throws -> (Digest, Int64) {
    var hasher = SHA256Hasher()
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
    defer { buffer.deallocate() }
    while true {
        let n = try source.read(into: buffer)
        if n == 0 { break }
        let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
        hasher.update(chunk)
        if fd >= 0 { try FileDescriptor.writeAllBorrowed(fd, chunk, path: name) }
        progress(Int64(n))
        if let expectedSize, hasher.count > expectedSize {
            throw ImageError.sizeMismatch(blob: name, expected: expectedSize, actual: hasher.count)
        }
    }
    if let expectedSize, hasher.count != expectedSize {
        throw ImageError.sizeMismatch(blob: name, expected: expectedSize, actual: hasher.count)
    }
    return (hasher.finalize(), hasher.count)
}

extension FileDescriptor {
    /// Writes all of `bytes` to a raw fd this code does not own.
    static func writeAllBorrowed(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = try sys("write", path) { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
            offset += n
        }
    }
}
