import FoundationEssentials
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

    public var encoded: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The record kept in `extra`, if any.
    public static func from(_ extra: [String: String]?) throws -> ConfinementRecord? {
        guard let text = extra?[key] else { return nil }
        do { return try JSONDecoder().decode(ConfinementRecord.self, from: Data(text.utf8)) } catch {
            throw ConfineError("the container's recorded confinement cannot be read (\(error)); recreate the container")
        }
    }
}
