import FoundationEssentials
import JSONText
import OCIRuntime

/// The confinement a container was created with (after the policy has applied its settings), kept in the
/// container's record so that `exec` confines a new process the same way: the seccomp filter of the container,
/// and — when `exec` is given a command rather than a process.json — its capabilities and no_new_privs.
public struct ConfinementRecord: Codable, Sendable, Equatable {
    public var capabilities: Spec.Capabilities?
    public var noNewPrivileges: Bool?
    public var seccomp: Spec.Seccomp?

    /// The key under which it is kept in `ContainerRecord.extra`.
    public static let key = "confinement"

    public init(spec: Spec) {
        capabilities = spec.process?.capabilities
        noNewPrivileges = spec.process?.noNewPrivileges
        seccomp = spec.linux?.seccomp
    }

    /// The record as JSON, keys sorted (what JSONEncoder with `.sortedKeys` writes; ``from(_:)`` reads it with
    /// JSONDecoder), written by hand: it is made in every `create`, and JSONEncoder's generic machinery cost ~5% of a
    /// container start.
    public var encoded: String {
        var w = JSONObjectWriter()
        if let c = capabilities {
            var caps = JSONObjectWriter()
            caps.field("ambient", c.ambient)
            caps.field("bounding", c.bounding)
            caps.field("effective", c.effective)
            caps.field("inheritable", c.inheritable)
            caps.field("permitted", c.permitted)
            w.field("capabilities", json: caps.finish())
        }
        if let nnp = noNewPrivileges { w.field("noNewPrivileges", nnp) }
        if let s = seccomp {
            var f = JSONObjectWriter()
            f.field("architectures", s.architectures)
            f.field("defaultAction", s.defaultAction)
            if let e = s.defaultErrnoRet { f.field("defaultErrnoRet", UInt64(e)) }
            f.field("flags", s.flags)
            f.field("listenerMetadata", s.listenerMetadata)
            f.field("listenerPath", s.listenerPath)
            f.field("syscalls", objects: s.syscalls) { call, c in
                c.field("action", call.action)
                c.field("args", objects: call.args) { arg, a in
                    a.field("index", UInt64(arg.index))
                    a.field("op", arg.op)
                    a.field("value", arg.value)
                    if let two = arg.valueTwo { a.field("valueTwo", two) }
                }
                if let e = call.errnoRet { c.field("errnoRet", UInt64(e)) }
                c.field("names", call.names)
            }
            w.field("seccomp", json: f.finish())
        }
        return String(decoding: w.finish(), as: UTF8.self)
    }

    /// The record kept in `extra`, if any.
    public static func from(_ extra: [String: String]?) throws -> ConfinementRecord? {
        guard let text = extra?[key] else { return nil }
        do { return try JSONDecoder().decode(ConfinementRecord.self, from: Data(text.utf8)) } catch {
            throw ConfineError("the container's recorded confinement cannot be read (\(error)); recreate the container")
        }
    }
}
