import FoundationEssentials

/// What the policy reads from a runtime spec, as plain values. It comes from config.json's bytes
/// (``SpecPrivileges/read(configJSON:)``: `policy explain`, tests) or, in `create` and `run`, from the spec the runtime
/// has already decoded and is about to run: the decision is then about exactly that spec, not about a second read of
/// a file that could have changed in between, and the file is not decoded twice.
public struct SpecFacts: Sendable, Equatable {
    public struct Mount: Sendable, Equatable {
        public var type: String?
        public var source: String?
        public var options: [String]
        public init(type: String?, source: String?, options: [String]) { self.type = type; self.source = source; self.options = options }
    }
    public struct Namespace: Sendable, Equatable {
        public var type: String
        public var path: String?
        public init(type: String, path: String?) { self.type = type; self.path = path }
    }
    public struct DeviceRule: Sendable, Equatable {
        public var allow: Bool
        public var type: String?
        public var major: Int64?
        public var minor: Int64?
        public var access: String?
        public init(allow: Bool, type: String?, major: Int64?, minor: Int64?, access: String?) {
            self.allow = allow; self.type = type; self.major = major; self.minor = minor; self.access = access
        }
    }
    /// Every capability of every set (bounding, effective, inheritable, permitted, ambient).
    public var capabilities: [String] = []
    public var noNewPrivileges = false
    public var mounts: [Mount] = []
    public var namespaces: [Namespace] = []
    /// `linux.devices[].path`.
    public var devicePaths: [String] = []
    /// `linux.resources.devices`, nil when absent.
    public var deviceRules: [DeviceRule]?
    public var annotations: [String: String] = [:]
    public init() {}
}

/// Reads what the policy needs from an OCI runtime config.json: the privileges it asks for and its annotations.
///
/// A deliberately small view of the spec (the full runtime-spec types live elsewhere): only the fields below are
/// decoded, everything else is ignored.
public enum SpecPrivileges {
    private struct Spec: Decodable {
        var process: Process?
        var mounts: [Mount]?
        var linux: Linux?
        var annotations: [String: String]?
    }
    private struct Process: Decodable {
        var capabilities: Capabilities?
        var noNewPrivileges: Bool?
    }
    private struct Capabilities: Decodable {
        var bounding: [String]?
        var effective: [String]?
        var inheritable: [String]?
        var permitted: [String]?
        var ambient: [String]?
    }
    private struct Mount: Decodable {
        var destination: String?
        var type: String?
        var source: String?
        var options: [String]?
    }
    private struct Linux: Decodable {
        var namespaces: [Namespace]?
        var devices: [Device]?
        var resources: Resources?
    }
    private struct Namespace: Decodable {
        var type: String
        var path: String?
    }
    private struct Device: Decodable {
        var path: String
    }
    private struct Resources: Decodable {
        var devices: [DeviceRule]?
    }
    private struct DeviceRule: Decodable {
        var allow: Bool
        var type: String?
        var major: Int64?
        var minor: Int64?
        var access: String?
    }

    /// The privileges and annotations of a runtime spec (the bytes of config.json).
    public static func read(configJSON bytes: [UInt8]) throws(PolicyRequestError) -> (privileges: Privileges, annotations: [String: String]) {
        let spec: Spec
        do {
            spec = try JSONDecoder().decode(Spec.self, from: Data(bytes))
        } catch {
            throw PolicyRequestError("config.json is not a valid OCI runtime spec: \(error)")
        }
        let caps = spec.process?.capabilities
        var facts = SpecFacts()
        for set in [caps?.bounding, caps?.effective, caps?.inheritable, caps?.permitted, caps?.ambient] {
            facts.capabilities += set ?? []
        }
        facts.noNewPrivileges = spec.process?.noNewPrivileges ?? false
        facts.namespaces = (spec.linux?.namespaces ?? []).map { SpecFacts.Namespace(type: $0.type, path: $0.path) }
        facts.mounts = (spec.mounts ?? []).map { SpecFacts.Mount(type: $0.type, source: $0.source, options: $0.options ?? []) }
        facts.devicePaths = (spec.linux?.devices ?? []).map(\.path)
        facts.deviceRules = spec.linux?.resources?.devices?.map {
            SpecFacts.DeviceRule(allow: $0.allow, type: $0.type, major: $0.major, minor: $0.minor, access: $0.access)
        }
        facts.annotations = spec.annotations ?? [:]
        return (privileges(of: facts), facts.annotations)
    }

    /// The privileges a spec asks for, from its facts.
    public static func privileges(of spec: SpecFacts) -> Privileges {
        var p = Privileges()

        var granted = Set<String>()
        for c in spec.capabilities { granted.insert(PolicyLoader.canonicalCapability(c)) }
        p.addedCapabilities = granted.subtracting(Privileges.defaultCapabilities).sorted()
        p.noNewPrivileges = spec.noNewPrivileges

        // Namespaces: one the spec omits is shared with the host; one joined by path is someone else's.
        let listed = spec.namespaces
        var host: [String] = []
        for type in Privileges.namespaceTypes {
            if let ns = listed.first(where: { $0.type == type }) {
                if let path = ns.path, !path.isEmpty { host.append(type) }
            } else {
                host.append(type)
            }
        }
        p.hostNamespaces = host

        // Bind mounts bring host paths in.
        var hostMounts: [String] = []
        for m in spec.mounts {
            let options = m.options
            let isBind = m.type == "bind" || options.contains("bind") || options.contains("rbind")
            if isBind, let source = m.source, !source.isEmpty { hostMounts.append(normalisePath(source)) }
        }
        p.hostMounts = hostMounts

        var devices = spec.devicePaths
        if let rules = spec.deviceRules {
            // The last matching rule wins in the device cgroup; "allow all" is a rule with no type (or "a"),
            // no major/minor, and rwm access.
            if let lastAll = rules.last(where: { ($0.type == nil || $0.type == "a") && $0.major == nil && $0.minor == nil }),
               lastAll.allow, (lastAll.access ?? "rwm").contains("r"), (lastAll.access ?? "rwm").contains("w") {
                devices.append("*")
            }
        }
        p.devices = devices
        p.privileged = !granted.isDisjoint(with: Privileges.escapeCapabilities) || devices.contains("*")
        return p
    }

    /// Lexical normalisation of an absolute path: no `.`, no `..`, no doubled or trailing slashes
    /// (so `/var/./run//docker.sock` cannot slip past a `/var/run/**` rule).
    public static func normalisePath(_ path: String) -> String {
        var parts: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { _ = parts.popLast(); continue }
            parts.append(c)
        }
        let joined = "/" + parts.joined(separator: "/")
        return path.hasPrefix("/") ? joined : String(joined.dropFirst())
    }
}
