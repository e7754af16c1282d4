import CShims
import LinuxOS
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A spec mount's `options`, split into mount(2) flags, propagation changes and filesystem data.
struct MountOptions: Equatable {
    var flags: UInt = 0
    var clearFlags: UInt = 0
    var propagation: [UInt] = []
    var data: [String] = []
    var bind = false
    var recursive = false

    init(_ options: [String]) {
        for option in options {
            switch option {
            case "bind": bind = true
            case "rbind": bind = true; recursive = true
            case "ro": flags |= MountFlags.readOnly
            case "rw": clearFlags |= MountFlags.readOnly
            case "nosuid": flags |= MountFlags.noSuid
            case "suid": clearFlags |= MountFlags.noSuid
            case "nodev": flags |= MountFlags.noDev
            case "dev": clearFlags |= MountFlags.noDev
            case "noexec": flags |= MountFlags.noExec
            case "exec": clearFlags |= MountFlags.noExec
            case "sync": flags |= MountFlags.synchronous
            case "async": clearFlags |= MountFlags.synchronous
            case "dirsync": flags |= MountFlags.dirSync
            case "remount": flags |= MountFlags.remount
            case "mand": flags |= MountFlags.mandLock
            case "nomand": clearFlags |= MountFlags.mandLock
            case "atime": clearFlags |= MountFlags.noAtime
            case "noatime": flags |= MountFlags.noAtime
            case "diratime": clearFlags |= MountFlags.noDirAtime
            case "nodiratime": flags |= MountFlags.noDirAtime
            case "relatime": flags |= MountFlags.relatime
            case "norelatime": clearFlags |= MountFlags.relatime
            case "strictatime": flags |= MountFlags.strictAtime
            case "nostrictatime": clearFlags |= MountFlags.strictAtime
            case "nosymfollow": flags |= MountFlags.noSymFollow
            case "private": propagation.append(MountFlags.private)
            case "rprivate": propagation.append(MountFlags.private | MountFlags.recursive)
            case "shared": propagation.append(MountFlags.shared)
            case "rshared": propagation.append(MountFlags.shared | MountFlags.recursive)
            case "slave": propagation.append(MountFlags.slave)
            case "rslave": propagation.append(MountFlags.slave | MountFlags.recursive)
            case "unbindable": propagation.append(MountFlags.unbindable)
            case "runbindable": propagation.append(MountFlags.unbindable | MountFlags.recursive)
            case "tmpcopyup", "copy-symlink", "notmpcopyup": continue
            case "idmap", "ridmap": continue   // the runtime makes the idmapped tree (NamespaceBackend.idmappedMountTrees)
            default: data.append(option)
            }
        }
        flags &= ~clearFlags
    }

    /// `rootfsPropagation` values.
    static func propagation(_ value: String?) -> UInt? {
        switch value {
        case "shared": MountFlags.shared
        case "rshared": MountFlags.shared | MountFlags.recursive
        case "slave": MountFlags.slave
        case "rslave": MountFlags.slave | MountFlags.recursive
        case "private": MountFlags.private
        case "rprivate": MountFlags.private | MountFlags.recursive
        case "unbindable": MountFlags.unbindable
        case "runbindable": MountFlags.unbindable | MountFlags.recursive
        default: nil
        }
    }
}

/// Builds the container's root filesystem inside its (new) mount namespace, runs in stage 2 of the init.
/// Paths inside the rootfs are resolved with openat2(RESOLVE_IN_ROOT) from a directory fd of the rootfs, and
/// mounts land on `/proc/self/fd/N` of the resolved target, so a symlink in the image cannot redirect a mount
/// to the host.
struct RootfsSetup {
    let config: InitConfig
    var spec: Spec { config.spec }
    var rootfs: String { config.rootfs }
    var root: Int32 = -1

    init(config: InitConfig) { self.config = config }

    /// Whether the container has a user namespace (new or joined): then device nodes cannot be created
    /// (mknod(2) of a device needs CAP_MKNOD in the initial namespace) and are bind-mounted from the host, as
    /// runc does, and mount flags inherited from host mounts are locked.
    var inUserNamespace: Bool { spec.linux?.namespaces?.contains { $0.type == .user } == true }

    mutating func prepare(sock: SyncSocket) throws {
        let propagation = MountOptions.propagation(spec.linux?.rootfsPropagation)
        if let value = spec.linux?.rootfsPropagation, propagation == nil {
            throw InitError("rootfs propagation", "linux.rootfsPropagation \"\(value)\" is not a propagation type")
        }
        try step("make / \(spec.linux?.rootfsPropagation ?? "rslave")") {
            try Mount.mount(source: nil, target: "/", type: nil, flags: propagation ?? (MountFlags.slave | MountFlags.recursive))
        }
        if let p = propagation, p & MountFlags.shared != 0 {
            // pivot_root refuses a shared parent mount: make the mount holding the rootfs private.
            try step("make the rootfs' parent mount private") {
                if let parent = try Mount.mountPoints(under: "/").filter({ rootfs == $0 || rootfs.hasPrefix($0 == "/" ? "/" : $0 + "/") }).max(by: { $0.count < $1.count }) {
                    try Mount.mount(source: nil, target: parent, type: nil, flags: MountFlags.private)
                }
            }
        }
        try step("bind the rootfs \(rootfs)") {
            try Mount.mount(source: rootfs, target: rootfs, type: "bind", flags: MountFlags.bind | MountFlags.recursive)
        }
        root = try step("open the rootfs \(rootfs)") {
            try sys("open", rootfs) { bh_openat(AT_FDCWD, rootfs, BH_O_PATH | O_DIRECTORY | O_CLOEXEC, 0) }
        }
        for (i, m) in (spec.mounts ?? []).enumerated() {
            try step("mount \(m.destination) (mounts[\(i)], type \(m.type ?? "bind"))") { try mountOne(m, index: i) }
        }
        if config.hasCreateHooks {
            try sock.send("hooks")
            guard let reply = try sock.receiveText() else { throw InitError("hooks", "the runtime went away") }
            if reply != "ok" { throw InitError("hooks", reply) }
        }
        let devBound = (spec.mounts ?? []).contains { $0.destination == "/dev" && MountOptions($0.options ?? []).bind }
        if !devBound {
            try step("create the default devices") { try createDefaultDevices() }
        }
        for (i, device) in (spec.linux?.devices ?? []).enumerated() {
            try step("create device \(device.path) (linux.devices[\(i)])") { try createDevice(device) }
        }
        try step("create the /dev symlinks") { try createDevSymlinks() }
        if let cwd = config.spec.process?.cwd, cwd != "/" {
            // As runc: a missing working directory is created (best effort: the rootfs may be read-only).
            try? mkdirAll(cwd)
        }
        try step(config.noPivot ? "move the rootfs to / (--no-pivot)" : "pivot_root to \(rootfs)") {
            if config.noPivot { try moveRoot() } else { try pivotRoot() }
        }
    }

    /// After the console: root read-only, sysctls, read-only and masked paths.
    func finish() throws {
        if spec.root?.readonly == true {
            try step("make the root read-only") {
                let flags = MountFlags.bind | MountFlags.remount | MountFlags.readOnly
                do { try Mount.mount(source: nil, target: "/", type: nil, flags: flags) } catch let e as SystemError where e.errno == EPERM {
                    try Mount.mount(source: nil, target: "/", type: nil, flags: flags | lockedFlags("/"))
                }
            }
        }
        for (key, value) in (spec.linux?.sysctl ?? [:]).sorted(by: { $0.key < $1.key }) {
            try step("set sysctl \(key)=\(value)") {
                let path = "/proc/sys/" + key.replacingDots()
                let fd = try FileDescriptor.open(path, O_WRONLY | O_TRUNC)
                try fd.writeAll(value, path: path)
            }
        }
        for path in spec.linux?.readonlyPaths ?? [] {
            try step("make \(path) read-only (linux.readonlyPaths)") { try readonlyPath(path) }
        }
        for path in spec.linux?.maskedPaths ?? [] {
            try step("mask \(path) (linux.maskedPaths)") { try maskPath(path) }
        }
    }

    // MARK: mounts

    func mountOne(_ m: Spec.Mount, index: Int) throws {
        var options = MountOptions(m.options ?? [])
        var type = m.type ?? ""
        if type == "bind" || type == "rbind" || type == "none" && options.bind { options.bind = true; if type == "rbind" { options.recursive = true } }
        if type.isEmpty && !options.bind {
            throw InitError("mount \(m.destination)", "the mount has neither a type nor a bind option")
        }
        if type == "cgroup" || type == "cgroup2" { return try mountCgroup(m, options) }
        var source = m.source ?? type
        if options.bind {
            type = "bind"
            if !source.hasPrefix("/") { source = config.bundle + "/" + source }
            var st = stat()
            try sys("stat", source, hint: "the bind mount's source must exist on the host") { stat(source, &st) }
            if st.st_mode & S_IFMT == S_IFDIR {
                try mkdirAll(m.destination)
            } else {
                try createFile(m.destination)
            }
        } else {
            try mkdirAll(m.destination)
        }
        let target = try openInRoot(m.destination)
        defer { close(target) }
        let targetPath = "/proc/self/fd/\(target)"
        // Joined by hand: `joined(separator:)` looks up a conformance at run time on its first use (in every start).
        var data: String?
        for option in options.data { data = data.map { $0 + "," + option } ?? option }
        if let tree = config.idmappedMounts?.first(where: { $0.index == index })?.fd {
            // Made by the runtime on the host (an idmapped clone of the source): attach it here.
            try Mount.attach(FileDescriptor(adopting: tree), onto: target, path: m.destination)
            let remount = options.flags & ~(MountFlags.remount)
            if remount != 0 {
                try remountBind(m.destination, flags: remount, source: source)
            }
        } else if options.bind {
            try Mount.mount(source: source, target: targetPath, type: nil,
                            flags: MountFlags.bind | (options.recursive ? MountFlags.recursive : 0))
            let remount = options.flags & ~(MountFlags.remount)
            if remount != 0 {
                try remountBind(m.destination, flags: remount, source: source)
            }
        } else {
            do {
                try Mount.mount(source: source, target: targetPath, type: type, flags: options.flags, data: data)
            } catch let e as SystemError where e.errno == EPERM && (type == "sysfs" || type == "mqueue") {
                // In a user namespace without its own network (sysfs) or ipc (mqueue) namespace the kernel
                // refuses a fresh mount: bind the host's instead, as runc does.
                let host = type == "sysfs" ? "/sys" : "/dev/mqueue"
                try Mount.mount(source: host, target: targetPath, type: nil, flags: MountFlags.bind | MountFlags.recursive)
                if options.flags & MountFlags.readOnly != 0 {
                    try remountBind(m.destination, flags: options.flags, source: host)
                }
            }
        }
        for change in options.propagation {
            let t = try openInRoot(m.destination)
            defer { close(t) }
            try Mount.mount(source: nil, target: "/proc/self/fd/\(t)", type: nil, flags: change)
        }
    }

    /// Remounts a bind mount with `flags` (read-only etc.). A bind mount ignores flags on its first mount(2);
    /// the kernel only applies them on a remount. Flags locked by a user namespace are carried over.
    func remountBind(_ destination: String, flags: UInt, source: String) throws {
        let t = try openInRoot(destination)
        defer { close(t) }
        let target = "/proc/self/fd/\(t)"
        do {
            try Mount.mount(source: nil, target: target, type: nil, flags: MountFlags.bind | MountFlags.remount | flags)
        } catch let e as SystemError where e.errno == EPERM {
            try Mount.mount(source: nil, target: target, type: nil, flags: MountFlags.bind | MountFlags.remount | flags | lockedFlags(source))
        }
    }

    /// The flags of the mount holding `path` that a remount inside a user namespace must keep (the kernel
    /// locks nosuid, nodev, noexec and ro of mounts that came from a more privileged namespace). Used after a
    /// remount without them failed with EPERM.
    func lockedFlags(_ path: String) -> UInt {
        var vfs = statvfs()
        guard statvfs(path, &vfs) == 0 else { return 0 }
        var locked: UInt = 0
        let f = UInt(vfs.f_flag)
        if f & UInt(BH_ST_NOSUID) != 0 { locked |= MountFlags.noSuid }
        if f & UInt(BH_ST_NODEV) != 0 { locked |= MountFlags.noDev }
        if f & UInt(BH_ST_NOEXEC) != 0 { locked |= MountFlags.noExec }
        if f & UInt(BH_ST_RDONLY) != 0 { locked |= MountFlags.readOnly }
        return locked
    }

    /// `cgroup` mounts: on a v2-only host the container's cgroup (or a fresh cgroup2 in a cgroup namespace);
    /// on v1/hybrid a tmpfs with one bind mount per hierarchy of the container's cgroup directories.
    func mountCgroup(_ m: Spec.Mount, _ options: MountOptions) throws {
        try mkdirAll(m.destination)
        let readOnly = options.flags & MountFlags.readOnly != 0
        let flags = options.flags & ~MountFlags.readOnly
        let ownCgroupNS = (spec.linux?.namespaces ?? []).contains { $0.type == .cgroup }
        if config.cgroupUnified {
            let t = try openInRoot(m.destination)
            defer { close(t) }
            if ownCgroupNS {
                try Mount.mount(source: "cgroup2", target: "/proc/self/fd/\(t)", type: "cgroup2", flags: options.flags)
            } else if let dir = config.cgroupDirectories.first {
                try Mount.mount(source: dir.hostPath, target: "/proc/self/fd/\(t)", type: nil, flags: MountFlags.bind)
                if readOnly { try remountBind(m.destination, flags: options.flags, source: dir.hostPath) }
            }
            return
        }
        do {
            let t = try openInRoot(m.destination)
            defer { close(t) }
            try Mount.mount(source: "tmpfs", target: "/proc/self/fd/\(t)", type: "tmpfs", flags: flags, data: "mode=755")
        }
        // As runc on v1/hybrid hosts: one bind per v1 hierarchy; the cgroup2 hierarchy of a hybrid host (it has
        // no controllers) is not shown, and the tmpfs above them stays writable.
        for dir in config.cgroupDirectories where dir.name != "unified" {
            let dest = m.destination + "/" + dir.name
            try mkdirAll(dest)
            let t = try openInRoot(dest)
            defer { close(t) }
            try Mount.mount(source: dir.hostPath, target: "/proc/self/fd/\(t)", type: nil, flags: MountFlags.bind)
            try remountBind(dest, flags: flags | (readOnly ? MountFlags.readOnly : 0), source: dir.hostPath)
        }
    }

    // MARK: paths inside the rootfs

    /// An BH_O_PATH fd of `path` resolved inside the rootfs.
    func openInRoot(_ path: String, flags: Int32 = BH_O_PATH) throws -> Int32 {
        try sys("openat2", path) {
            bh_openat2(root, path, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), 0, BH_RESOLVE_IN_ROOT)
        }
    }

    func split(_ path: String) -> (parent: String, name: String) {
        // The parent is built by hand: `joined(separator:)` on the parts first looks up an associated type at run
        // time (a scan of the static binary's conformance records, in every container start).
        let parts = path.split(separator: "/")
        var parent = ""
        for part in parts.dropLast() { parent += "/"; parent += part }
        return (parent.isEmpty ? "/" : parent, parts.last.map(String.init) ?? "")
    }

    /// mkdir -p inside the rootfs.
    func mkdirAll(_ path: String, mode: mode_t = 0o755) throws {
        var prefix = "/"
        for component in path.split(separator: "/") {
            let dir = try openInRoot(prefix, flags: BH_O_PATH | O_DIRECTORY)
            let r = mkdirat(dir, String(component), mode)
            let code = errno
            close(dir)
            if r != 0 && code != EEXIST { throw SystemError(operation: "mkdirat", path: prefix + component, errno: code) }
            if !prefix.hasSuffix("/") { prefix += "/" }
            prefix += component   // not `"/" + component`: String + Substring is a generic `+` with run-time type lookups
        }
    }

    /// Creates an empty file (a bind-mount target) inside the rootfs if nothing is there.
    func createFile(_ path: String) throws {
        let (parent, name) = split(path)
        try mkdirAll(parent)
        let dir = try openInRoot(parent, flags: BH_O_PATH | O_DIRECTORY)
        defer { close(dir) }
        let fd = bh_openat(dir, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        if fd >= 0 { close(fd); return }
        if errno == EEXIST || errno == EISDIR || errno == ETXTBSY || errno == EACCES && (try? openInRoot(path)).map({ close($0); return true }) == true { return }
        throw SystemError(operation: "create", path: path, errno: errno)
    }

    // MARK: devices

    static let defaultDevices: [(String, UInt32, UInt32)] = [
        ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
    ]

    func createDefaultDevices() throws {
        try mkdirAll("/dev")
        for (name, major, minor) in Self.defaultDevices {
            try makeDevice("/dev/" + name, type: S_IFCHR, major: major, minor: minor, mode: 0o666, uid: 0, gid: 0)
        }
    }

    func createDevice(_ device: Spec.Device) throws {
        let type: mode_t
        switch device.type {
        case "c", "u": type = S_IFCHR
        case "b": type = S_IFBLK
        case "p": type = S_IFIFO
        default: throw InitError("device \(device.path)", "type \"\(device.type)\" is not one of c, u, b, p")
        }
        try makeDevice(device.path, type: type, major: UInt32(device.major ?? 0), minor: UInt32(device.minor ?? 0),
                       mode: mode_t(device.fileMode ?? 0o666) & 0o7777, uid: device.uid ?? 0, gid: device.gid ?? 0)
    }

    func makeDevice(_ path: String, type: mode_t, major: UInt32, minor: UInt32, mode: mode_t, uid: UInt32, gid: UInt32) throws {
        let (parent, name) = split(path)
        try mkdirAll(parent)
        let dir = try openInRoot(parent, flags: BH_O_PATH | O_DIRECTORY)
        defer { close(dir) }
        let isDevice = type == S_IFCHR || type == S_IFBLK
        if !(isDevice && inUserNamespace) {
            if mknodat(dir, name, type | mode, dev_t(bh_makedev(major, minor))) == 0 {
                try sys("fchownat", path) { fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW) }
                try sys("fchmodat", path) { fchmodat(dir, name, mode, 0) }
                return
            }
            let code = errno
            if code == EEXIST { return }
            guard code == EPERM && isDevice else { throw SystemError(operation: "mknodat", path: path, errno: code) }
        }
        // No mknod of devices in a user namespace: bind the host's device node onto an empty file instead.
        // The host node must be the device the spec names.
        var host = stat()
        try sys("stat", path, hint: "the device is bind-mounted from the host in a user namespace, so the host must have it") { stat(path, &host) }
        if host.st_mode & S_IFMT != type || bh_major(UInt64(host.st_rdev)) != major || bh_minor(UInt64(host.st_rdev)) != minor {
            throw InitError("device \(path)", "in a user namespace devices are bind-mounted from the host, and the host's \(path) is not device \(major):\(minor) of that type")
        }
        let f = bh_openat(dir, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if f >= 0 { close(f) }
        let t = try openInRoot(path)
        defer { close(t) }
        try Mount.mount(source: path, target: "/proc/self/fd/\(t)", type: nil, flags: MountFlags.bind)
    }

    func createDevSymlinks() throws {
        let dev = try openInRoot("/dev", flags: BH_O_PATH | O_DIRECTORY)
        defer { close(dev) }
        var links = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")]
        if access("/proc/kcore", F_OK) == 0 { links.append(("core", "/proc/kcore")) }
        for (name, target) in links {
            if symlinkat(target, dev, name) != 0 && errno != EEXIST {
                throw SystemError(operation: "symlinkat", path: "/dev/" + name, errno: errno)
            }
        }
    }

    // MARK: switching root

    func pivotRoot() throws {
        let oldRoot = try sys("open", "/") { bh_openat(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) }
        defer { close(oldRoot) }
        let newRoot = try sys("open", rootfs) { bh_openat(AT_FDCWD, rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) }
        defer { close(newRoot) }
        try sys("fchdir", rootfs) { fchdir(newRoot) }
        // pivot_root(".", "."): the old root ends up stacked on top of the new one, then is detached.
        try sys("pivot_root", rootfs) { bh_pivot_root(".", ".") }
        try sys("fchdir", "old root") { fchdir(oldRoot) }
        try Mount.mount(source: nil, target: ".", type: nil, flags: MountFlags.slave | MountFlags.recursive)
        try Mount.unmount(".", flags: UnmountFlags.detach)
        try sys("chdir", "/") { chdir("/") }
    }

    func moveRoot() throws {
        try sys("chdir", rootfs) { chdir(rootfs) }
        try Mount.mount(source: rootfs, target: "/", type: nil, flags: MountFlags.move)
        try sys("chroot", ".") { chroot(".") }
        try sys("chdir", "/") { chdir("/") }
    }

    // MARK: after the switch

    func readonlyPath(_ path: String) throws {
        do {
            try Mount.mount(source: path, target: path, type: nil, flags: MountFlags.bind | MountFlags.recursive)
        } catch let e as SystemError where e.errno == ENOENT { return }
        try Mount.mount(source: nil, target: path, type: nil,
                        flags: MountFlags.bind | MountFlags.remount | MountFlags.readOnly | MountFlags.recursive)
    }

    func maskPath(_ path: String) throws {
        var st = Glibc.stat()
        if fstatat(AT_FDCWD, path, &st, 0) != 0 {
            if errno == ENOENT { return }
            throw SystemError(operation: "stat", path: path, errno: errno)
        }
        if st.st_mode & S_IFMT == S_IFDIR {
            try Mount.mount(source: "tmpfs", target: path, type: "tmpfs", flags: MountFlags.readOnly)
        } else {
            try Mount.mount(source: "/dev/null", target: path, type: nil, flags: MountFlags.bind)
        }
    }
}

extension String {
    func replacingDots() -> String { String(map { $0 == "." ? "/" : $0 }) }
}
