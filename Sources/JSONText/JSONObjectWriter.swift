/// Compact JSON text for the small flat records Bulkhead writes on every container start (state.json, the audit
/// log's line), written by hand: JSONEncoder's generic machinery (encoder containers and their metadata, made the
/// first time in each process) cost more than the records themselves, about 5% of a `run` in perf.
///
/// Output is what JSONEncoder writes with `.withoutEscapingSlashes`: strings escape the quote, the backslash and
/// control characters (RFC 8259 §7) and keep every other character as UTF-8; dictionaries are written with their keys
/// sorted. Fields are written in the order they are added; nil optionals are left out, as synthesized `Encodable`
/// conformances leave them out.
public struct JSONObjectWriter: Sendable {
    private var bytes: [UInt8] = [UInt8(ascii: "{")]
    private var empty = true

    public init() {}

    public mutating func field(_ key: String, _ value: String?) {
        guard let value else { return }
        name(key)
        Self.appendString(value, to: &bytes)
    }

    public mutating func field(_ key: String, _ value: Bool) {
        name(key)
        bytes += value ? Array("true".utf8) : Array("false".utf8)
    }

    // Integers by concrete type: a generic `BinaryInteger` entry point would be called unspecialized from other
    // modules and look its witnesses up at run time.
    public mutating func field(_ key: String, _ value: Int64) {
        name(key)
        bytes += Array(String(value).utf8)
    }

    public mutating func field(_ key: String, _ value: UInt64) {
        name(key)
        bytes += Array(String(value).utf8)
    }

    /// A string-to-string dictionary, keys sorted.
    public mutating func field(_ key: String, _ value: [String: String]?) {
        guard let value else { return }
        name(key)
        bytes.append(UInt8(ascii: "{"))
        var firstEntry = true
        for k in value.keys.sorted() {
            if !firstEntry { bytes.append(UInt8(ascii: ",")) }
            firstEntry = false
            Self.appendString(k, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
            Self.appendString(value[k]!, to: &bytes)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    /// An array of strings.
    public mutating func field(_ key: String, _ value: [String]?) {
        guard let value else { return }
        name(key)
        bytes.append(UInt8(ascii: "["))
        for (i, s) in value.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            Self.appendString(s, to: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// An array of objects, each written by `body` into its own writer.
    public mutating func field<T>(_ key: String, objects value: [T]?, _ body: (T, inout JSONObjectWriter) -> Void) {
        guard let value else { return }
        name(key)
        bytes.append(UInt8(ascii: "["))
        for (i, item) in value.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            var w = JSONObjectWriter()
            body(item, &w)
            bytes += w.finish()
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// A value already encoded as JSON (a nested object another encoder wrote).
    public mutating func field(_ key: String, json: [UInt8]?) {
        guard let json else { return }
        name(key)
        bytes += json
    }

    /// The finished object.
    public func finish() -> [UInt8] { bytes + [UInt8(ascii: "}")] }

    private mutating func name(_ key: String) {
        if !empty { bytes.append(UInt8(ascii: ",")) }
        empty = false
        Self.appendString(key, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0a: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0d: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0c: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0..<0x20: out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 0xf)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
