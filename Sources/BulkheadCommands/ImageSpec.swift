import Confine
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
    /// All capabilities, no seccomp filter, no masked or read-only paths, every host device (the policy decides
    /// whether such a container may run at all).
    var privileged = false
    var capAdd: [String] = []
    var capDrop: [String] = []
    /// `seccomp=unconfined` or `seccomp=FILE` (Docker's `--security-opt`).
    var securityOpts: [String] = []
}

/// Builds a runtime spec (config.json) from an OCI image configuration, with Docker's defaults for what the
/// image leaves open: Entrypoint + Cmd (a CMD given on the command line replaces the image's Cmd), the
/// image's Env with PATH filled in, WorkingDir (default /), User resolved through the image's own /etc/passwd
/// and /etc/group (default root), the container's hostname, new pid/ipc/uts/mount/network/cgroup namespaces
/// (no network beyond loopback), the usual mounts, masked and read-only paths — and Docker's secure defaults:
/// its default capability set (bounding, effective, permitted), the default seccomp profile (widened for the
/// capabilities held, as Docker does), no_new_privs, and a pids limit.
enum ImageSpecBuilder {
    /// Annotation keys through which a deployment talks to the policy; never taken from an image's labels.
    static func isDeploymentKey(_ key: String) -> Bool {
        key.hasPrefix("bulkhead.") || key.hasPrefix("io.kubernetes.")
    }

    static let defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// Docker's default capability set.
    static let defaultCapabilities = [
        "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
    ]
    /// The default `linux.resources.pids.limit`: enough for any ordinary service, not for a fork bomb.
    static let defaultPidsLimit = 4096
    /// Annotation recording an explicit `seccomp=unconfined`, so the policy's `seccomp: default` (which fills in
    /// the default profile where a spec has none) leaves the container unconfined as asked.
    static let seccompAnnotation = "bulkhead.seccomp"

    /// The capability set after `--cap-add`/`--cap-drop` (names with or without CAP_, or ALL), in number order.
    static func capabilities(add: [String], drop: [String]) throws -> [String] {
        func canonical(_ name: String, _ flag: String) throws -> String? {
            let upper = name.uppercased()
            if upper == "ALL" { return nil }
            let full = upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
            _ = try CapabilityPlan.number(of: full, field: flag)
            return full
        }
        var set = Set(defaultCapabilities)
        for d in drop {
            if let c = try canonical(d, "--cap-drop \(d)") { set.remove(c) } else { set.removeAll() }
        }
        for a in add {
            if let c = try canonical(a, "--cap-add \(a)") { set.insert(c) } else { set.formUnion(CapabilityPlan.boundingNamesOfThisProcess) }
        }
        return try set.sorted { try CapabilityPlan.number(of: $0, field: "") < CapabilityPlan.number(of: $1, field: "") }
    }

    /// The host's device nodes directly under /dev (what `--privileged` passes in), less those every container
    /// gets anyway.
    static func hostDevices() -> [Spec.Device] {
        let standard: Set<String> = ["null", "zero", "full", "random", "urandom", "tty", "console", "ptmx"]
        guard let dev = try? FileDescriptor.open("/dev", O_RDONLY | O_DIRECTORY), let names = try? dev.entries() else { return [] }
        var out: [Spec.Device] = []
        for name in names.sorted() where !standard.contains(name) {
            var st = stat()
            guard fstatat(dev.raw, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            let kind = st.st_mode & S_IFMT
            guard kind == S_IFCHR || kind == S_IFBLK else { continue }
            let rdev = UInt64(st.st_rdev)
            let major = Int64(((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~UInt64(0xfff)))
            let minor = Int64((rdev & 0xff) | ((rdev >> 12) & ~UInt64(0xff)))
            var d = Spec.Device(type: kind == S_IFCHR ? "c" : "b", path: "/dev/" + name, major: major, minor: minor,
                                fileMode: UInt32(st.st_mode & 0o7777))
            d.uid = st.st_uid; d.gid = st.st_gid
            out.append(d)
        }
        return out
    }

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
        spec.process?.rlimits = nil
        var resources = Spec.Resources()
        resources.pids = .object(["limit": .number(Double(defaultPidsLimit))])
        spec.linux?.resources = resources
        var seccompChoice = "default"
        for opt in o.securityOpts {
            let kv = opt.split(separator: "=", maxSplits: 1).map(String.init)
            let key = kv[0], value = kv.count == 2 ? kv[1] : ""
            switch key {
            case "seccomp":
                guard !value.isEmpty else { throw RuntimeError("--security-opt \(opt): give seccomp=unconfined or seccomp=PROFILE.json") }
                seccompChoice = value
            case "no-new-privileges":
                guard value == "" || value == "true" || value == "false" else {
                    throw RuntimeError("--security-opt \(opt): give no-new-privileges, no-new-privileges=true or =false")
                }
                spec.process?.noNewPrivileges = value != "false"
            default:
                throw RuntimeError("--security-opt \(opt): unsupported option (supported: seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false])")
            }
        }
        // Image labels become annotations, except the keys a deployer uses to speak to the policy (tenant,
        // isolation request, Kubernetes namespace, bulkhead.seccomp): an image must not choose its own tenant,
        // tier or confinement.
        var annotations = (config.labels ?? [:]).filter { !Self.isDeploymentKey($0.key) }
        if o.privileged {
            let all = CapabilityPlan.boundingNamesOfThisProcess
            spec.process?.capabilities = Spec.Capabilities(bounding: all, effective: all, permitted: all)
            spec.process?.noNewPrivileges = false
            spec.linux?.maskedPaths = nil
            spec.linux?.readonlyPaths = nil
            spec.linux?.devices = hostDevices()
            spec.linux?.resources?.devices = [Spec.DeviceCgroup(allow: true, access: "rwm")]
            spec.mounts = spec.mounts?.map { m in
                // /sys writable, as Docker gives a privileged container.
                guard m.destination == "/sys" else { return m }
                var w = m; w.options = (m.options ?? []).filter { $0 != "ro" }; return w
            }
            annotations[seccompAnnotation] = "unconfined"
        } else {
            let caps = try capabilities(add: o.capAdd, drop: o.capDrop)
            spec.process?.capabilities = Spec.Capabilities(bounding: caps, effective: caps, permitted: caps)
            let nnp = spec.process?.noNewPrivileges ?? true
            spec.process?.noNewPrivileges = nnp
            switch seccompChoice {
            case "unconfined": annotations[seccompAnnotation] = "unconfined"
            case "default": spec.linux?.seccomp = DefaultSeccomp.profile(for: spec.process?.capabilities)
            default:
                let path = seccompChoice.hasPrefix("/") ? seccompChoice : RuntimeSupport.absolute(seccompChoice)
                spec.linux?.seccomp = try DefaultSeccomp.load(path: path)
            }
        }
        let userSpec = o.user ?? ((config.user ?? "").isEmpty ? "0" : config.user!)
        let resolved = try UserResolver.resolve(userSpec, root: rootfsDirectory)
        spec.process?.user = Spec.User(uid: resolved.uid, gid: resolved.gid, additionalGids: resolved.additionalGids.isEmpty ? nil : resolved.additionalGids)
        if let home = resolved.home, !env.contains(where: { $0.hasPrefix("HOME=") }) { spec.process?.env?.append("HOME=" + home) }
        if !annotations.isEmpty { spec.annotations = annotations }
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
