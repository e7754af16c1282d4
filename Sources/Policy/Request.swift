/// Where an image came from, as Bulkhead's image store recorded it at import time. Never read from
/// annotations: the deployer writes those, and could claim anything.
public struct ImageOrigin: Sendable, Hashable, Codable {
    /// Who imported it: `root`, a user name, or `uid:N`.
    public var importedBy: String?
    /// How it arrived, e.g. `oci-archive:/srv/images/app.tar`, `registry:quay.io/org/app`, `build`.
    public var source: String?

    public init(importedBy: String? = nil, source: String? = nil) {
        self.importedBy = importedBy
        self.source = source
    }
}

/// What a workload asks for beyond an ordinary container, summarised from its OCI runtime spec.
public struct Privileges: Sendable, Hashable, Codable {
    /// Capabilities the spec grants beyond ``Privileges/defaultCapabilities`` (in any of its sets).
    public var addedCapabilities: [String]
    /// The spec grants a capability that breaks container isolation on its own (``Privileges/escapeCapabilities``)
    /// or lets the container use every device.
    public var privileged: Bool
    /// Namespace types (`pid`, `network`, `ipc`, `uts`, `mount`, `user`, `cgroup`) the container shares with
    /// the host (the spec omits them) or joins by path.
    public var hostNamespaces: [String]
    /// Host paths bind-mounted into the container.
    public var hostMounts: [String]
    /// Device nodes the spec creates, and `*` when the device cgroup allows every device.
    public var devices: [String]
    /// `process.noNewPrivileges` (absent = false).
    public var noNewPrivileges: Bool

    public init(addedCapabilities: [String] = [], privileged: Bool = false, hostNamespaces: [String] = [],
                hostMounts: [String] = [], devices: [String] = [], noNewPrivileges: Bool = true) {
        self.addedCapabilities = addedCapabilities
        self.privileged = privileged
        self.hostNamespaces = hostNamespaces
        self.hostMounts = hostMounts
        self.devices = devices
        self.noNewPrivileges = noNewPrivileges
    }

    /// The capabilities an ordinary container gets (the set containerd, Docker and podman grant by default).
    public static let defaultCapabilities: Set<String> = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]

    /// Capabilities with a known way out of a shared-kernel container: holding any of them makes a spec
    /// `privileged`.
    public static let escapeCapabilities: Set<String> = [
        "CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_BOOT", "CAP_BPF",
        "CAP_DAC_READ_SEARCH", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE",
    ]

    /// Every capability name Linux knows (6.x), for validating policies.
    public static let knownCapabilities: Set<String> = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
        "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
        "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]

    /// Namespace type names as the OCI runtime spec writes them.
    public static let namespaceTypes: [String] = ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"]
}

/// One deployment, as the policy sees it.
public struct DeploymentRequest: Sendable, Hashable, Codable {
    /// The tenant, if any (given explicitly, or found in annotations by ``DeploymentRequest/resolveTenant(explicit:annotations:)``).
    public var tenant: String?
    /// The image reference as given (normalised for matching by ``ImageName``).
    public var image: String?
    /// The image's manifest digest, `sha256:<64 hex>`.
    public var digest: String?
    public var origin: ImageOrigin
    public var annotations: [String: String]
    /// The image's labels (its config's `Labels`).
    public var labels: [String: String]
    /// The tier the deployer asked for, if any.
    public var requestedIsolation: Tier?
    public var privileges: Privileges

    public init(tenant: String? = nil, image: String? = nil, digest: String? = nil, origin: ImageOrigin = ImageOrigin(),
                annotations: [String: String] = [:], labels: [String: String] = [:], requestedIsolation: Tier? = nil,
                privileges: Privileges = Privileges()) {
        self.tenant = tenant
        self.image = image
        self.digest = digest
        self.origin = origin
        self.annotations = annotations
        self.labels = labels
        self.requestedIsolation = requestedIsolation
        self.privileges = privileges
    }

    /// Annotations that name the tenant, in the order they are consulted.
    public static let tenantAnnotations = ["bulkhead.tenant", "io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"]
    /// The annotation a deployer uses to ask for a tier.
    public static let isolationAnnotation = "bulkhead.isolation"
    /// Annotations that name the image (ours, containerd's CRI plugin, CRI-O), in the order they are consulted.
    public static let imageAnnotations = ["bulkhead.image", "io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"]
    public static let digestAnnotation = "bulkhead.image.digest"

    /// The tenant: `explicit` when given (an empty string means "no tenant" only when given explicitly),
    /// else the first non-empty tenant annotation.
    public static func resolveTenant(explicit: String?, annotations: [String: String]) -> String? {
        if let explicit { return explicit.isEmpty ? nil : explicit }
        for key in tenantAnnotations { if let v = annotations[key], !v.isEmpty { return v } }
        return nil
    }

    /// The requested tier: the higher of `explicit` (`--isolation`) and the `bulkhead.isolation` annotation
    /// (asking for more isolation is always allowed, so two requests never conflict in the unsafe direction).
    public static func resolveIsolation(explicit: Tier?, annotations: [String: String]) throws(PolicyRequestError) -> Tier? {
        var fromAnnotation: Tier? = nil
        if let raw = annotations[isolationAnnotation] {
            guard let t = Tier(rawValue: raw.lowercased()) else {
                throw PolicyRequestError("annotation \(isolationAnnotation)=\(raw) is not a tier: use namespace or microvm")
            }
            fromAnnotation = t
        }
        switch (explicit, fromAnnotation) {
        case (nil, nil): return nil
        case (let a?, nil): return a
        case (nil, let b?): return b
        case (let a?, let b?): return max(a, b)
        }
    }
}

/// A request that cannot be evaluated (bad annotation value, unreadable spec).
public struct PolicyRequestError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// An image reference normalised the way Docker and containerd do: `busybox` → `docker.io/library/busybox:latest`.
public struct ImageName: Sendable, Hashable {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: String?

    /// `registry/repository:tag`, or `registry/repository` when the reference has only a digest.
    public var canonical: String { tag.map { "\(registry)/\(repository):\($0)" } ?? "\(registry)/\(repository)" }

    public init(parsing reference: String) {
        var rest = Substring(reference)
        var digest: String? = nil
        if let at = rest.firstIndex(of: "@") {
            digest = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
        }
        var tag: String? = nil
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            tag = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
        }
        var registry = "docker.io"
        var repository = String(rest)
        if let slash = rest.firstIndex(of: "/") {
            let first = rest[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" {
                registry = String(first)
                repository = String(rest[rest.index(after: slash)...])
            }
        }
        if registry == "index.docker.io" { registry = "docker.io" }
        if registry == "docker.io" && !repository.contains("/") { repository = "library/" + repository }
        if tag == nil && digest == nil { tag = "latest" }
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }
}
