import ArgumentParser
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

/// The policy step of `create`/`run`: decide the tier before anything is built, record it, apply the tier's
/// settings to the spec.
enum PolicyAdmission {
    /// Loads the policy (fail closed), decides for the bundle, writes the audit line, and returns the decision.
    /// A deny and a refused request are errors that name the rule; nothing falls back to a lower tier.
    static func admit(_ options: PolicyOptions, id: String, bundle: String) throws -> Decision {
        let gate = try PolicyGate.load(policyPath: options.policy, auditPath: options.auditLog)
        let request = try DeploymentRequest.forBundle(bundle, tenant: options.tenant, isolation: options.isolation)
        // A microvm decision goes to the microVM backend, which refuses (never falls back to namespaces) where
        // the host lacks what it needs (kernel, agent, QEMU/libvirt), naming what is missing.
        return try gate.admit(request, containerID: id)
    }

    /// The tier's settings applied to the spec: a read-only rootfs and the capability ceiling narrow what the
    /// spec asks for (never widen it); a required user namespace must be in the spec, or (the image form of
    /// `run`, which passes `userNamespace`) is turned on as with `--userns auto`.
    static func apply(_ decision: Decision, to spec: inout Spec, userNamespace: AutoUserNamespace? = nil) throws {
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
        if settings.userNamespace == true,
           !(spec.linux?.namespaces ?? []).contains(where: { $0.type == .user && ($0.path ?? "").isEmpty }) {
            if let userNamespace {
                try userNamespace.enable(&spec, reason: "\(rule) requires a user namespace")
                return
            }
            throw RuntimeError("\(rule) requires a user namespace, and the spec has none: add {\"type\": \"user\"} to linux.namespaces with uidMappings/gidMappings")
        }
    }
}
