/// Bulkhead's host↔guest wire format, shared by the host side (hypervisor drivers) and the guest
/// agent (`bulkhead-agent`, PID 1 inside the microVM). Pure Swift, no Foundation.
///
/// A stream of frames over a virtio-console port. Every frame:
///
///     offset  size  field
///     0       2     magic "BH" (0x42 0x48)
///     2       1     protocol version (currently 1)
///     3       1     message type (``MessageType``)
///     4       4     payload length, big-endian, at most the receiver's limit
///     8       n     payload (fields of the message, see ``Message``)
///
/// Neither side trusts the other: every length is checked against a bound before anything is
/// allocated, unknown types and versions are refused, and a frame must be consumed exactly by its
/// message's fields (no trailing bytes). After any error the byte stream cannot be resynchronised,
/// so the decoder stays failed and the connection must be dropped.
public enum GuestFrame {
    /// The frame magic, "BH".
    public static let magic: (UInt8, UInt8) = (0x42, 0x48)
    /// The protocol version this build speaks (frames carry it; hello negotiates it). Version 2 added
    /// listProcesses/processList and statsRequest/stats. Hello frames carry ``minimumVersion`` (so any peer
    /// can read them); after the exchange both sides encode with the negotiated version.
    public static let version: UInt8 = 2
    /// The oldest version this build still speaks.
    public static let minimumVersion: UInt8 = 1
    /// Bytes before the payload.
    public static let headerSize = 8
}

/// Size bounds applied when encoding and decoding. Both sides use the defaults unless they agree otherwise.
public struct GuestProtocolLimits: Sendable, Equatable {
    /// Largest payload of any frame.
    public var maxPayload: Int
    /// Largest chunk of stdio data in one frame.
    public var maxDataChunk: Int
    /// Largest JSON document (OCI spec or process) in one frame.
    public var maxDocument: Int
    /// Largest short string (ids, names, messages).
    public var maxString: Int
    /// Most arguments or list entries in one field.
    public var maxListCount: Int

    public init(maxPayload: Int = 1 << 20, maxDataChunk: Int = 64 << 10, maxDocument: Int = (1 << 20) - 4096,
                maxString: Int = 4096, maxListCount: Int = 1024) {
        self.maxPayload = maxPayload
        self.maxDataChunk = maxDataChunk
        self.maxDocument = maxDocument
        self.maxString = maxString
        self.maxListCount = maxListCount
    }

    public static let `default` = GuestProtocolLimits()
}

/// Why a frame was refused.
public enum GuestProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    case badMagic(UInt8, UInt8)
    case unsupportedVersion(UInt8)
    case unknownMessageType(UInt8)
    case payloadTooLarge(length: Int, limit: Int)
    case fieldTooLarge(field: String, length: Int, limit: Int)
    case truncated(field: String)
    case trailingBytes(Int)
    case invalidUTF8(field: String)
    case invalidValue(field: String, value: Int)
    case noCommonVersion(local: ClosedRange<UInt8>, remote: ClosedRange<UInt8>)
    case typeNotInVersion(type: UInt8, version: UInt8)

    public var description: String {
        switch self {
        case let .badMagic(a, b):
            return "guest protocol: bad frame magic 0x\(String(a, radix: 16)) 0x\(String(b, radix: 16)) (expected \"BH\"); the peer is not a Bulkhead agent or the stream is out of step — drop the connection"
        case let .unsupportedVersion(v):
            return "guest protocol: frame version \(v) is not spoken here (\(GuestFrame.minimumVersion)...\(GuestFrame.version)); rebuild the guest initramfs with this bulkhead"
        case let .unknownMessageType(t):
            return "guest protocol: unknown message type \(t); host and agent builds differ — rebuild the initramfs"
        case let .payloadTooLarge(length, limit):
            return "guest protocol: frame payload of \(length) bytes exceeds the limit of \(limit)"
        case let .fieldTooLarge(field, length, limit):
            return "guest protocol: field \(field) of \(length) exceeds the limit of \(limit)"
        case let .truncated(field):
            return "guest protocol: frame ends inside field \(field)"
        case let .trailingBytes(n):
            return "guest protocol: \(n) unexpected bytes after the message's last field"
        case let .invalidUTF8(field):
            return "guest protocol: field \(field) is not valid UTF-8"
        case let .invalidValue(field, value):
            return "guest protocol: field \(field) has the invalid value \(value)"
        case let .typeNotInVersion(type, version):
            return "guest protocol: message type \(type) does not exist in protocol version \(version); the peer is older — rebuild the guest initramfs with this bulkhead"
        case let .noCommonVersion(local, remote):
            return "guest protocol: no common version (here \(local.lowerBound)...\(local.upperBound), peer \(remote.lowerBound)...\(remote.upperBound)); rebuild the guest initramfs with this bulkhead"
        }
    }
}
