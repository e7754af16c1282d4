import LinuxOS
import OCIImage
import OCIRuntime
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// What the image form of `run` (and `spec --image`) can override.
struct ImageRunOverrides {
    var command: [String] = []
    var env: [String] = []
    var workdir: String?
    var user: String?
    var hostname: String?
    var volumes: [String] = []
    var tty = false
    var interactive = false
}

/// Builds a runtime spec (config.json) from an OCI image configuration, with Docker's defaults for what the
/// image leaves open: Entrypoint + Cmd (a CMD given on the command line replaces the image's Cmd), the
/// image's Env with PATH filled in, WorkingDir (default /), User resolved through the image's own /etc/passwd
/// and /etc/group (default root), the container's hostname, new pid/ipc/uts/mount/network/cgroup namespaces
/// (no network beyond loopback), the usual mounts, masked and read-only paths.
enum ImageSpecBuilder {
    /// Annotation keys through which a deployment talks to the policy; never taken from an image's labels.
    static func isDeploymentKey(_ key: String) -> Bool {
        key.hasPrefix("bulkhead.") || key.hasPrefix("io.kubernetes.")
    }

    static let defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    static func build(image: ImageConfiguration, overrides o: ImageRunOverrides, rootfs: String,
                      rootfsDirectory: borrowing FileDescriptor, containerID: String) throws -> Spec {
        let config = image.config ?? ImageConfiguration.ContainerConfig()
        let args = (config.entrypoint ?? []) + (o.command.isEmpty ? (config.cmd ?? []) : o.command)
        guard !args.isEmpty else {
            throw RuntimeError("the image has neither Entrypoint nor Cmd: give the command to run after the image name")
        }
        var env = config.env ?? []
        if !env.contains(where: { $0.hasPrefix("PATH=") }) { env.insert(defaultPath, at: 0) }
        let hostname = o.hostname ?? String(containerID.prefix(12))
        env.append("HOSTNAME=\(hostname)")
        if o.tty { env.append("TERM=xterm") }
        for e in o.env {
            guard let eq = e.firstIndex(of: "="), eq != e.startIndex else {
                throw RuntimeError("-e \(e): give KEY=VALUE")
            }
            let key = e[..<eq]
            env.removeAll { $0.hasPrefix(key + "=") }
            env.append(e)
        }
        var spec = Spec.defaultSpec(rootfs: rootfs, args: args, terminal: o.tty)
        spec.root?.readonly = false
        spec.hostname = hostname
        spec.process?.env = env
        spec.process?.cwd = o.workdir ?? ((config.workingDir ?? "").isEmpty ? "/" : config.workingDir!)
        guard spec.process!.cwd.hasPrefix("/") else {
            throw RuntimeError("working directory \"\(spec.process!.cwd)\" must be absolute")
        }
        spec.process?.noNewPrivileges = nil
        spec.process?.capabilities = nil
        spec.process?.rlimits = nil
        spec.linux?.resources = nil
        let userSpec = o.user ?? ((config.user ?? "").isEmpty ? "0" : config.user!)
        let resolved = try UserResolver.resolve(userSpec, root: rootfsDirectory)
        spec.process?.user = Spec.User(uid: resolved.uid, gid: resolved.gid, additionalGids: resolved.additionalGids.isEmpty ? nil : resolved.additionalGids)
        if let home = resolved.home, !env.contains(where: { $0.hasPrefix("HOME=") }) { spec.process?.env?.append("HOME=" + home) }
        // Image labels become annotations, except the keys a deployer uses to speak to the policy (tenant,
        // isolation request, Kubernetes namespace): an image must not choose its own tenant or tier.
        let labels = (config.labels ?? [:]).filter { !Self.isDeploymentKey($0.key) }
        if !labels.isEmpty { spec.annotations = labels }
        for v in o.volumes {
            let parts = v.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2 || parts.count == 3, parts[0].hasPrefix("/"), parts[1].hasPrefix("/") else {
                throw RuntimeError("-v \(v): give an absolute host path and an absolute container path, SRC:DST[:ro]")
            }
            var options = ["rbind", "rprivate"]
            if parts.count == 3 {
                switch parts[2] {
                case "ro": options.append("ro")
                case "rw": break
                default: throw RuntimeError("-v \(v): the mode must be ro or rw")
                }
            }
            spec.mounts?.append(Spec.Mount(destination: parts[1], type: "bind", source: parts[0], options: options))
        }
        return spec
    }
}
