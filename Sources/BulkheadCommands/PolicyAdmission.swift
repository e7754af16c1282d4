import ArgumentParser
import Confine
import OCIImage
import OCIRuntime
import Policy
import PolicyGate
import Runtime

/// The trust-boundary options of `create` and `run`. Engines that speak runc's contract pass none of them:
/// they get /etc/bulkhead/policy.yaml (or the built-in policy), the tenant from the bundle's annotations and the
/// request from `bulkhead.isolation`.
struct PolicyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Policy file to use instead of /etc/bulkhead/policy.yaml (or the built-in policy).", valueName: "file"))
    var policy: String?

    @Option(help: ArgumentHelp("The tenant this container belongs to (overrides the bundle's annotations).", valueName: "name"))
    var tenant: String?

    @Option(help: ArgumentHelp("Ask for a tier: namespace or microvm. More isolation is always granted; less only where the policy allows.", valueName: "tier"))
    var isolation: Tier?

    @Option(name: .customLong("audit-log"), help: ArgumentHelp("Append the policy decision to this JSON-lines file.", valueName: "file"))
    var auditLog: String = PolicyGate.defaultAuditPath
}

/// What the image store knows about the image of an image-form `run` (or `policy explain IMAGE`): its name,
/// digest, who imported it from where, and its labels. The policy sees the same facts in both.
struct ImageFacts {
    var name: String
    var digest: String
    var origin: ImageOrigin
    var labels: [String: String]

    init(_ image: StoredImage, reference: String) {
        name = image.name ?? reference
        digest = image.manifestDigest
        origin = ImageOrigin(importedBy: image.importedBy, source: image.source)
        labels = image.config.config?.labels ?? [:]
    }
}

/// The policy step of `create`/`run`: decide the tier before anything is built, record it, apply the tier's
/// settings to the spec.
enum PolicyAdmission {
    /// Loads the policy (fail closed), decides for the bundle, writes the audit line, and returns the decision.
    /// A deny and a refused request are errors that name the rule; nothing falls back to a lower tier.
    /// `spec`: the spec that will run (already decoded); the decision is about it.
    static func admit(_ options: PolicyOptions, id: String, bundle: String, spec: Spec? = nil, image: ImageFacts? = nil) throws -> Decision {
        let gate = try PolicyGate.load(policyPath: options.policy, auditPath: options.auditLog)
        let request = try DeploymentRequest.forBundle(bundle, spec: spec.map(facts(of:)), tenant: options.tenant, isolation: options.isolation,
                                                      image: image?.name, digest: image?.digest, origin: image?.origin,
                                                      labels: image?.labels ?? [:])
        // A microvm decision goes to the microVM backend, which refuses (never falls back to namespaces) where
        // the host lacks what it needs (kernel, agent, QEMU/libvirt), naming what is missing.
        return try gate.admit(request, containerID: id)
    }

    /// What the policy reads from a runtime spec (``SpecPrivileges/read(configJSON:)`` reads the same from the bytes).
    static func facts(of spec: Spec) -> SpecFacts {
        var facts = SpecFacts()
        if let caps = spec.process?.capabilities {
            for set in [caps.bounding, caps.effective, caps.inheritable, caps.permitted, caps.ambient] { facts.capabilities += set ?? [] }
        }
        facts.noNewPrivileges = spec.process?.noNewPrivileges ?? false
        facts.namespaces = (spec.linux?.namespaces ?? []).map { SpecFacts.Namespace(type: $0.type.rawValue, path: $0.path) }
        facts.mounts = (spec.mounts ?? []).map { SpecFacts.Mount(type: $0.type, source: $0.source, options: $0.options ?? []) }
        facts.devicePaths = (spec.linux?.devices ?? []).map(\.path)
        facts.deviceRules = spec.linux?.resources?.devices?.map {
            SpecFacts.DeviceRule(allow: $0.allow, type: $0.type, major: $0.major, minor: $0.minor, access: $0.access)
        }
        facts.annotations = spec.annotations ?? [:]
        return facts
    }

    /// The tier's settings applied to the spec: a read-only rootfs and the capability ceiling narrow what the
    /// spec asks for (never widen it); a required user namespace must be in the spec, or (the image form of
    /// `run`, which passes `userNamespace`) is turned on as with `--userns auto`; `seccomp`: `default` gives
    /// Bulkhead's default profile (widened for the capabilities the spec holds) to a spec that has no filter of
    /// its own and did not ask to be unconfined (annotation `bulkhead.seccomp: unconfined`, what
    /// `run --security-opt seccomp=unconfined` and `--privileged` write), a path replaces the spec's filter with
    /// that profile, `unconfined` leaves the spec as it is.
    static func apply(_ decision: Decision, to spec: inout Spec, userNamespace: AutoUserNamespace? = nil) throws {
        if let ceilings = decision.settings?.resources { applyCeilings(ceilings, to: &spec) }
        guard let settings = decision.settings?.namespace else { return }
        let rule = "policy rule '\(decision.rule)' (\(decision.ruleLocation))"
        if settings.readonlyRootfs == true {
            if spec.root == nil { spec.root = Spec.Root(path: "rootfs", readonly: true) } else { spec.root!.readonly = true }
        }
        if let ceiling = settings.capabilityCeiling, var caps = spec.process?.capabilities {
            let allowed = Set(ceiling)
            func narrow(_ list: [String]?) -> [String]? { list.map { $0.filter { allowed.contains($0.uppercased().hasPrefix("CAP_") ? $0.uppercased() : "CAP_" + $0.uppercased()) } } }
            caps.bounding = narrow(caps.bounding)
            caps.effective = narrow(caps.effective)
            caps.inheritable = narrow(caps.inheritable)
            caps.permitted = narrow(caps.permitted)
            caps.ambient = narrow(caps.ambient)
            spec.process!.capabilities = caps
        }
        switch settings.seccomp ?? "default" {
        case "unconfined": break
        case "default":
            if spec.linux?.seccomp == nil && spec.annotations?[ImageSpecBuilder.seccompAnnotation] != "unconfined" {
                if spec.linux == nil { spec.linux = Spec.Linux() }
                spec.linux!.seccomp = DefaultSeccomp.profile(for: spec.process?.capabilities)
            }
        case let path:
            do {
                let profile = try DefaultSeccomp.load(path: path)
                if spec.linux == nil { spec.linux = Spec.Linux() }
                spec.linux!.seccomp = profile
            } catch {
                throw RuntimeError("\(rule) sets seccomp to \(path): \(error)")
            }
        }
        if settings.userNamespace == true,
           !(spec.linux?.namespaces ?? []).contains(where: { $0.type == .user && ($0.path ?? "").isEmpty }) {
            if let userNamespace {
                try userNamespace.enable(&spec, reason: "\(rule) requires a user namespace")
                return
            }
            throw RuntimeError("\(rule) requires a user namespace, and the spec has none: add {\"type\": \"user\"} to linux.namespaces with uidMappings/gidMappings")
        }
    }

    /// The policy's resource ceilings on the spec's `linux.resources`: a limit the spec lacks is added, one above
    /// the ceiling is lowered to it, one below is kept. (Both tiers: the namespace tier's cgroup and the guest's.)
    static func applyCeilings(_ c: ResourceCeilings, to spec: inout Spec) {
        guard c.memory != nil || c.milliCPUs != nil || c.pids != nil else { return }
        if spec.linux == nil { spec.linux = Spec.Linux() }
        var resources = spec.linux!.resources ?? Spec.Resources()
        func fields(_ v: JSONValue?) -> [String: JSONValue] {
            if case .object(let f)? = v { return f }
            return [:]
        }
        func number(_ f: [String: JSONValue], _ key: String) -> Double? {
            if case .number(let n)? = f[key] { return n }
            return nil
        }
        /// A positive limit at or under the ceiling stays; none, "unlimited" (-1, 0) or a bigger one becomes it.
        func narrowed(_ value: Double?, to ceiling: Double) -> Double {
            guard let value, value > 0, value <= ceiling else { return ceiling }
            return value
        }
        if let memory = c.memory {
            var f = fields(resources.memory)
            let limit = narrowed(number(f, "limit"), to: Double(memory))
            f["limit"] = .number(limit)
            // Memory+swap may not exceed the limit either (no swap beyond the ceiling).
            if let swap = number(f, "swap"), swap < 0 || swap > limit { f["swap"] = .number(limit) }
            if let reservation = number(f, "reservation"), reservation > limit { f["reservation"] = .number(limit) }
            resources.memory = .object(f)
        }
        if let milli = c.milliCPUs {
            var f = fields(resources.cpu)
            let period = number(f, "period").flatMap { $0 > 0 ? $0 : nil } ?? 100_000
            let ceiling = (Double(milli) * period / 1000).rounded(.down)
            f["period"] = .number(period)
            f["quota"] = .number(narrowed(number(f, "quota"), to: max(1000, ceiling)))
            resources.cpu = .object(f)
        }
        if let pids = c.pids {
            var f = fields(resources.pids)
            f["limit"] = .number(narrowed(number(f, "limit"), to: Double(pids)))
            resources.pids = .object(f)
        }
        spec.linux!.resources = resources
    }

    /// The microVM settings of the decision, for the microVM backend (recorded in the container's state).
    static func microVMSettings(_ decision: Decision) -> [String: String] {
        guard decision.granted == .microvm, let m = decision.settings?.microvm else { return [:] }
        var out: [String: String] = [:]
        if let v = m.vcpus { out["vm.vcpus"] = String(v) }
        if let v = m.memory { out["vm.memoryMiB"] = String(v >> 20) }
        if let v = m.hypervisor { out["vm.hypervisor"] = v.rawValue }
        if let v = m.kernel { out["vm.kernel"] = v }
        if let v = m.hypervisorURI { out["vm.hypervisorURI"] = v }
        out["vm.rule"] = decision.rule
        return out
    }
}
