import CNettle

/// A content digest as OCI writes it: `algorithm:hex`. Only `sha256` is accepted (the only algorithm
/// the image-spec requires, and the only one in use); anything else is refused when parsed.
public struct Digest: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    /// The 64 lower-case hex digits of the SHA-256.
    public let hex: String

    public var description: String { "sha256:" + hex }
    /// The first 12 hex digits, as `image ls` shows them.
    public var short: String { String(hex.prefix(12)) }

    /// Parses `sha256:<64 hex>`; throws ``ImageError/invalidDigest(_:)`` otherwise.
    public init(parsing text: String) throws {
        guard text.hasPrefix("sha256:") else { throw ImageError.invalidDigest(text) }
        let hex = String(text.dropFirst(7))
        guard Digest.isHex64(hex) else { throw ImageError.invalidDigest(text) }
        self.hex = hex
    }

    /// From 64 lower-case hex digits.
    public init?(hex: String) {
        guard Digest.isHex64(hex) else { return nil }
        self.hex = hex
    }

    /// The digest of `bytes`.
    public init(of bytes: some DataProtocolLike) {
        var hasher = SHA256Hasher()
        bytes.withBytes { hasher.update($0) }
        self = hasher.finalize()
    }

    static func isHex64(_ s: String) -> Bool {
        let u = s.utf8
        return u.count == 64 && u.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: text)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    public static func < (a: Digest, b: Digest) -> Bool { a.hex < b.hex }
}

/// Byte containers the digest can be computed over without copying.
public protocol DataProtocolLike {
    func withBytes(_ body: (UnsafeRawBufferPointer) -> Void)
}

extension Array: DataProtocolLike where Element == UInt8 {
    public func withBytes(_ body: (UnsafeRawBufferPointer) -> Void) { withUnsafeBytes(body) }
}

/// Incremental SHA-256 over streamed bytes (Nettle, with its SHA-NI code where the CPU has it), with a byte count.
public struct SHA256Hasher {
    private var context = sha256_ctx()
    public private(set) var count: Int64 = 0

    public init() { nettle_sha256_init(&context) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        nettle_sha256_update(&context, bytes.count, base.assumingMemoryBound(to: UInt8.self))
        count += Int64(bytes.count)
    }

    /// The digest of everything so far (the hasher itself is unchanged).
    public func finalize() -> Digest {
        var copy = context
        var bytes = [UInt8](repeating: 0, count: 32)
        nettle_sha256_digest(&copy, 32, &bytes)
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return Digest(hex: String(decoding: out, as: UTF8.self))!
    }
}
