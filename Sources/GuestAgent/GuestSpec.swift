import FoundationEssentials

/// The parts of an OCI runtime spec (config.json) the guest agent applies with its own code: root, mounts of
/// kernel filesystems, hostname, the `linux` namespaces and cgroup limits, and per process args/env/cwd/user/
/// rlimits/terminal/noNewPrivileges. Capabilities and seccomp are applied with the namespace tier's `Confine`
/// code from the same bytes decoded as `OCIRuntime.Spec` (see `Agent.create`). The agent logs what it skipped.
public struct GuestSpec: Decodable, Sendable, Equatable {
    public var ociVersion: String?
    public var process: GuestProcess?
    public var root: Root?
    public var hostname: String?
    public var mounts: [GuestMount]?
    /// Present in the spec but not applied in the guest yet (see the seam above).
    public var linux: LinuxSection?

    public struct Root: Decodable, Sendable, Equatable {
        public var path: String?
        public var readonly: Bool?
    }

    public struct LinuxSection: Decodable, Sendable, Equatable {
        public var namespaces: [Namespace]?
        public var seccomp: Ignored?
        public var resources: Resources?
        public struct Namespace: Decodable, Sendable, Equatable {
            public var type: String
            /// A namespace to join: host paths mean nothing inside a VM, so such entries are skipped.
            public var path: String?
        }
        /// The resource limits the agent applies with a cgroup (v2) of the container inside the guest.
        public struct Resources: Decodable, Sendable, Equatable {
            public var memory: Memory?
            public var pids: Pids?
            public var cpu: CPU?
            public struct Memory: Decodable, Sendable, Equatable { public var limit: Int64? }
            public struct Pids: Decodable, Sendable, Equatable { public var limit: Int64? }
            public struct CPU: Decodable, Sendable, Equatable { public var quota: Int64?; public var period: UInt64? }
        }
    }

    /// OCI namespace type → (CLONE_NEW* flag, name under /proc/PID/ns).
    public static let namespaceKinds: [String: (flag: Int32, file: String)] = [
        "pid": (0x2000_0000, "pid"), "network": (0x4000_0000, "net"), "mount": (0x0002_0000, "mnt"),
        "ipc": (0x0800_0000, "ipc"), "uts": (0x0400_0000, "uts"), "cgroup": (0x0200_0000, "cgroup"),
    ]

    /// Any JSON value, skipped.
    public struct Ignored: Decodable, Sendable, Equatable {
        public init(from decoder: any Decoder) throws {}
    }

    public static func decode(_ bytes: [UInt8]) throws -> GuestSpec {
        try JSONDecoder().decode(GuestSpec.self, from: Data(bytes))
    }
}

/// An OCI `process` object (the spec's, or one sent by `exec`).
public struct GuestProcess: Decodable, Sendable, Equatable {
    public var terminal: Bool?
    public var consoleSize: ConsoleSize?
    public var user: User?
    public var args: [String]
    public var env: [String]?
    public var cwd: String?
    public var rlimits: [Rlimit]?
    public var noNewPrivileges: Bool?
    public var capabilities: GuestSpec.Ignored?

    public struct ConsoleSize: Decodable, Sendable, Equatable { public var height: UInt16; public var width: UInt16 }
    public struct User: Decodable, Sendable, Equatable {
        public var uid: UInt32
        public var gid: UInt32
        public var additionalGids: [UInt32]?
    }
    public struct Rlimit: Decodable, Sendable, Equatable {
        public var type: String
        public var hard: UInt64
        public var soft: UInt64
    }

    public static func decode(_ bytes: [UInt8]) throws -> GuestProcess {
        try JSONDecoder().decode(GuestProcess.self, from: Data(bytes))
    }

    /// Checks what the kernel would otherwise reject obscurely; returns a message naming the field.
    public func validate() -> String? {
        if args.isEmpty { return "process.args is empty; give the program to run" }
        if args.count > 4096 { return "process.args has \(args.count) entries (limit 4096)" }
        if let env, env.count > 4096 { return "process.env has \(env.count) entries (limit 4096)" }
        if args.contains(where: { $0.utf8.contains(0) }) || (env ?? []).contains(where: { $0.utf8.contains(0) }) {
            return "process.args/env contain a NUL byte"
        }
        if let cwd, !cwd.hasPrefix("/") { return "process.cwd '\(cwd)' is not absolute" }
        for limit in rlimits ?? [] where GuestProcess.rlimitResource(limit.type) == nil {
            return "process.rlimits: unknown type '\(limit.type)'"
        }
        if (user?.additionalGids?.count ?? 0) > 64 { return "process.user.additionalGids has more than 64 entries" }
        return nil
    }

    /// RLIMIT_* name → resource number (Linux x86_64).
    public static func rlimitResource(_ name: String) -> Int32? {
        let table: [String: Int32] = [
            "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
            "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
            "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
            "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
        ]
        return table[name]
    }
}

/// An OCI mount entry.
public struct GuestMount: Decodable, Sendable, Equatable {
    public var destination: String
    public var type: String?
    public var source: String?
    public var options: [String]?

    public init(destination: String, type: String?, source: String?, options: [String]?) {
        self.destination = destination
        self.type = type
        self.source = source
        self.options = options
    }

    /// Kernel filesystems the agent mounts inside the guest; anything else (bind mounts of host paths)
    /// has no meaning inside a VM and is skipped with a log line.
    public static let guestTypes: Set<String> = ["proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"]

    /// The runc defaults, used when the spec lists no mounts.
    public static let defaults: [GuestMount] = [
        GuestMount(destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"]),
        GuestMount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        GuestMount(destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
        GuestMount(destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        GuestMount(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
        GuestMount(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
        GuestMount(destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"]),
    ]

    /// mount(2) flags and the remaining data string from OCI options.
    public var flagsAndData: (flags: UInt, data: String) {
        let known: [String: UInt] = [
            "ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "sync": 16, "remount": 32, "mand": 64, "dirsync": 128,
            "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24,
        ]
        let clearing: Set<String> = ["rw", "suid", "dev", "exec", "async", "atime", "diratime", "norelatime", "nostrictatime",
                                     // Propagation (applied separately by runc, meaningless as mount data) and engine hints.
                                     "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable",
                                     "tmpcopyup", "notmpcopyup", "copy-symlink", "z", "Z", "U", "idmap"]
        var flags: UInt = 0
        var data: [String] = []
        for option in options ?? [] {
            if let flag = known[option] { flags |= flag } else if clearing.contains(option) { continue } else if option != "bind" && option != "rbind" { data.append(option) }
        }
        return (flags, data.joined(separator: ","))
    }
}
