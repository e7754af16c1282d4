import LinuxOS
import Policy
#if canImport(Glibc)
import Glibc
#endif

extension DeploymentRequest {
    /// Builds the request for an OCI bundle: privileges and annotations from its config.json, the tenant and
    /// the isolation request from the explicit values or the annotations, the image from `image` or the
    /// annotations.
    ///
    /// `origin`, when not given, is derived from the bundle itself: a bundle whose directory and config.json
    /// are owned by root and writable by nobody else was put there by the host's root (`imported_by: root`,
    /// `source: bundle:DIR`); otherwise `imported_by: uid:N` of its owner. Host bind-mount sources are listed
    /// both as written and with symlinks resolved, so `/var/run/x.sock` and `/run/x.sock` both meet a rule.
    ///
    /// `spec`: the facts of the spec that will run, when the caller has decoded it already (`create`, `run`); the
    /// decision is then about that spec, and config.json is only looked at for its owner.
    public static func forBundle(_ bundle: String, spec facts: SpecFacts? = nil, tenant: String? = nil, isolation: Tier? = nil,
                                 image: String? = nil, digest: String? = nil, origin: ImageOrigin? = nil,
                                 labels: [String: String] = [:]) throws -> DeploymentRequest {
        let configPath = bundle.hasSuffix("/") ? bundle + "config.json" : bundle + "/config.json"
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(configPath, O_RDONLY) } catch let e as SystemError {
            throw PolicyRequestError("cannot read \(configPath): \(e.reason) (is \(bundle) an OCI bundle?)")
        }
        let st = try fd.stat(path: configPath)
        let spec: (privileges: Privileges, annotations: [String: String])
        if let facts {
            spec = (SpecPrivileges.privileges(of: facts), facts.annotations)
        } else {
            spec = try SpecPrivileges.read(configJSON: try fd.readAll(limit: 16 << 20, path: configPath))
        }
        var privileges = spec.privileges
        let annotations = spec.annotations
        var resolved: [String] = []
        for m in privileges.hostMounts {
            if let r = try? HostPath.resolve(m), r != m, !privileges.hostMounts.contains(r) { resolved.append(r) }
        }
        privileges.hostMounts += resolved

        var request = DeploymentRequest()
        request.privileges = privileges
        request.annotations = annotations
        request.labels = labels
        request.tenant = resolveTenant(explicit: tenant, annotations: annotations)
        request.requestedIsolation = try resolveIsolation(explicit: isolation, annotations: annotations)
        request.image = image ?? imageAnnotations.lazy.compactMap { annotations[$0] }.first
        request.digest = digest ?? annotations[digestAnnotation]
        if let origin {
            request.origin = origin
        } else {
            let dirStat = try? HostPath.stat(bundle)
            let rootOwned = st.st_uid == 0 && st.st_mode & (S_IWGRP | S_IWOTH) == 0
                && dirStat.map { $0.st_uid == 0 && $0.st_mode & (S_IWGRP | S_IWOTH) == 0 } == true
            let owner = st.st_uid != 0 ? st.st_uid : (dirStat?.st_uid ?? 0)
            request.origin = ImageOrigin(importedBy: rootOwned ? "root" : "uid:\(owner)",
                                         source: "bundle:" + ((try? HostPath.resolve(bundle)) ?? bundle))
        }
        return request
    }
}
