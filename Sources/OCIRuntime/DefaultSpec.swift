import FoundationEssentials

extension Spec {
    /// The default config.json of `bulkhead spec`, close to `runc spec`: `sh` on a terminal as root in a read-only
    /// rootfs, new pid/network/ipc/uts/mount/cgroup namespaces, the usual /proc /dev /sys mounts and the usual
    /// masked and read-only paths.
    public static func defaultSpec(rootfs: String = "rootfs", args: [String] = ["sh"], terminal: Bool = true) -> Spec {
        let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        var process = Process(
            terminal: terminal, user: User(uid: 0, gid: 0), args: args,
            env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            cwd: "/",
            capabilities: Capabilities(bounding: caps, effective: caps, permitted: caps, ambient: caps),
            rlimits: [Rlimit(type: "RLIMIT_NOFILE", hard: 1024, soft: 1024)],
            noNewPrivileges: true)
        process.capabilities?.inheritable = nil
        var linux = Linux(namespaces: [.pid, .network, .ipc, .uts, .mount, .cgroup].map { Namespace(type: $0) })
        linux.resources = Resources(devices: [DeviceCgroup(allow: false, access: "rwm")])
        linux.maskedPaths = defaultMaskedPaths
        linux.readonlyPaths = defaultReadonlyPaths
        return Spec(
            process: process,
            root: Root(path: rootfs, readonly: true),
            hostname: "bulkhead",
            mounts: defaultMounts,
            linux: linux)
    }

    public static let defaultMounts: [Mount] = [
        Mount(destination: "/proc", type: "proc", source: "proc"),
        Mount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount(destination: "/dev/pts", type: "devpts", source: "devpts",
              options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        Mount(destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        Mount(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
        Mount(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
        Mount(destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"]),
    ]

    public static let defaultMaskedPaths = [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
    ]

    public static let defaultReadonlyPaths = [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    ]
}

/// The state of a container as the OCI runtime spec and runc's `state` verb print it.
public struct ContainerStateJSON: Codable, Sendable, Equatable {
    public var ociVersion: String
    public var id: String
    public var pid: Int32
    public var status: String
    public var bundle: String
    public var rootfs: String
    public var created: String
    public var owner: String
    public var annotations: [String: String]?

    public init(ociVersion: String = Spec.version, id: String, pid: Int32, status: String, bundle: String,
                rootfs: String, created: String, owner: String = "", annotations: [String: String]? = nil) {
        self.ociVersion = ociVersion; self.id = id; self.pid = pid; self.status = status; self.bundle = bundle
        self.rootfs = rootfs; self.created = created; self.owner = owner; self.annotations = annotations
    }

    /// The state passed to hooks on stdin (the OCI spec's form: no rootfs/created/owner).
    public var hookJSON: [UInt8] {
        struct HookState: Codable { var ociVersion: String; var id: String; var status: String; var pid: Int32?
            var bundle: String; var annotations: [String: String]? }
        let s = HookState(ociVersion: ociVersion, id: id, status: status, pid: pid > 0 ? pid : nil, bundle: bundle,
                          annotations: annotations)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(s)) ?? Data())
    }
}
