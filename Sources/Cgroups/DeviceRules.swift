/// One device cgroup rule, checked and normalised from `linux.resources.devices[i]`.
public struct DeviceAccessRule: Sendable, Equatable {
    public enum Kind: Character, Sendable { case all = "a", char = "c", block = "b" }
    public var allow: Bool
    public var kind: Kind
    /// nil: any major (`*`).
    public var major: UInt32?
    public var minor: UInt32?
    /// Some of r, w, m (in that order).
    public var access: String

    public init(allow: Bool, kind: Kind, major: UInt32?, minor: UInt32?, access: String) {
        self.allow = allow; self.kind = kind; self.major = major; self.minor = minor; self.access = access
    }

    /// The rule as the v1 devices controller reads it: `c 1:3 rwm`, `a *:* rwm`.
    public var v1String: String {
        "\(kind.rawValue) \(major.map(String.init) ?? "*"):\(minor.map(String.init) ?? "*") \(access)"
    }

    /// The spec's rules, checked, followed by the devices every container gets (as runc appends them): mknod of
    /// any node, and the standard /dev nodes. Evaluation starts from "deny everything".
    public static func effective(_ rules: [LinuxResources.DeviceRule]?) throws -> [DeviceAccessRule] {
        var out: [DeviceAccessRule] = []
        for (i, r) in (rules ?? []).enumerated() {
            let field = "linux.resources.devices[\(i)]"
            let typeText = r.type ?? "a"
            guard typeText.count == 1, let kind = Kind(rawValue: typeText.first!) else {
                throw CgroupError("\(field).type \"\(typeText)\" is not a device cgroup type: use \"a\", \"c\" or \"b\"")
            }
            let access = r.access ?? "rwm"
            guard !access.isEmpty, access.allSatisfy({ "rwm".contains($0) }) else {
                throw CgroupError("\(field).access \"\(access)\" must be made of r, w and m")
            }
            func number(_ v: Int64?, _ name: String) throws -> UInt32? {
                guard let v, v >= 0 else { return nil }   // -1 or absent: wildcard, as runc reads it
                guard let n = UInt32(exactly: v) else { throw CgroupError("\(field).\(name) \(v) is out of range") }
                return n
            }
            let normalised = String("rwm".filter { access.contains($0) })
            out.append(DeviceAccessRule(allow: r.allow, kind: kind, major: kind == .all ? nil : try number(r.major, "major"),
                                        minor: kind == .all ? nil : try number(r.minor, "minor"), access: normalised))
        }
        return out + defaults
    }

    /// What runc adds to every container (specconv's AllowedDevices): mknod of any char or block node, null,
    /// random, full, tty, zero, urandom, the pty slaves, ptmx and the tun device.
    public static let defaults: [DeviceAccessRule] = [
        .init(allow: true, kind: .char, major: nil, minor: nil, access: "m"),
        .init(allow: true, kind: .block, major: nil, minor: nil, access: "m"),
        .init(allow: true, kind: .char, major: 1, minor: 3, access: "rwm"),
        .init(allow: true, kind: .char, major: 1, minor: 8, access: "rwm"),
        .init(allow: true, kind: .char, major: 1, minor: 7, access: "rwm"),
        .init(allow: true, kind: .char, major: 5, minor: 0, access: "rwm"),
        .init(allow: true, kind: .char, major: 1, minor: 5, access: "rwm"),
        .init(allow: true, kind: .char, major: 1, minor: 9, access: "rwm"),
        .init(allow: true, kind: .char, major: 136, minor: nil, access: "rwm"),
        .init(allow: true, kind: .char, major: 5, minor: 2, access: "rwm"),
        .init(allow: true, kind: .char, major: 10, minor: 200, access: "rwm"),
    ]
}
