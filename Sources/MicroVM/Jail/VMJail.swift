import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Jailer-style confinement of the VMM process, applied after the VM is built (files open, memory mapped) and
/// before any guest code runs:
/// 1. its own memory cgroup, limited to guest memory + ``overheadBytes`` (cgroup v1 `memory` controller, or
///    cgroup v2 `memory.max` where the unified hierarchy is mounted at /sys/fs/cgroup);
/// 2. a private mount namespace whose root is an empty, read-only tmpfs: every file the VMM needs (kernel,
///    initrd, disks, console, /dev/kvm) is already open, so the namespace needs to hold nothing;
/// 3. no capabilities (bounding set emptied, no_new_privs) — done by ``dropCapabilities()`` before the threads start;
/// 4. seccomp filters per thread role (``SeccompPolicy``), installed by each thread before its first KVM_RUN.
public final class VMJail: @unchecked Sendable {
    /// What the VMM may use beyond guest memory (its code, heap, thread stacks, page cache of disk reads).
    public static let overheadBytes: UInt64 = 64 << 20

    /// The cgroup directory the VMM moved into (host path, for reporting), if any.
    public let cgroupPath: String?
    public let memoryLimit: UInt64
    /// The parent cgroup directory (raw fd, -1 when there is no cgroup), opened before the namespace changed.
    let cgroupParent: Int32
    let cgroupName: String

    deinit { if cgroupParent >= 0 { close(cgroupParent) } }

    init(cgroupPath: String?, memoryLimit: UInt64, cgroupParent: Int32, cgroupName: String) {
        self.cgroupPath = cgroupPath
        self.memoryLimit = memoryLimit
        self.cgroupParent = cgroupParent
        self.cgroupName = cgroupName
    }

    /// Starts moving the process into its own memory cgroup on a helper thread (on cgroup v1 the move waits for an
    /// RCU grace period, ≈10 ms, which then overlaps the KVM set-up). ``PendingCgroup/finish()`` must be called
    /// before guest memory is written and before ``confineMounts()``.
    ///
    /// On cgroup v1 a single-threaded process moves at once instead: writing "0" to the new group's `tasks` moves
    /// only the calling thread, which the kernel does without the global threadgroup lock — and without its RCU
    /// grace period (≈0.05 ms against 7–23 ms measured here). Every thread started afterwards inherits the group.
    public static func begin(guestMemoryBytes: UInt64) throws -> PendingCgroup {
        let pending = PendingCgroup()
        if isSingleThreaded(), access(cgroupCandidates[0].root + "/tasks", F_OK) == 0 {
            pending.result = Result { try enter(guestMemoryBytes: guestMemoryBytes, moveCurrentThreadOnly: true) }
            return pending
        }
        pending.thread = try spawnThread {
            do { pending.result = .success(try enter(guestMemoryBytes: guestMemoryBytes)) } catch { pending.result = .failure(error) }
        }
        return pending
    }

    /// A cgroup move in progress.
    public final class PendingCgroup: @unchecked Sendable {
        var thread: pthread_t?
        var result: Result<VMJail, any Error>?
        /// Waits for the move; returns the jail or throws why the move failed.
        public func finish() throws -> VMJail {
            if let thread { pthread_join(thread, nil); self.thread = nil }
            guard let result else { throw KVMError("the cgroup move did not run") }
            return try result.get()
        }
    }

    /// Moves the process into its own memory cgroup. Call before the VM is built, so that everything the VMM
    /// allocates or loads into guest memory is charged to it.
    ///
    /// `moveCurrentThreadOnly` (cgroup v1, single-threaded callers): join through `tasks` ("0": this thread) rather
    /// than `cgroup.procs` (see ``begin(guestMemoryBytes:)``).
    public static func enter(guestMemoryBytes: UInt64, moveCurrentThreadOnly: Bool = false) throws -> VMJail {
        let limit = guestMemoryBytes + overheadBytes
        let pid = getpid()
        let name = cgroupName(vmmPid: pid)
        var parent: Int32 = -1
        var path: String? = nil
        for (root, limitFile) in cgroupCandidates {
            guard access(root + "/cgroup.procs", F_OK) == 0 else { continue }
            if limitFile == "memory.max" && access(root + "/cgroup.controllers", F_OK) != 0 { continue }
            let rootFD = try FileDescriptor.open(root, O_RDONLY | O_DIRECTORY)
            try rootFD.mkdirIfMissing("bulkhead")
            let base = try rootFD.openAt("bulkhead", O_RDONLY | O_DIRECTORY)
            if limitFile == "memory.max" {
                // v2: the memory controller must be enabled for children of the parent.
                if let control = try? rootFD.openAt("cgroup.subtree_control", O_WRONLY) { try? control.writeAll("+memory") }
                if let control = try? base.openAt("cgroup.subtree_control", O_WRONLY) { try? control.writeAll("+memory") }
            }
            try base.mkdirIfMissing(name)
            let own = try base.openAt(name, O_RDONLY | O_DIRECTORY)
            do {
                try own.openAt(limitFile, O_WRONLY).writeAll(String(limit), path: "\(root)/bulkhead/\(name)/\(limitFile)")
                if moveCurrentThreadOnly && limitFile == "memory.limit_in_bytes" && isSingleThreaded() {
                    try own.openAt("tasks", O_WRONLY).writeAll("0", path: "\(root)/bulkhead/\(name)/tasks")
                } else {
                    try own.openAt("cgroup.procs", O_WRONLY).writeAll(String(pid), path: "\(root)/bulkhead/\(name)/cgroup.procs")
                }
            } catch {
                try? base.unlink(name, directory: true)
                throw error
            }
            parent = base.take()
            path = "\(root)/bulkhead/\(name)"
            break
        }

        return VMJail(cgroupPath: path, memoryLimit: limit, cgroupParent: parent, cgroupName: name)
    }

    /// Whether the calling process has one thread (the same count the namespace tier's fork decision uses).
    static func isSingleThreaded() -> Bool { bh_thread_count() == 1 }

    /// The memory hierarchies a jail may use: cgroup v1's memory controller (hybrid hosts) or a pure v2 hierarchy.
    static let cgroupCandidates: [(root: String, limitFile: String)] = [
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"), ("/sys/fs/cgroup", "memory.max"),
    ]

    /// The jail cgroup's name (under `<hierarchy>/bulkhead/`) for the VMM with this pid.
    public static func cgroupName(vmmPid: pid_t) -> String { "vm-\(vmmPid)" }

    /// Removes the cgroup a VMM with this pid left behind (a VMM killed with SIGKILL cannot leave it itself).
    /// Only an empty cgroup can be removed, so this never disturbs a VMM that still runs.
    public static func removeLeftoverCgroup(vmmPid: pid_t) {
        guard vmmPid > 0 else { return }
        for (root, _) in cgroupCandidates {
            guard let base = try? FileDescriptor.open(root + "/bulkhead", O_RDONLY | O_DIRECTORY) else { continue }
            _ = unlinkat(base.raw, cgroupName(vmmPid: vmmPid), AT_REMOVEDIR)
        }
    }

    /// Moves the process into a private mount namespace whose root is an empty read-only tmpfs. Call after every
    /// file the VMM needs is open, while single-threaded. pivot_root(".", ".") stacks the old root under the new
    /// one, and the lazy unmount removes it: no directory, no remount needed.
    ///
    /// Where `/` is not a mount point (a chroot onto a plain directory), it cannot be made private or pivoted;
    /// then the root becomes an empty read-only tmpfs that was never attached to any mount (fsmount), entered
    /// with chroot. Nothing propagates to the host either way; without capabilities (dropped next) the chroot
    /// cannot be left.
    public func confineMounts() throws {
        try Confinement.unshareMountNamespace()
        if !Mount.isMountPoint("/") {
            let root = try sys("fsmount tmpfs", nil) { bh_detached_empty_tmpfs(4) }
            defer { close(root) }
            try sys("fchdir", "(empty tmpfs)") { fchdir(root) }
            try sys("chroot", ".") { chroot(".") }
            try sys("chdir", "/") { chdir("/") }
            return
        }
        try Mount.mount(source: nil, target: "/", type: nil, flags: UInt(MS_REC | MS_PRIVATE))
        try Mount.mount(source: "bulkhead-vmm", target: "/tmp", type: "tmpfs",
                        flags: UInt(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), data: "size=4k,mode=0555")
        try sys("chdir", "/tmp") { chdir("/tmp") }
        try Confinement.pivotRoot(".", putOld: ".")
        try Mount.unmount(".", flags: Int32(MNT_DETACH))
        try sys("chdir", "/") { chdir("/") }
    }

    /// Drops every capability of the calling thread (threads started afterwards inherit none).
    public func dropCapabilities() throws { try Confinement.dropAllCapabilities() }

    /// Leaves the cgroup and removes it (at exit; the directory fd was opened before the namespace changed).
    /// `singleThreaded`: the caller has no other thread (then cgroup v1 moves it back without the global lock).
    public func leave(singleThreaded: Bool = false) {
        guard cgroupParent >= 0 else { return }
        // v1 and single-threaded again (the caller joined the VM's threads): the quick move, as at entry. (/proc is
        // not mounted in the jail, so the caller says.)
        let tasks = singleThreaded ? bh_openat(cgroupParent, "tasks", O_WRONLY | O_CLOEXEC, 0) : -1
        if tasks >= 0 {
            _ = Glibc.write(tasks, "0", 1)
            close(tasks)
        } else {
            let procs = bh_openat(cgroupParent, "cgroup.procs", O_WRONLY | O_CLOEXEC, 0)
            if procs >= 0 {
                let pid = Array(String(getpid()).utf8)
                _ = pid.withUnsafeBytes { Glibc.write(procs, $0.baseAddress, $0.count) }
                close(procs)
            }
        }
        _ = unlinkat(cgroupParent, cgroupName, AT_REMOVEDIR)
    }
}
