import FoundationEssentials

// The OCI runtime specification's config.json (runtime-spec 1.0 – 1.2), as Codable types.
// Unknown fields are ignored (forward compatibility); a field of the wrong type is refused with its JSON path
// (see `Spec.decode`). Field names follow the spec exactly, so the types double as documentation.

/// The whole config.json of a bundle.
public struct Spec: Codable, Sendable, Equatable {
    public var ociVersion: String
    public var process: Process?
    public var root: Root?
    public var hostname: String?
    public var domainname: String?
    public var mounts: [Mount]?
    public var hooks: Hooks?
    public var annotations: [String: String]?
    public var linux: Linux?

    public init(ociVersion: String = Spec.version, process: Process? = nil, root: Root? = nil, hostname: String? = nil,
                domainname: String? = nil, mounts: [Mount]? = nil, hooks: Hooks? = nil,
                annotations: [String: String]? = nil, linux: Linux? = nil) {
        self.ociVersion = ociVersion; self.process = process; self.root = root; self.hostname = hostname
        self.domainname = domainname; self.mounts = mounts; self.hooks = hooks; self.annotations = annotations
        self.linux = linux
    }

    /// The newest runtime-spec version this runtime implements.
    public static let version = "1.2.0"
    /// The oldest one it accepts.
    public static let minimumVersion = "1.0.0"

    public struct Process: Codable, Sendable, Equatable {
        public var terminal: Bool?
        public var consoleSize: ConsoleSize?
        public var user: User
        public var args: [String]?
        public var commandLine: String?
        public var env: [String]?
        public var cwd: String
        public var capabilities: Capabilities?
        public var rlimits: [Rlimit]?
        public var noNewPrivileges: Bool?
        public var apparmorProfile: String?
        public var oomScoreAdj: Int?
        public var selinuxLabel: String?
        public var ioPriority: IOPriority?
        public var scheduler: JSONValue?

        public init(terminal: Bool? = nil, user: User = User(), args: [String]? = nil, env: [String]? = nil,
                    cwd: String = "/", capabilities: Capabilities? = nil, rlimits: [Rlimit]? = nil,
                    noNewPrivileges: Bool? = nil, oomScoreAdj: Int? = nil) {
            self.terminal = terminal; self.user = user; self.args = args; self.env = env; self.cwd = cwd
            self.capabilities = capabilities; self.rlimits = rlimits; self.noNewPrivileges = noNewPrivileges
            self.oomScoreAdj = oomScoreAdj
        }
    }

    public struct ConsoleSize: Codable, Sendable, Equatable {
        public var height: UInt32
        public var width: UInt32
    }

    public struct User: Codable, Sendable, Equatable {
        public var uid: UInt32
        public var gid: UInt32
        public var umask: UInt32?
        public var additionalGids: [UInt32]?
        public var username: String?
        public init(uid: UInt32 = 0, gid: UInt32 = 0, umask: UInt32? = nil, additionalGids: [UInt32]? = nil) {
            self.uid = uid; self.gid = gid; self.umask = umask; self.additionalGids = additionalGids
        }
    }

    public struct Capabilities: Codable, Sendable, Equatable {
        public var bounding: [String]?
        public var effective: [String]?
        public var inheritable: [String]?
        public var permitted: [String]?
        public var ambient: [String]?
        public init(bounding: [String]? = nil, effective: [String]? = nil, inheritable: [String]? = nil,
                    permitted: [String]? = nil, ambient: [String]? = nil) {
            self.bounding = bounding; self.effective = effective; self.inheritable = inheritable
            self.permitted = permitted; self.ambient = ambient
        }
    }

    public struct Rlimit: Codable, Sendable, Equatable {
        public var type: String
        public var hard: UInt64
        public var soft: UInt64
        public init(type: String, hard: UInt64, soft: UInt64) { self.type = type; self.hard = hard; self.soft = soft }
    }

    public struct IOPriority: Codable, Sendable, Equatable {
        public var `class`: String
        public var priority: Int
    }

    public struct Root: Codable, Sendable, Equatable {
        public var path: String
        public var readonly: Bool?
        public init(path: String, readonly: Bool? = nil) { self.path = path; self.readonly = readonly }
    }

    public struct Mount: Codable, Sendable, Equatable {
        public var destination: String
        public var type: String?
        public var source: String?
        public var options: [String]?
        public var uidMappings: [IDMapping]?
        public var gidMappings: [IDMapping]?
        public init(destination: String, type: String? = nil, source: String? = nil, options: [String]? = nil) {
            self.destination = destination; self.type = type; self.source = source; self.options = options
        }
    }

    public struct Hooks: Codable, Sendable, Equatable {
        /// Deprecated in 1.2 in favour of createRuntime, still run (before createRuntime) when present.
        public var prestart: [Hook]?
        public var createRuntime: [Hook]?
        public var createContainer: [Hook]?
        public var startContainer: [Hook]?
        public var poststart: [Hook]?
        public var poststop: [Hook]?
        public init() {}
    }

    public struct Hook: Codable, Sendable, Equatable {
        public var path: String
        public var args: [String]?
        public var env: [String]?
        public var timeout: Int?
        public init(path: String, args: [String]? = nil, env: [String]? = nil, timeout: Int? = nil) {
            self.path = path; self.args = args; self.env = env; self.timeout = timeout
        }
    }

    public struct Linux: Codable, Sendable, Equatable {
        public var namespaces: [Namespace]?
        public var uidMappings: [IDMapping]?
        public var gidMappings: [IDMapping]?
        public var timeOffsets: JSONValue?
        public var devices: [Device]?
        public var cgroupsPath: String?
        /// Resource limits: applied by the cgroup resource layer (issue 4); carried through untouched here.
        public var resources: Resources?
        public var rootfsPropagation: String?
        /// Applied by the `Confine` target in the container init, last before exec.
        public var seccomp: Seccomp?
        public var sysctl: [String: String]?
        public var maskedPaths: [String]?
        public var readonlyPaths: [String]?
        public var mountLabel: String?
        public var intelRdt: JSONValue?
        public var personality: JSONValue?
        public init(namespaces: [Namespace]? = nil) { self.namespaces = namespaces }
    }

    public struct Namespace: Codable, Sendable, Equatable {
        public var type: NamespaceType
        public var path: String?
        public init(type: NamespaceType, path: String? = nil) { self.type = type; self.path = path }
    }

    public enum NamespaceType: String, Codable, Sendable, CaseIterable {
        case pid, network, mount, ipc, uts, user, cgroup, time
    }

    public struct IDMapping: Codable, Sendable, Equatable {
        public var containerID: UInt32
        public var hostID: UInt32
        public var size: UInt32
        public init(containerID: UInt32, hostID: UInt32, size: UInt32) {
            self.containerID = containerID; self.hostID = hostID; self.size = size
        }
    }

    public struct Device: Codable, Sendable, Equatable {
        public var type: String
        public var path: String
        public var major: Int64?
        public var minor: Int64?
        public var fileMode: UInt32?
        public var uid: UInt32?
        public var gid: UInt32?
        public init(type: String, path: String, major: Int64?, minor: Int64?, fileMode: UInt32? = nil) {
            self.type = type; self.path = path; self.major = major; self.minor = minor; self.fileMode = fileMode
        }
    }

    /// `linux.resources`. Typed so the resource layer (issue 4) can read it; the namespace tier itself only
    /// carries it through.
    public struct Resources: Codable, Sendable, Equatable {
        public var devices: [DeviceCgroup]?
        public var memory: JSONValue?
        public var cpu: JSONValue?
        public var pids: JSONValue?
        public var blockIO: JSONValue?
        public var hugepageLimits: JSONValue?
        public var network: JSONValue?
        public var rdma: JSONValue?
        public var unified: [String: String]?
        public init(devices: [DeviceCgroup]? = nil) { self.devices = devices }
    }

    public struct DeviceCgroup: Codable, Sendable, Equatable {
        public var allow: Bool
        public var type: String?
        public var major: Int64?
        public var minor: Int64?
        public var access: String?
        public init(allow: Bool, type: String? = nil, major: Int64? = nil, minor: Int64? = nil, access: String? = nil) {
            self.allow = allow; self.type = type; self.major = major; self.minor = minor; self.access = access
        }
    }
}

/// Any JSON value, kept as it was (for sections another layer interprets, e.g. seccomp).
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

/// A config.json that could not be used; the message names the JSON path and what is wrong.
public struct SpecError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Spec {
    /// Decodes a config.json, turning a decoding failure into a message with the JSON path (`process.user.uid`).
    /// The fast reading (SpecFastReader.swift) answers first; JSONDecoder reads what it gives up on, and writes
    /// every error message.
    public static func decode(_ bytes: [UInt8], source: String = "config.json") throws -> Spec {
        if let spec = fastRead(bytes) {
            try spec.validate(source: source)
            return spec
        }
        return try decodeWithJSONDecoder(bytes, source: source)
    }

    /// The reference reading: JSONDecoder, a failure as a message with the JSON path.
    public static func decodeWithJSONDecoder(_ bytes: [UInt8], source: String = "config.json") throws -> Spec {
        let spec: Spec
        do {
            spec = try JSONDecoder().decode(Spec.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw SpecError("\(source): \(describe(error))")
        }
        try spec.validate(source: source)
        return spec
    }

    /// Semantic checks the types alone cannot express.
    public func validate(source: String = "config.json") throws {
        let major = ociVersion.split(separator: ".").first.flatMap { Int($0) }
        if major != 1 {
            throw SpecError("\(source): ociVersion \"\(ociVersion)\" is not supported (this runtime implements 1.0 to \(Spec.version))")
        }
        if let process {
            if (process.args ?? []).isEmpty && process.commandLine == nil {
                throw SpecError("\(source): process.args must not be empty (give the program to run)")
            }
            if !process.cwd.hasPrefix("/") {
                throw SpecError("\(source): process.cwd \"\(process.cwd)\" must be an absolute path")
            }
        }
        for (i, m) in (mounts ?? []).enumerated() where !m.destination.hasPrefix("/") {
            throw SpecError("\(source): mounts[\(i)].destination \"\(m.destination)\" must be an absolute path")
        }
        var seen = Set<NamespaceType>()
        for (i, ns) in (linux?.namespaces ?? []).enumerated() {
            if !seen.insert(ns.type).inserted {
                throw SpecError("\(source): linux.namespaces[\(i)]: namespace \"\(ns.type.rawValue)\" is listed twice")
            }
        }
        try validateUserNamespace(source: source)
    }

    /// Most lines a uid_map/gid_map may have (the kernel's limit since Linux 4.15).
    public static let maxIDMappings = 340

    /// The user namespace and its id mappings agree: a new user namespace needs both uidMappings and
    /// gidMappings, mappings need a user namespace, and each list is one the kernel will accept (non-empty ranges,
    /// none overlapping inside or outside, no wrap past 2³²−1, at most 340 lines).
    public func validateUserNamespace(source: String = "config.json") throws {
        let userns = linux?.namespaces?.first { $0.type == .user }
        let uid = linux?.uidMappings ?? [], gid = linux?.gidMappings ?? []
        guard let userns else {
            if !uid.isEmpty || !gid.isEmpty {
                let field = uid.isEmpty ? "linux.gidMappings" : "linux.uidMappings"
                throw SpecError("\(source): \(field) is set but linux.namespaces has no user namespace: add {\"type\": \"user\"} to linux.namespaces, or remove the mappings")
            }
            return
        }
        let joining = !(userns.path ?? "").isEmpty
        if !joining {
            for (field, list) in [("linux.uidMappings", uid), ("linux.gidMappings", gid)] where list.isEmpty {
                throw SpecError("\(source): linux.namespaces asks for a new user namespace but \(field) is empty: map at least the container's root, e.g. {\"containerID\": 0, \"hostID\": 100000, \"size\": 65536}")
            }
        }
        for (field, list) in [("linux.uidMappings", uid), ("linux.gidMappings", gid)] {
            if list.count > Self.maxIDMappings {
                throw SpecError("\(source): \(field) has \(list.count) ranges; the kernel takes at most \(Self.maxIDMappings)")
            }
            for (i, m) in list.enumerated() {
                if m.size == 0 { throw SpecError("\(source): \(field)[\(i)].size is 0: give the number of ids to map") }
                if UInt64(m.containerID) + UInt64(m.size) > UInt64(UInt32.max) || UInt64(m.hostID) + UInt64(m.size) > UInt64(UInt32.max) {
                    throw SpecError("\(source): \(field)[\(i)] (\(m.containerID) \(m.hostID) \(m.size)) runs past the largest id 4294967294")
                }
                for (j, other) in list.enumerated() where j < i {
                    if m.containerID < other.containerID + other.size && other.containerID < m.containerID + m.size {
                        throw SpecError("\(source): \(field)[\(i)] and [\(j)] overlap in containerID (\(m.containerID)+\(m.size) and \(other.containerID)+\(other.size)); each container id may be mapped once")
                    }
                    if m.hostID < other.hostID + other.size && other.hostID < m.hostID + m.size {
                        throw SpecError("\(source): \(field)[\(i)] and [\(j)] overlap in hostID (\(m.hostID)+\(m.size) and \(other.hostID)+\(other.size)); each host id may be mapped once")
                    }
                }
            }
        }
    }

    /// A decoding failure as "json.path: what is wrong".
    public static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [CodingKey]) -> String {
            var out = ""
            for key in keys {
                if let i = key.intValue { out += "[\(i)]" } else { out += out.isEmpty ? key.stringValue : ".\(key.stringValue)" }
            }
            return out.isEmpty ? "(top level)" : out
        }
        switch error {
        case .typeMismatch(let type, let ctx):
            return "\(path(ctx.codingPath)): expected \(jsonKind(type)) (\(ctx.debugDescription))"
        case .valueNotFound(let type, let ctx):
            return "\(path(ctx.codingPath)): expected \(jsonKind(type)), found null"
        case .keyNotFound(let key, let ctx):
            return "\(path(ctx.codingPath + [key])): required field is missing"
        case .dataCorrupted(let ctx):
            return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    static func jsonKind(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "a boolean"
        case is Int.Type, is UInt32.Type, is UInt64.Type, is Int64.Type, is Double.Type: return "a number"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a \(name)"
        }
    }

    /// Encodes as config.json (pretty, keys sorted, like `runc spec`).
    public func encoded(pretty: Bool = true) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.withoutEscapingSlashes]
        return Array(try encoder.encode(self))
    }
}
