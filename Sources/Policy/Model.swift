/// An isolation tier, ordered by how much it isolates: `namespace` < `microvm`.
public enum Tier: String, Sendable, Hashable, CaseIterable, Comparable, Codable {
    case namespace, microvm

    var rank: Int { self == .namespace ? 0 : 1 }
    public static func < (a: Tier, b: Tier) -> Bool { a.rank < b.rank }
}

/// What a rule decides: run in a tier, or refuse.
public enum Verdict: String, Sendable, Hashable, CaseIterable, Codable {
    case namespace, microvm, deny

    public var tier: Tier? {
        switch self {
        case .namespace: .namespace
        case .microvm: .microvm
        case .deny: nil
        }
    }
}

/// Which hypervisor the microVM tier should use.
public enum HypervisorPreference: String, Sendable, Hashable, CaseIterable, Codable {
    case kvm, libvirt, auto
}

/// Resource ceilings, for either tier. `nil` means "no ceiling from the policy" (the spec's own limits apply).
public struct ResourceCeilings: Sendable, Hashable, Codable {
    /// Memory in bytes.
    public var memory: UInt64?
    /// CPUs, in thousandths (1500 = 1.5 CPUs).
    public var milliCPUs: Int?
    public var pids: Int?

    public init(memory: UInt64? = nil, milliCPUs: Int? = nil, pids: Int? = nil) {
        self.memory = memory
        self.milliCPUs = milliCPUs
        self.pids = pids
    }

    func overlaid(by o: ResourceCeilings) -> ResourceCeilings {
        ResourceCeilings(memory: o.memory ?? memory, milliCPUs: o.milliCPUs ?? milliCPUs, pids: o.pids ?? pids)
    }
}

/// Settings of the namespace tier.
public struct NamespaceSettings: Sendable, Hashable, Codable {
    /// `default` (Bulkhead's built-in profile), `unconfined`, or an absolute path to an OCI seccomp JSON file.
    public var seccomp: String?
    public var userNamespace: Bool?
    public var readonlyRootfs: Bool?
    /// The most capabilities the container may hold; `nil` means the spec's own set.
    public var capabilityCeiling: [String]?

    public init(seccomp: String? = nil, userNamespace: Bool? = nil, readonlyRootfs: Bool? = nil,
                capabilityCeiling: [String]? = nil) {
        self.seccomp = seccomp
        self.userNamespace = userNamespace
        self.readonlyRootfs = readonlyRootfs
        self.capabilityCeiling = capabilityCeiling
    }

    func overlaid(by o: NamespaceSettings) -> NamespaceSettings {
        NamespaceSettings(seccomp: o.seccomp ?? seccomp, userNamespace: o.userNamespace ?? userNamespace,
                          readonlyRootfs: o.readonlyRootfs ?? readonlyRootfs,
                          capabilityCeiling: o.capabilityCeiling ?? capabilityCeiling)
    }

    /// What applies when neither the rule nor the policy's `defaults` say.
    public static let builtIn = NamespaceSettings(seccomp: "default", userNamespace: false, readonlyRootfs: false,
                                                  capabilityCeiling: nil)
}

/// Settings of the microVM tier.
public struct MicroVMSettings: Sendable, Hashable, Codable {
    public var vcpus: Int?
    /// Guest memory in bytes.
    public var memory: UInt64?
    public var hypervisor: HypervisorPreference?
    /// `default` (Bulkhead's guest kernel) or an absolute path to a kernel image.
    public var kernel: String?
    /// The libvirt connection for the libvirt driver (e.g. `qemu:///system` on a host that runs libvirtd);
    /// absent: libvirt's embedded QEMU driver under Bulkhead's data root, no daemon needed.
    public var hypervisorURI: String?

    public init(vcpus: Int? = nil, memory: UInt64? = nil, hypervisor: HypervisorPreference? = nil, kernel: String? = nil,
                hypervisorURI: String? = nil) {
        self.vcpus = vcpus
        self.memory = memory
        self.hypervisor = hypervisor
        self.kernel = kernel
        self.hypervisorURI = hypervisorURI
    }

    func overlaid(by o: MicroVMSettings) -> MicroVMSettings {
        MicroVMSettings(vcpus: o.vcpus ?? vcpus, memory: o.memory ?? memory, hypervisor: o.hypervisor ?? hypervisor,
                        kernel: o.kernel ?? kernel, hypervisorURI: o.hypervisorURI ?? hypervisorURI)
    }

    public static let builtIn = MicroVMSettings(vcpus: 1, memory: 256 << 20, hypervisor: .auto, kernel: "default")
}

/// A boolean condition, or a list of values any of which must be present.
public enum PresenceCondition: Sendable, Hashable {
    /// `true`: at least one present; `false`: none present.
    case any(Bool)
    /// At least one of these is present (globs for paths, names otherwise).
    case oneOf([Glob])
}

/// The conditions of a rule, as the loader fills them in (see ``Match``).
public struct MatchConditions: Sendable {
    public var tenant: [Glob]?  // globs on the tenant name; never matches a deployment without tenant
    public var hasTenant: Bool?
    public var image: [Glob]?  // globs on registry/repository:tag
    public var digest: [String]?  // exact
    public var importedBy: [Glob]?  // "root", "uid:N", or a user name
    public var source: [Glob]?  // globs on the origin, e.g. "oci-archive:**", "registry:quay.io/**"
    public var privileged: Bool?
    public var addedCapabilities: PresenceCondition?
    public var hostNamespaces: PresenceCondition?
    public var hostMounts: PresenceCondition?
    public var devices: PresenceCondition?
    public var noNewPrivileges: Bool?
    public var annotations: [String: [Glob]]?  // key → globs on the value (all keys must match)
    public var labels: [String: [Glob]]?
    public var isolationRequest: [String]?  // "none", "namespace", "microvm"
    public init() {}
}

/// The conditions of a rule. Every condition given must hold (AND); a list inside a condition means any of its
/// values (OR). A rule without conditions matches every deployment.
///
/// An immutable class, so that deciding never copies conditions.
public final class Match: Sendable {
    /// The conditions as the loader filled them in, kept whole: made by moving them in (no field-by-field copy).
    let conditions: MatchConditions

    public var tenant: [Glob]? { conditions.tenant }
    public var hasTenant: Bool? { conditions.hasTenant }
    public var image: [Glob]? { conditions.image }
    public var digest: [String]? { conditions.digest }
    public var importedBy: [Glob]? { conditions.importedBy }
    public var source: [Glob]? { conditions.source }
    public var privileged: Bool? { conditions.privileged }
    public var addedCapabilities: PresenceCondition? { conditions.addedCapabilities }
    public var hostNamespaces: PresenceCondition? { conditions.hostNamespaces }
    public var hostMounts: PresenceCondition? { conditions.hostMounts }
    public var devices: PresenceCondition? { conditions.devices }
    public var noNewPrivileges: Bool? { conditions.noNewPrivileges }
    public var annotations: [String: [Glob]]? { conditions.annotations }
    public var labels: [String: [Glob]]? { conditions.labels }
    public var isolationRequest: [String]? { conditions.isolationRequest }

    public init(_ c: consuming MatchConditions = MatchConditions()) {
        conditions = c
    }

    /// True when the rule has no conditions (a catch-all).
    public var isEmpty: Bool {
        tenant == nil && hasTenant == nil && image == nil && digest == nil && importedBy == nil && source == nil
            && privileged == nil && addedCapabilities == nil && hostNamespaces == nil && hostMounts == nil && devices == nil
            && noNewPrivileges == nil && annotations == nil && labels == nil && isolationRequest == nil
    }
}

/// One rule of a policy (a class: rules are shared, never copied, while deciding).
public final class Rule: Sendable {
    public let name: String
    public let description: String?
    public let match: Match
    /// True when the rule had no `match` key (or an empty one): it matches everything and must be last.
    public let isCatchAll: Bool
    public let verdict: Verdict
    /// A `microvm` decision may be lowered to `namespace` when the deployer asks, only if this is true.
    public let allowLower: Bool
    /// Shown with a `deny` (and in explanations).
    public let reason: String?
    public let namespace: NamespaceSettings
    public let microvm: MicroVMSettings
    public let resources: ResourceCeilings
    /// Where the rule starts, and where each of its condition keys is (for explanations and lints).
    public let location: SourceLocation
    /// Each condition key's place, as a short list (a rule has a handful; a dictionary per rule costs more to
    /// build than the lookups it would save). See ``conditionLocation(_:)``.
    let conditionKeys: [(key: String, location: SourceLocation)]
    public var conditionLocations: [String: SourceLocation] {
        Dictionary(conditionKeys.map { ($0.key, $0.location) }, uniquingKeysWith: { $1 })
    }

    /// Where condition `key` of this rule is written.
    public func conditionLocation(_ key: String) -> SourceLocation? {
        conditionKeys.first(where: { $0.key == key })?.location
    }

    public convenience init(name: String, description: String? = nil, match: Match, isCatchAll: Bool, verdict: Verdict,
                allowLower: Bool = false, reason: String? = nil, namespace: NamespaceSettings = NamespaceSettings(),
                microvm: MicroVMSettings = MicroVMSettings(), resources: ResourceCeilings = ResourceCeilings(),
                location: SourceLocation, conditionLocations: [String: SourceLocation] = [:]) {
        self.init(name: name, description: description, match: match, isCatchAll: isCatchAll, verdict: verdict,
                  allowLower: allowLower, reason: reason, namespace: namespace, microvm: microvm, resources: resources,
                  location: location, conditionKeys: conditionLocations.map { ($0.key, $0.value) })
    }

    init(name: String, description: String?, match: Match, isCatchAll: Bool, verdict: Verdict, allowLower: Bool,
         reason: String?, namespace: NamespaceSettings, microvm: MicroVMSettings, resources: ResourceCeilings,
         location: SourceLocation, conditionKeys: [(key: String, location: SourceLocation)]) {
        self.name = name
        self.description = description
        self.match = match
        self.isCatchAll = isCatchAll
        self.verdict = verdict
        self.allowLower = allowLower
        self.reason = reason
        self.namespace = namespace
        self.microvm = microvm
        self.resources = resources
        self.location = location
        self.conditionKeys = conditionKeys
    }
}

/// A loaded, validated policy.
public struct Policy: Sendable {
    public let version: Int
    /// The file it came from (or `built-in`).
    public let source: String
    public let rules: [Rule]
    public let defaults: (namespace: NamespaceSettings, microvm: MicroVMSettings, resources: ResourceCeilings)
    let index: DecisionIndex
    /// Lint warnings found while loading (errors make loading fail).
    public var warnings: [Diagnostic]
}
