import CNettle

/// SHA-256 through nettle (already linked into the static binary for libarchive).
public enum SHA256 {
    public static func hex(_ bytes: [UInt8]) -> String {
        var ctx = sha256_ctx()
        nettle_sha256_init(&ctx)
        bytes.withUnsafeBufferPointer { nettle_sha256_update(&ctx, $0.count, $0.baseAddress) }
        var digest = [UInt8](repeating: 0, count: 32)
        nettle_sha256_digest(&ctx, 32, &digest)
        let hexDigits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in digest { out.append(hexDigits[Int(b >> 4)]); out.append(hexDigits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
