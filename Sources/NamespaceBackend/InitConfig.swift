import OCIRuntime

/// What the runtime tells the container init (sent as JSON over the sync socket).
struct InitConfig: Codable, Sendable {
    enum Mode: String, Codable, Sendable { case create, exec }

    var mode: Mode
    var id: String
    var bundle: String
    /// Absolute host path of the rootfs (create).
    var rootfs: String
    /// The container's spec (create) — for exec only `process` is used.
    var spec: Spec
    var process: Spec.Process
    var noPivot: Bool
    var noNewKeyring: Bool
    /// Host path of the exec fifo (create).
    var fifoPath: String?
    /// fd number (in the init) of the engine's console socket, when a terminal is wanted.
    var consoleFD: Int32?
    /// fds 3 ..< 3+preserveFds pass through to the program.
    var preserveFds: Int
    /// The container's cgroup directories on the host, for `cgroup` mounts: (name in the mount, host dir).
    var cgroupDirectories: [CgroupDirectory]
    /// Whether the host is cgroup v2 only.
    var cgroupUnified: Bool
    /// exec: host pid of the container's init, whose namespaces the new process joins.
    var targetPid: Int32?
    /// The runtime sends the hook state JSON after `ready` when the spec has startContainer hooks.
    var hasStartContainerHooks: Bool
    /// Whether createRuntime/createContainer/prestart hooks need the `hooks` sync step.
    var hasCreateHooks: Bool

    /// Detached idmapped trees of bind mounts (made by the runtime), by index in `spec.mounts`, and the fd number
    /// each has in the init.
    var idmappedMounts: [IdmappedMount]?

    struct IdmappedMount: Codable, Sendable {
        var index: Int
        var fd: Int32
    }

    struct CgroupDirectory: Codable, Sendable {
        var name: String
        var hostPath: String
    }
}
