// A fast reading of config.json for the common case, beside JSONDecoder.
//
// JSONDecoder builds a generic container, a box class and a keyed container per Codable type it meets; the first time
// in each process that costs metadata instantiation and conformance lookups, which perf showed as about a tenth of a
// container start (`bulkhead run`, bench/start.sh). This reader parses the bytes into a small tree and builds the
// same `Spec` by hand. It returns nil (and `Spec.decode` uses JSONDecoder, which stays the reference and writes every
// error message) on anything it is not sure of: a syntax error, a missing required field, a value of another type,
// a number that is not a plain integer where an integer is wanted, a duplicate key. A test compares the two readings
// on every spec the tests use and on many mutated ones.

/// A parsed JSON value (numbers keep their text until a field says what they are).
enum FastJSON {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([FastJSON])
    case object([(String, FastJSON)])
}

/// The reading gave up: JSONDecoder decides.
struct FastJSONBail: Error {}

struct FastJSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var i = 0
    var depth = 0

    static func parse(_ bytes: [UInt8]) -> FastJSON? {
        bytes.withUnsafeBufferPointer { buffer in
            var p = FastJSONParser(bytes: buffer)
            guard let v = try? p.value() else { return nil }
            p.skipSpace()
            return p.i == buffer.count ? v : nil
        }
    }

    mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0a || bytes[i] == 0x0d || bytes[i] == 0x09 { i += 1 }
    }

    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= bytes.count else { throw FastJSONBail() }
        for k in 0..<n where bytes[i + k] != word.utf8Start[k] { throw FastJSONBail() }
        i += n
    }

    mutating func value() throws -> FastJSON {
        skipSpace()
        guard i < bytes.count else { throw FastJSONBail() }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            depth += 1
            guard depth < 100 else { throw FastJSONBail() }
            i += 1
            var pairs: [(String, FastJSON)] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; depth -= 1; return .object(pairs) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw FastJSONBail() }
                let key = try string()
                // JSONDecoder's answer to a duplicate key is its own business.
                if pairs.contains(where: { $0.0 == key }) { throw FastJSONBail() }
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw FastJSONBail() }
                i += 1
                pairs.append((key, try value()))
                skipSpace()
                guard i < bytes.count else { throw FastJSONBail() }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                guard bytes[i] == UInt8(ascii: "}") else { throw FastJSONBail() }
                i += 1
                depth -= 1
                return .object(pairs)
            }
        case UInt8(ascii: "["):
            depth += 1
            guard depth < 100 else { throw FastJSONBail() }
            i += 1
            var items: [FastJSON] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; depth -= 1; return .array(items) }
            while true {
                items.append(try value())
                skipSpace()
                guard i < bytes.count else { throw FastJSONBail() }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                guard bytes[i] == UInt8(ascii: "]") else { throw FastJSONBail() }
                i += 1
                depth -= 1
                return .array(items)
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            return .number(try number())
        }
    }

    /// A number as JSON writes it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    mutating func number() throws -> String {
        let start = i
        func digits(_ p: inout FastJSONParser) -> Int {
            let s = p.i
            while p.i < p.bytes.count, p.bytes[p.i] >= UInt8(ascii: "0"), p.bytes[p.i] <= UInt8(ascii: "9") { p.i += 1 }
            return p.i - s
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
        let intStart = i
        let n = digits(&self)
        guard n > 0, !(n > 1 && bytes[intStart] == UInt8(ascii: "0")) else { throw FastJSONBail() }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits(&self) > 0 else { throw FastJSONBail() }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits(&self) > 0 else { throw FastJSONBail() }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
    }

    mutating func string() throws -> String {
        i += 1   // the opening quote
        let start = i
        // The common case: no escapes, valid UTF-8 taken as it is.
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                let s = UnsafeBufferPointer(rebasing: bytes[start..<i])
                i += 1
                guard let text = String(validating: s, as: UTF8.self) else { throw FastJSONBail() }
                return text
            }
            if b == UInt8(ascii: "\\") { break }
            guard b >= 0x20 else { throw FastJSONBail() }
            i += 1
        }
        var out = Array(UnsafeBufferPointer(rebasing: bytes[start..<i]))
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                guard let text = String(validating: out, as: UTF8.self) else { throw FastJSONBail() }
                return text
            }
            guard b >= 0x20 else { throw FastJSONBail() }
            if b != UInt8(ascii: "\\") { out.append(b); i += 1; continue }
            i += 1
            guard i < bytes.count else { throw FastJSONBail() }
            let e = bytes[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    // A surrogate pair: the low half must follow.
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else { throw FastJSONBail() }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw FastJSONBail() }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let u = Unicode.Scalar(scalar) else { throw FastJSONBail() }
                out += Array(String(Character(u)).utf8)
            default: throw FastJSONBail()
            }
        }
        throw FastJSONBail()
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw FastJSONBail() }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw FastJSONBail()
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }
}

/// Field access on a parsed object, with Codable's meaning: an optional field that is missing or null is nil; a
/// required one that is missing, or any value of the wrong type, gives up.
struct FastObject {
    let pairs: [(String, FastJSON)]

    init(_ value: FastJSON) throws {
        guard case .object(let p) = value else { throw FastJSONBail() }
        pairs = p
    }

    func raw(_ key: String) -> FastJSON? {
        for (k, v) in pairs where k == key {
            if case .null = v { return nil }
            return v
        }
        return nil
    }

    func required<T>(_ key: String, _ read: (FastJSON) throws -> T) throws -> T {
        guard let v = raw(key) else { throw FastJSONBail() }
        return try read(v)
    }

    func optional<T>(_ key: String, _ read: (FastJSON) throws -> T) throws -> T? {
        guard let v = raw(key) else { return nil }
        return try read(v)
    }
}

enum FastRead {
    static func string(_ v: FastJSON) throws -> String {
        guard case .string(let s) = v else { throw FastJSONBail() }
        return s
    }

    static func bool(_ v: FastJSON) throws -> Bool {
        guard case .bool(let b) = v else { throw FastJSONBail() }
        return b
    }

    /// A plain integer literal (no fraction, no exponent) in `T`'s range.
    static func integer<T: FixedWidthInteger>(_ v: FastJSON) throws -> T {
        guard case .number(let text) = v, let n = T(text) else { throw FastJSONBail() }
        return n
    }

    static func uint32(_ v: FastJSON) throws -> UInt32 { try integer(v) }
    static func uint64(_ v: FastJSON) throws -> UInt64 { try integer(v) }
    static func int(_ v: FastJSON) throws -> Int { try integer(v) }
    static func int64(_ v: FastJSON) throws -> Int64 { try integer(v) }

    static func array<T>(_ v: FastJSON, _ read: (FastJSON) throws -> T) throws -> [T] {
        guard case .array(let items) = v else { throw FastJSONBail() }
        var out: [T] = []
        out.reserveCapacity(items.count)
        for item in items {
            // null inside an array is not "absent": JSONDecoder refuses it for a non-optional element.
            if case .null = item { throw FastJSONBail() }
            out.append(try read(item))
        }
        return out
    }

    static func strings(_ v: FastJSON) throws -> [String] { try array(v, string) }

    static func stringMap(_ v: FastJSON) throws -> [String: String] {
        guard case .object(let pairs) = v else { throw FastJSONBail() }
        var out: [String: String] = [:]
        for (k, value) in pairs {
            guard case .string(let s) = value else { throw FastJSONBail() }
            out[k] = s
        }
        return out
    }

    /// `JSONValue`, as its Codable init reads it (numbers as Double).
    static func jsonValue(_ v: FastJSON) throws -> JSONValue {
        switch v {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .number(let text):
            guard let d = Double(text) else { throw FastJSONBail() }
            return .number(d)
        case .string(let s): return .string(s)
        case .array(let items): return .array(try items.map(jsonValue))
        case .object(let pairs):
            var out: [String: JSONValue] = [:]
            for (k, value) in pairs { out[k] = try jsonValue(value) }
            return .object(out)
        }
    }
}

extension Spec {
    /// The fast reading (see the top of this file); nil means "ask JSONDecoder".
    static func fastRead(_ bytes: [UInt8]) -> Spec? {
        guard let tree = FastJSONParser.parse(bytes) else { return nil }
        return try? Spec(fast: tree)
    }

    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(ociVersion: try o.required("ociVersion", FastRead.string),
                  process: try o.optional("process", Process.init(fast:)),
                  root: try o.optional("root", Root.init(fast:)),
                  hostname: try o.optional("hostname", FastRead.string),
                  domainname: try o.optional("domainname", FastRead.string),
                  mounts: try o.optional("mounts") { try FastRead.array($0, Mount.init(fast:)) },
                  hooks: try o.optional("hooks", Hooks.init(fast:)),
                  annotations: try o.optional("annotations", FastRead.stringMap),
                  linux: try o.optional("linux", Linux.init(fast:)))
    }
}

extension Spec.Process {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(terminal: try o.optional("terminal", FastRead.bool),
                  user: try o.required("user", Spec.User.init(fast:)),
                  args: try o.optional("args", FastRead.strings),
                  env: try o.optional("env", FastRead.strings),
                  cwd: try o.required("cwd", FastRead.string),
                  capabilities: try o.optional("capabilities", Spec.Capabilities.init(fast:)),
                  rlimits: try o.optional("rlimits") { try FastRead.array($0, Spec.Rlimit.init(fast:)) },
                  noNewPrivileges: try o.optional("noNewPrivileges", FastRead.bool),
                  oomScoreAdj: try o.optional("oomScoreAdj", FastRead.int))
        consoleSize = try o.optional("consoleSize", Spec.ConsoleSize.init(fast:))
        commandLine = try o.optional("commandLine", FastRead.string)
        apparmorProfile = try o.optional("apparmorProfile", FastRead.string)
        selinuxLabel = try o.optional("selinuxLabel", FastRead.string)
        ioPriority = try o.optional("ioPriority", Spec.IOPriority.init(fast:))
        scheduler = try o.optional("scheduler", FastRead.jsonValue)
    }
}

extension Spec.ConsoleSize {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(height: try o.required("height", FastRead.uint32), width: try o.required("width", FastRead.uint32))
    }
}

extension Spec.User {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(uid: try o.required("uid", FastRead.uint32), gid: try o.required("gid", FastRead.uint32),
                  umask: try o.optional("umask", FastRead.uint32),
                  additionalGids: try o.optional("additionalGids") { try FastRead.array($0, FastRead.uint32) })
        username = try o.optional("username", FastRead.string)
    }
}

extension Spec.Capabilities {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(bounding: try o.optional("bounding", FastRead.strings), effective: try o.optional("effective", FastRead.strings),
                  inheritable: try o.optional("inheritable", FastRead.strings), permitted: try o.optional("permitted", FastRead.strings),
                  ambient: try o.optional("ambient", FastRead.strings))
    }
}

extension Spec.Rlimit {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(type: try o.required("type", FastRead.string), hard: try o.required("hard", FastRead.uint64),
                  soft: try o.required("soft", FastRead.uint64))
    }
}

extension Spec.IOPriority {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(class: try o.required("class", FastRead.string), priority: try o.required("priority", FastRead.int))
    }
}

extension Spec.Root {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(path: try o.required("path", FastRead.string), readonly: try o.optional("readonly", FastRead.bool))
    }
}

extension Spec.Mount {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(destination: try o.required("destination", FastRead.string), type: try o.optional("type", FastRead.string),
                  source: try o.optional("source", FastRead.string), options: try o.optional("options", FastRead.strings))
        uidMappings = try o.optional("uidMappings") { try FastRead.array($0, Spec.IDMapping.init(fast:)) }
        gidMappings = try o.optional("gidMappings") { try FastRead.array($0, Spec.IDMapping.init(fast:)) }
    }
}

extension Spec.Hooks {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init()
        func hooks(_ key: String) throws -> [Spec.Hook]? { try o.optional(key) { try FastRead.array($0, Spec.Hook.init(fast:)) } }
        prestart = try hooks("prestart")
        createRuntime = try hooks("createRuntime")
        createContainer = try hooks("createContainer")
        startContainer = try hooks("startContainer")
        poststart = try hooks("poststart")
        poststop = try hooks("poststop")
    }
}

extension Spec.Hook {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(path: try o.required("path", FastRead.string), args: try o.optional("args", FastRead.strings),
                  env: try o.optional("env", FastRead.strings), timeout: try o.optional("timeout", FastRead.int))
    }
}

extension Spec.Linux {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init()
        namespaces = try o.optional("namespaces") { try FastRead.array($0, Spec.Namespace.init(fast:)) }
        uidMappings = try o.optional("uidMappings") { try FastRead.array($0, Spec.IDMapping.init(fast:)) }
        gidMappings = try o.optional("gidMappings") { try FastRead.array($0, Spec.IDMapping.init(fast:)) }
        timeOffsets = try o.optional("timeOffsets", FastRead.jsonValue)
        devices = try o.optional("devices") { try FastRead.array($0, Spec.Device.init(fast:)) }
        cgroupsPath = try o.optional("cgroupsPath", FastRead.string)
        resources = try o.optional("resources", Spec.Resources.init(fast:))
        rootfsPropagation = try o.optional("rootfsPropagation", FastRead.string)
        seccomp = try o.optional("seccomp", Spec.Seccomp.init(fast:))
        sysctl = try o.optional("sysctl", FastRead.stringMap)
        maskedPaths = try o.optional("maskedPaths", FastRead.strings)
        readonlyPaths = try o.optional("readonlyPaths", FastRead.strings)
        mountLabel = try o.optional("mountLabel", FastRead.string)
        intelRdt = try o.optional("intelRdt", FastRead.jsonValue)
        personality = try o.optional("personality", FastRead.jsonValue)
    }
}

extension Spec.Namespace {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        guard let type = Spec.NamespaceType(rawValue: try o.required("type", FastRead.string)) else { throw FastJSONBail() }
        self.init(type: type, path: try o.optional("path", FastRead.string))
    }
}

extension Spec.IDMapping {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(containerID: try o.required("containerID", FastRead.uint32), hostID: try o.required("hostID", FastRead.uint32),
                  size: try o.required("size", FastRead.uint32))
    }
}

extension Spec.Device {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(type: try o.required("type", FastRead.string), path: try o.required("path", FastRead.string),
                  major: try o.optional("major", FastRead.int64), minor: try o.optional("minor", FastRead.int64),
                  fileMode: try o.optional("fileMode", FastRead.uint32))
        uid = try o.optional("uid", FastRead.uint32)
        gid = try o.optional("gid", FastRead.uint32)
    }
}

extension Spec.Resources {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(devices: try o.optional("devices") { try FastRead.array($0, Spec.DeviceCgroup.init(fast:)) })
        memory = try o.optional("memory", FastRead.jsonValue)
        cpu = try o.optional("cpu", FastRead.jsonValue)
        pids = try o.optional("pids", FastRead.jsonValue)
        blockIO = try o.optional("blockIO", FastRead.jsonValue)
        hugepageLimits = try o.optional("hugepageLimits", FastRead.jsonValue)
        network = try o.optional("network", FastRead.jsonValue)
        rdma = try o.optional("rdma", FastRead.jsonValue)
        unified = try o.optional("unified", FastRead.stringMap)
    }
}

extension Spec.DeviceCgroup {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(allow: try o.required("allow", FastRead.bool), type: try o.optional("type", FastRead.string),
                  major: try o.optional("major", FastRead.int64), minor: try o.optional("minor", FastRead.int64),
                  access: try o.optional("access", FastRead.string))
    }
}

extension Spec.Seccomp {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(defaultAction: try o.required("defaultAction", FastRead.string),
                  defaultErrnoRet: try o.optional("defaultErrnoRet", FastRead.uint32),
                  architectures: try o.optional("architectures", FastRead.strings),
                  flags: try o.optional("flags", FastRead.strings),
                  syscalls: try o.optional("syscalls") { try FastRead.array($0, Syscall.init(fast:)) })
        listenerPath = try o.optional("listenerPath", FastRead.string)
        listenerMetadata = try o.optional("listenerMetadata", FastRead.string)
    }
}

extension Spec.Seccomp.Syscall {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(names: try o.required("names", FastRead.strings), action: try o.required("action", FastRead.string),
                  errnoRet: try o.optional("errnoRet", FastRead.uint32),
                  args: try o.optional("args") { try FastRead.array($0, Spec.Seccomp.Arg.init(fast:)) })
    }
}

extension Spec.Seccomp.Arg {
    init(fast v: FastJSON) throws {
        let o = try FastObject(v)
        self.init(index: try o.required("index", FastRead.uint32), value: try o.required("value", FastRead.uint64),
                  valueTwo: try o.optional("valueTwo", FastRead.uint64), op: try o.required("op", FastRead.string))
    }
}
