import ArgumentParser
import FoundationEssentials
import OCIImage
import Policy
import PolicyGate

/// `bulkhead policy explain`: what the policy decides for a deployment, which rule, and each condition.
struct PolicyExplain: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Show the decision for a deployment: the tier, the rule, and each condition that matched or not.",
        discussion: """
            The policy is loaded exactly as create/run load it (--policy, else /etc/bulkhead/policy.yaml, else the \
            built-in policy; a file writable by anyone but root is refused). With --bundle, privileges, annotations \
            and the bundle's owner come from the bundle; without, the deployment asks for no extra privileges. \
            Nothing is written to the audit log.
            """).verb

    @OptionGroup var globals: GlobalOptions

    @Option(help: ArgumentHelp("Policy file to use instead of /etc/bulkhead/policy.yaml.", valueName: "file"))
    var policy: String?

    @Option(help: ArgumentHelp("The tenant (overrides the bundle's annotations; \"\" for none).", valueName: "name"))
    var tenant: String?

    @Option(help: ArgumentHelp("The tier the deployer asks for: namespace or microvm.", valueName: "tier"))
    var isolation: Tier?

    @Option(help: ArgumentHelp("The image reference, e.g. docker.io/library/busybox:1.36.", valueName: "name"))
    var image: String?

    @Option(help: ArgumentHelp("The image digest, sha256:<hex>.", valueName: "digest"))
    var digest: String?

    @Option(name: .customLong("imported-by"), help: ArgumentHelp("Who imported the image: root, a user, uid:N.", valueName: "who"))
    var importedBy: String?

    @Option(help: ArgumentHelp("Where the image came from, e.g. oci-archive:/srv/app.tar.", valueName: "origin"))
    var source: String?

    @Option(name: .customLong("annotation"), help: ArgumentHelp("An annotation KEY=VALUE (repeatable).", valueName: "k=v"))
    var annotations: [String] = []

    @Option(name: .customLong("label"), help: ArgumentHelp("An image label KEY=VALUE (repeatable).", valueName: "k=v"))
    var labels: [String] = []

    @Option(help: ArgumentHelp("An OCI bundle: read config.json for privileges and annotations.", valueName: "dir"))
    var bundle: String?

    @Option(help: "Output format: text or json.")
    var format: LogFormat = .text

    @Argument(help: ArgumentHelp("The image reference (same as --image).", valueName: "image"))
    var imageArgument: String?

    func validate() throws {
        if image != nil && imageArgument != nil { throw ValidationError("give the image once: either IMAGE or --image") }
        for a in annotations + labels where !a.contains("=") { throw ValidationError("'\(a)' is not KEY=VALUE") }
    }

    static func pairs(_ list: [String]) -> [String: String] {
        var out: [String: String] = [:]
        for a in list {
            let eq = a.firstIndex(of: "=")!
            out[String(a[..<eq])] = String(a[a.index(after: eq)...])
        }
        return out
    }

    func run() throws {
        let gate = try PolicyGate.load(policyPath: policy, auditPath: nil)
        let extraAnnotations = Self.pairs(annotations)
        var imageName = image ?? imageArgument
        var imageDigest = digest
        var imageLabels = Self.pairs(labels)
        var origin: ImageOrigin? = nil
        // An image in the store is explained with the facts `run IMAGE` gives the policy (digest, importer,
        // source, labels); options given on the command line win.
        if let name = imageName, let stored = try? ImageStore(dataRoot: globals.dataRoot).resolve(name) {
            let facts = ImageFacts(stored, reference: name)
            imageName = facts.name
            imageDigest = imageDigest ?? facts.digest
            imageLabels = facts.labels.merging(imageLabels) { $1 }
            origin = ImageOrigin(importedBy: importedBy ?? facts.origin.importedBy, source: source ?? facts.origin.source)
        } else if importedBy != nil || source != nil {
            origin = ImageOrigin(importedBy: importedBy, source: source)
        }
        var request: DeploymentRequest
        if let bundle {
            request = try DeploymentRequest.forBundle(bundle, tenant: tenant, isolation: isolation, image: imageName,
                                                      digest: imageDigest, origin: origin, labels: imageLabels)
            if !extraAnnotations.isEmpty {
                request.annotations.merge(extraAnnotations) { $1 }
                request.tenant = DeploymentRequest.resolveTenant(explicit: tenant, annotations: request.annotations)
                request.requestedIsolation = try DeploymentRequest.resolveIsolation(explicit: isolation, annotations: request.annotations)
            }
        } else {
            request = DeploymentRequest(image: imageName, digest: imageDigest, origin: origin ?? ImageOrigin(),
                                        annotations: extraAnnotations, labels: imageLabels)
            request.tenant = DeploymentRequest.resolveTenant(explicit: tenant, annotations: extraAnnotations)
            request.requestedIsolation = try DeploymentRequest.resolveIsolation(explicit: isolation, annotations: extraAnnotations)
        }
        let decision = gate.policy.decide(request, explain: true)
        switch format {
        case .json:
            struct Output: Encodable {
                var decision: Decision
                var request: DeploymentRequest
                var policy_sha256: String
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            let data = try encoder.encode(Output(decision: decision, request: request, policy_sha256: gate.policyDigest))
            print(String(decoding: data, as: UTF8.self))
        case .text:
            print(Self.text(decision, request, digest: gate.policyDigest), terminator: "")
        }
    }

    static func text(_ d: Decision, _ r: DeploymentRequest, digest: String) -> String {
        var out = ""
        let verdict: String
        switch d.outcome {
        case .run: verdict = d.granted!.rawValue
        case .deny: verdict = "deny"
        case .refused: verdict = "refused (the request for \(d.requested?.rawValue ?? "?") is an error)"
        }
        out += "decision:  \(verdict)\n"
        out += "rule:      \(d.rule) (\(d.ruleLocation))\n"
        out += "why:       \(d.summary)\n"
        out += "policy:    \(d.policy) (\(digest))\n"
        let p = r.privileges
        func list(_ v: [String]) -> String { v.isEmpty ? "none" : v.joined(separator: ", ") }
        out += "request:   tenant=\(r.tenant ?? "(none)") image=\(r.image.map { ImageName(parsing: $0).canonical } ?? "(unknown)")"
            + " digest=\(r.digest ?? "(unknown)") imported_by=\(r.origin.importedBy ?? "(unknown)")"
            + " source=\(r.origin.source ?? "(unknown)") isolation=\(r.requestedIsolation?.rawValue ?? "(none asked)")\n"
        out += "privileges: privileged=\(p.privileged) added_capabilities=\(list(p.addedCapabilities))"
            + " host_namespaces=\(list(p.hostNamespaces)) host_mounts=\(list(p.hostMounts)) devices=\(list(p.devices))"
            + " no_new_privileges=\(p.noNewPrivileges)\n"
        if let s = d.settings {
            if let n = s.namespace {
                out += "settings:  namespace seccomp=\(n.seccomp ?? "default") user_namespace=\(n.userNamespace ?? false)"
                    + " readonly_rootfs=\(n.readonlyRootfs ?? false) capability_ceiling=\(n.capabilityCeiling.map(list) ?? "(the spec's own)")\n"
            }
            if let m = s.microvm {
                out += "settings:  microvm vcpus=\(m.vcpus ?? 1) memory=\(bytes(m.memory)) hypervisor=\(m.hypervisor?.rawValue ?? "auto")"
                    + " kernel=\(m.kernel ?? "default") hypervisor_uri=\(m.hypervisorURI ?? "(embedded)")\n"
            }
            let res = s.resources
            out += "ceilings:  memory=\(bytes(res.memory)) cpus=\(res.milliCPUs.map { String(Double($0) / 1000) } ?? "(none)")"
                + " pids=\(res.pids.map(String.init) ?? "(none)")\n"
        }
        out += "rules tried (first match wins):\n"
        for t in d.trace ?? [] {
            out += "  \(t.matched ? "MATCH" : "no   ") \(t.rule) (\(t.location))\n"
            for c in t.conditions {
                out += "        \(c.matched ? "+" : "-") \(c.key): \(c.detail)\n"
            }
        }
        return out
    }

    static func bytes(_ v: UInt64?) -> String {
        guard let v else { return "(none)" }
        if v % (1 << 30) == 0 { return "\(v >> 30)Gi" }
        if v % (1 << 20) == 0 { return "\(v >> 20)Mi" }
        return "\(v)"
    }
}

extension Tier: ExpressibleByArgument {}
