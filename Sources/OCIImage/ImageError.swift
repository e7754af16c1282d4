/// Why an image operation was refused. Every case names the input (blob, path, reference) and says what
/// to do next; the import that raised it has left the store exactly as it was.
public enum ImageError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalidDigest(String)
    case digestMismatch(blob: String, expected: Digest, actual: Digest)
    case sizeMismatch(blob: String, expected: Int64, actual: Int64)
    case diffIDMismatch(layer: Digest, expected: Digest, actual: Digest)
    case malformedJSON(blob: String, problem: String)
    case unknownMediaType(blob: String, mediaType: String)
    case missingBlob(String, in: String)
    case unrecognisedSource(String)
    case noMatchingPlatform(wanted: String, available: [String])
    case ambiguousImage(source: String, candidates: [String])
    case hostileEntry(layer: Digest, entry: String, problem: String)
    case limitExceeded(layer: Digest, problem: String)
    case badLayer(layer: Digest, problem: String)
    case notFound(String)
    case ambiguousReference(String, matches: [String])
    case invalidReference(String, problem: String)
    case inUse(String, users: [String])
    case invalidPlatform(String)
    case layerCountMismatch(manifest: Digest, layers: Int, diffIDs: Int)

    public var description: String {
        switch self {
        case .invalidDigest(let text):
            return "invalid digest \"\(text)\": expected sha256:<64 lower-case hex digits>"
        case .digestMismatch(let blob, let expected, let actual):
            return "blob \(blob): content digest is \(actual), not \(expected) as its descriptor says; the image is damaged or was tampered with — export it again from a trusted source"
        case .sizeMismatch(let blob, let expected, let actual):
            return "blob \(blob): \(actual) bytes, but its descriptor says \(expected)\(actual < expected ? " (truncated)" : ""); the image is damaged — export it again"
        case .diffIDMismatch(let layer, let expected, let actual):
            return "layer \(layer): uncompressed digest is \(actual), but the image config's rootfs.diff_ids says \(expected); the image is damaged or was tampered with"
        case .malformedJSON(let blob, let problem):
            return "blob \(blob): malformed JSON: \(problem)"
        case .unknownMediaType(let blob, let mediaType):
            return "blob \(blob): unknown media type \"\(mediaType)\"; Bulkhead imports OCI and Docker v2 images (manifests, indexes, tar/gzip/zstd layers)"
        case .missingBlob(let blob, let source):
            return "\(source): blob \(blob) is referenced but missing; the export is incomplete — export it again"
        case .unrecognisedSource(let path):
            return "\(path): not an OCI layout directory, OCI archive or docker-archive (expected oci-layout + index.json, or manifest.json)"
        case .noMatchingPlatform(let wanted, let available):
            return "no image for platform \(wanted); the index offers: \(available.isEmpty ? "none" : available.joined(separator: ", ")) — choose one with --platform"
        case .ambiguousImage(let source, let candidates):
            return "\(source) holds several images (\(candidates.joined(separator: ", "))); choose one with --ref"
        case .hostileEntry(let layer, let entry, let problem):
            return "layer \(layer): entry \"\(entry)\" refused: \(problem)"
        case .limitExceeded(let layer, let problem):
            return "layer \(layer): \(problem); refusing it as a likely decompression bomb (raise the limit with --max-layer-bytes / --max-layer-entries if the image is trusted)"
        case .badLayer(let layer, let problem):
            return "layer \(layer): \(problem)"
        case .notFound(let reference):
            return "no image \"\(reference)\" in the store; list images with `bulkhead image ls`"
        case .ambiguousReference(let reference, let matches):
            return "\"\(reference)\" matches several images (\(matches.joined(separator: ", "))); give more digits"
        case .invalidReference(let reference, let problem):
            return "invalid image reference \"\(reference)\": \(problem)"
        case .inUse(let what, let users):
            return "\(what) is in use by \(users.joined(separator: ", ")); stop and delete those containers first"
        case .invalidPlatform(let text):
            return "invalid platform \"\(text)\": expected os/arch or os/arch/variant, e.g. linux/amd64 or linux/arm/v7"
        case .layerCountMismatch(let manifest, let layers, let diffIDs):
            return "manifest \(manifest): \(layers) layers but the config lists \(diffIDs) rootfs.diff_ids; the image is malformed"
        }
    }
}
