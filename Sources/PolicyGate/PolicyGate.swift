import FoundationEssentials
import JSONText
import LinuxOS
import Policy
#if canImport(Glibc)
import Glibc
#endif

/// Where the policy comes from, how it is trusted, and what is logged: the one door every deployment goes
/// through before anything is built.
///
/// - `--policy FILE` names the file; otherwise `/etc/bulkhead/policy.yaml`; when that does not exist, the
///   built-in policy (``Policy/builtIn``).
/// - A file (or a directory above it) that anyone but root could change is refused, with the reason
///   (like sshd's StrictModes).
/// - A policy that fails to load stops the deployment (fail closed): no "run with defaults".
/// - Every decision, including denials and refusals, is appended to the audit log before it takes effect.
public struct PolicyGate: Sendable {
    public static let defaultPolicyPath = "/etc/bulkhead/policy.yaml"
    public static let defaultAuditPath = "/var/log/bulkhead/audit.jsonl"

    public let policy: Policy
    /// `sha256:<hex>` of the policy file's bytes (of the built-in text for the built-in policy).
    public let policyDigest: String
    /// The audit log's path; nil turns auditing off (only for `policy explain`, which decides nothing).
    public let auditPath: String?

    /// Loads the policy by the rules above. Throws ``PolicyGateError`` (untrusted file, unreadable file) or
    /// ``PolicyLoadError`` (invalid file); both mean no container starts.
    public static func load(policyPath: String? = nil, auditPath: String? = PolicyGate.defaultAuditPath,
                            defaultPath: String = PolicyGate.defaultPolicyPath) throws -> PolicyGate {
        let path: String
        if let policyPath {
            path = policyPath
        } else {
            if access(defaultPath, F_OK) != 0 && errno == ENOENT {
                let toml = String(defaultPath.dropLast(5)) + ".toml"
                if defaultPath.hasSuffix(".yaml"), access(toml, F_OK) == 0 {
                    throw PolicyGateError("\(toml) exists but Bulkhead reads policies in YAML only; convert it to \(defaultPath) (see policies/README.md)")
                }
                let text = Policy.builtInText
                return PolicyGate(policy: Policy.builtIn, policyDigest: "sha256:" + SHA256.hex(Array(text.utf8)), auditPath: auditPath)
            }
            path = defaultPath
        }
        let bytes = try readTrusted(path)
        let policy = try Policy.parse(bytes, source: path)
        return PolicyGate(policy: policy, policyDigest: "sha256:" + SHA256.hex(bytes), auditPath: auditPath)
    }

    public init(policy: Policy, policyDigest: String, auditPath: String?) {
        self.policy = policy
        self.policyDigest = policyDigest
        self.auditPath = auditPath
    }

    /// Reads a policy file after checking that only root can change it or any directory above it.
    public static func readTrusted(_ path: String) throws -> [UInt8] {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDONLY | O_NOCTTY) } catch let e as SystemError {
            throw PolicyGateError("cannot read policy \(path): \(e.reason); no container starts without its policy (fix the path, or drop --policy to use \(defaultPolicyPath) or the built-in policy)")
        }
        let st = try fd.stat(path: path)
        if st.st_mode & S_IFMT != S_IFREG { throw PolicyGateError("policy \(path) is not a regular file") }
        if let problem = trustProblem(st, what: "policy file \(path)") { throw PolicyGateError(problem) }
        let real = try HostPath.resolve(path)
        for dir in HostPath.ancestors(of: real) {
            let dst = try HostPath.stat(dir, followSymlinks: false)
            if let problem = trustProblem(dst, what: "directory \(dir) (above policy \(path))", stickyAllowed: true) { throw PolicyGateError(problem) }
        }
        return try fd.readAll(limit: 8 << 20, path: path)
    }

    /// Why a file or directory with this stat could be changed by someone other than root, or nil.
    ///
    /// `stickyAllowed` is for the directories above the file: a root-owned directory with the sticky bit (/tmp,
    /// a chroot's /run) may be writable by others, because there only an entry's owner (or root) can rename or
    /// remove it, and every entry on the way down to the policy is itself checked to be root's.
    static func trustProblem(_ st: stat, what: String, stickyAllowed: Bool = false) -> String? {
        if st.st_uid != 0 {
            return "refusing \(what): it is owned by uid \(st.st_uid), not root, so that user could rewrite the policy; `chown root:root` it"
        }
        if stickyAllowed && st.st_mode & S_IFMT == S_IFDIR && st.st_mode & S_ISVTX != 0 { return nil }
        // World-writable first: it is the worse problem, and `chmod o-w` alone would leave the group's.
        if st.st_mode & S_IWOTH != 0 {
            return "refusing \(what): it is writable by everyone (mode \(String(st.st_mode & 0o7777, radix: 8))); `chmod go-w` it"
        }
        if st.st_mode & S_IWGRP != 0 {
            // Even group root: its members need not be root.
            return "refusing \(what): it is writable by group \(st.st_gid), whose members need not be root; `chmod g-w` it"
        }
        return nil
    }

    /// Decides for `request`, appends the decision to the audit log, and returns it when the deployment may go
    /// ahead. A `deny` or a refused request throws ``PolicyDenied``; a failing audit log throws too (fail closed:
    /// an unrecorded decision does not take effect).
    @discardableResult
    public func admit(_ request: DeploymentRequest, containerID: String) throws -> Decision {
        let decision = policy.decide(request)
        if let auditPath {
            try AuditLog(path: auditPath).append(AuditRecord(decision: decision, request: request, containerID: containerID,
                                                            policyDigest: policyDigest))
        }
        switch decision.outcome {
        case .run: return decision
        case .deny, .refused: throw PolicyDenied(decision: decision, containerID: containerID)
        }
    }
}

/// The policy cannot be used (untrusted, unreadable): nothing starts.
public struct PolicyGateError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The policy said no: a `deny` rule, or a request for less isolation than the rule allows.
public struct PolicyDenied: Error, Sendable, CustomStringConvertible {
    public var decision: Decision
    public var containerID: String
    public var description: String {
        switch decision.outcome {
        case .refused:
            return "container \(containerID): isolation \(decision.requested?.rawValue ?? "?") refused by \(decision.policy) rule '\(decision.rule)' (\(decision.ruleLocation)): it gives \(decision.ruleVerdict.rawValue) and does not allow lowering; drop the request, or ask the host owner for `allow_lower: true` (see `bulkhead policy explain`)"
        default:
            return "container \(containerID): denied by \(decision.policy) rule '\(decision.rule)' (\(decision.ruleLocation))"
                + (decision.ruleReason.map { ": \($0)" } ?? "") + " (see `bulkhead policy explain`)"
        }
    }
}

/// One line of the audit log.
public struct AuditRecord: Codable, Sendable, Hashable {
    public var time: String
    public var container_id: String
    public var tenant: String?
    public var image: String?
    public var image_digest: String?
    public var requested: String?
    public var decided: String
    public var granted: String?
    public var outcome: String
    public var rule: String
    public var rule_location: String
    public var policy: String
    public var policy_sha256: String

    /// The audit line: what `JSONEncoder` with `.sortedKeys` writes (the fields below are in that order), written by
    /// hand (JSONObjectWriter says why).
    public func json() -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("container_id", container_id)
        w.field("decided", decided)
        w.field("granted", granted)
        w.field("image", image)
        w.field("image_digest", image_digest)
        w.field("outcome", outcome)
        w.field("policy", policy)
        w.field("policy_sha256", policy_sha256)
        w.field("requested", requested)
        w.field("rule", rule)
        w.field("rule_location", rule_location)
        w.field("tenant", tenant)
        w.field("time", time)
        return w.finish()
    }

    public init(decision d: Decision, request r: DeploymentRequest, containerID: String, policyDigest: String, time: String = AuditLog.now()) {
        self.time = time
        container_id = containerID
        tenant = r.tenant
        image = r.image
        image_digest = r.digest
        requested = r.requestedIsolation?.rawValue
        decided = d.ruleVerdict.rawValue
        granted = d.granted?.rawValue
        outcome = d.outcome.rawValue
        rule = d.rule
        rule_location = d.ruleLocation.description
        policy = d.policy
        policy_sha256 = policyDigest
    }
}

/// An append-only JSON-lines file. Each record is one write(2) of one whole line on an O_APPEND descriptor:
/// concurrent writers never interleave inside a line, and a crash leaves either the whole line or none of it.
public struct AuditLog: Sendable {
    public let path: String

    public init(path: String = PolicyGate.defaultAuditPath) { self.path = path }

    public func append(_ record: AuditRecord) throws {
        var line = record.json()
        line.append(0x0a)
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try HostPath.makeDirectories(String(path[..<slash]), mode: 0o750)
        }
        let fd = try FileDescriptor.open(path, O_WRONLY | O_APPEND | O_CREAT, mode: 0o640)
        let written = try line.withUnsafeBytes { buffer in
            try sys("write", path) { Glibc.write(fd.raw, buffer.baseAddress, buffer.count) }
        }
        if written != line.count {
            // A short write on a regular file means the disk is full or the file too large; the line is torn.
            throw SystemError(operation: "write", path: path, errno: ENOSPC,
                              hint: "only \(written) of \(line.count) bytes of the audit record were written; free space, then check the log's last line")
        }
        try fd.close(path: path)
    }

    public static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        return "\(pad(Int(tmv.tm_year) + 1900, 4))-\(pad(Int(tmv.tm_mon) + 1, 2))-\(pad(Int(tmv.tm_mday), 2))T"
            + "\(pad(Int(tmv.tm_hour), 2)):\(pad(Int(tmv.tm_min), 2)):\(pad(Int(tmv.tm_sec), 2)).\(pad(ts.tv_nsec, 9))Z"
    }
}
