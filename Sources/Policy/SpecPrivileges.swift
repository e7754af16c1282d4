import FoundationEssentials

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
        var p = Privileges()

        let caps = spec.process?.capabilities
        var granted = Set<String>()
        for set in [caps?.bounding, caps?.effective, caps?.inheritable, caps?.permitted, caps?.ambient] {
            for c in set ?? [] { granted.insert(PolicyLoader.canonicalCapability(c)) }
        }
        p.addedCapabilities = granted.subtracting(Privileges.defaultCapabilities).sorted()
        p.noNewPrivileges = spec.process?.noNewPrivileges ?? false

        // Namespaces: one the spec omits is shared with the host; one joined by path is someone else's.
        let listed = spec.linux?.namespaces ?? []
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
        for m in spec.mounts ?? [] {
            let options = m.options ?? []
            let isBind = m.type == "bind" || options.contains("bind") || options.contains("rbind")
            if isBind, let source = m.source, !source.isEmpty { hostMounts.append(normalisePath(source)) }
        }
        p.hostMounts = hostMounts

        var devices = (spec.linux?.devices ?? []).map(\.path)
        if let rules = spec.linux?.resources?.devices {
            // The last matching rule wins in the device cgroup; "allow all" is a rule with no type (or "a"),
            // no major/minor, and rwm access.
            if let lastAll = rules.last(where: { ($0.type == nil || $0.type == "a") && $0.major == nil && $0.minor == nil }),
               lastAll.allow, (lastAll.access ?? "rwm").contains("r"), (lastAll.access ?? "rwm").contains("w") {
                devices.append("*")
            }
        }
        p.devices = devices
        p.privileged = !granted.isDisjoint(with: Privileges.escapeCapabilities) || devices.contains("*")
        return (p, spec.annotations ?? [:])
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
