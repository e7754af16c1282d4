import CAgentShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Settings the host passes on the kernel command line (`bulkhead.*=`), with defaults.
public struct BootConfig: Equatable, Sendable {
    /// The read-only image disk (erofs or ext4).
    public var rootfsDevice = "/dev/vda"
    /// `tmpfs` or a block device (ext4) for the writable layer.
    public var scratch = "tmpfs"
    /// Size of a tmpfs writable layer.
    public var scratchSize = "50%"
    /// Port names (virtio-serial `name=`).
    public var controlPort = "bulkhead.control"
    public var stdioPort = "bulkhead.stdio"
    /// `poweroff` (ACPI) or `reboot` (with reboot=k: the i8042 reset; the host runs QEMU with -no-reboot).
    public var halt = "reboot"

    public init() {}

    /// Parses `/proc/cmdline` text; unknown `bulkhead.` keys are ignored, values are bounded and checked.
    public static func parse(_ cmdline: String) -> BootConfig {
        var config = BootConfig()
        for word in cmdline.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard word.hasPrefix("bulkhead."), let eq = word.firstIndex(of: "=") else { continue }
            let key = String(word[word.index(word.startIndex, offsetBy: 9)..<eq])
            let value = String(word[word.index(after: eq)...])
            guard !value.isEmpty, value.utf8.count <= 128 else { continue }
            switch key {
            case "rootfs" where value.hasPrefix("/dev/") && !value.contains(".."): config.rootfsDevice = value
            case "scratch" where value == "tmpfs" || (value.hasPrefix("/dev/") && !value.contains("..")): config.scratch = value
            case "scratchsize": config.scratchSize = value
            case "control": config.controlPort = value
            case "stdio": config.stdioPort = value
            case "halt" where value == "poweroff" || value == "reboot": config.halt = value
            default: continue
            }
        }
        return config
    }
}

/// Where the agent puts things inside the initramfs.
public enum AgentPaths {
    public static let lower = "/run/bulkhead/lower"
    public static let scratch = "/run/bulkhead/scratch"
    public static let rootfs = "/run/bulkhead/rootfs"
}

/// The agent's log: lines on the kernel console (the host's serial log).
public enum AgentLog {
    public static func info(_ text: String) {
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        let ms = Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
        let line = "[\(ms / 1000).\(String(ms % 1000 + 1000).dropFirst())] bulkhead-agent: \(text)\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }
}

/// PID 1's first job: the kernel filesystems, then the container's root (image disk + writable layer).
public enum Boot {
    static func mkdirs(_ path: String) {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += "/" + part
            _ = Glibc.mkdir(prefix, 0o755)
        }
    }

    /// /proc, /sys, /dev (devtmpfs), /dev/pts, /sys/fs/cgroup (cgroup2), /run. Failures are logged:
    /// the agent still comes up so it can report them to the host.
    public static func mountKernelFilesystems() -> [String] {
        var problems: [String] = []
        let table: [(String, String, String, UInt, String?)] = [
            ("proc", "/proc", "proc", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
            ("sysfs", "/sys", "sysfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
            ("devtmpfs", "/dev", "devtmpfs", UInt(MS_NOSUID), "mode=0755"),
            ("devpts", "/dev/pts", "devpts", UInt(MS_NOSUID | MS_NOEXEC), "mode=0620,ptmxmode=0666"),
            ("cgroup2", "/sys/fs/cgroup", "cgroup2", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil),
            ("tmpfs", "/run", "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0755"),
        ]
        for (source, target, type, flags, data) in table {
            mkdirs(target)
            do { try Mount.mount(source: source, target: target, type: type, flags: flags, data: data) } catch let error as SystemError where error.errno == EBUSY {
                continue  // devtmpfs may already be mounted by the kernel (CONFIG_DEVTMPFS_MOUNT)
            } catch {
                problems.append("\(error)")
            }
        }
        return problems
    }

    /// Mounts the image disk read-only (erofs, else ext4), the writable layer, and overlayfs over both at
    /// ``AgentPaths/rootfs``.
    public static func mountRootfs(_ config: BootConfig) throws {
        for dir in [AgentPaths.lower, AgentPaths.scratch, AgentPaths.rootfs] { mkdirs(dir) }
        try waitForDevice(config.rootfsDevice)
        var lastError: (any Error)?
        var mounted = false
        for type in ["erofs", "ext4"] {
            do {
                try Mount.mount(source: config.rootfsDevice, target: AgentPaths.lower, type: type,
                                flags: UInt(MS_RDONLY | MS_NODEV), data: type == "ext4" ? "noload" : nil)
                mounted = true
                break
            } catch { lastError = error }
        }
        if !mounted {
            throw AgentError("cannot mount the image disk \(config.rootfsDevice) as erofs or ext4 (\(lastError.map { "\($0)" } ?? "?")); check that the host attached the rootfs image as the first virtio disk")
        }
        if config.scratch == "tmpfs" {
            try Mount.mount(source: "tmpfs", target: AgentPaths.scratch, type: "tmpfs", flags: UInt(MS_NODEV), data: "mode=0755,size=\(config.scratchSize)")
        } else {
            try waitForDevice(config.scratch)
            try Mount.mount(source: config.scratch, target: AgentPaths.scratch, type: "ext4", flags: UInt(MS_NODEV), data: nil)
        }
        mkdirs(AgentPaths.scratch + "/upper")
        mkdirs(AgentPaths.scratch + "/work")
        try Mount.mount(source: "overlay", target: AgentPaths.rootfs, type: "overlay", flags: 0,
                        data: "lowerdir=\(AgentPaths.lower),upperdir=\(AgentPaths.scratch)/upper,workdir=\(AgentPaths.scratch)/work")
    }

    static func waitForDevice(_ path: String, timeoutMs: Int = 5000) throws {
        var waited = 0
        while Glibc.access(path, F_OK) != 0 {
            if waited >= timeoutMs { throw AgentError("device \(path) did not appear within \(timeoutMs) ms; check the VM's disk configuration") }
            usleep(10_000); waited += 10
        }
    }

    /// Finds virtio-console ports by their name (`/sys/class/virtio-ports/vportNpM/name`) and opens them.
    public static func openPort(named name: String, timeoutMs: Int = 10_000) throws -> Int32 {
        var waited = 0
        while true {
            if let device = findPort(named: name) {
                try waitForDevice(device)
                return try FileDescriptor.open(device, O_RDWR).take()
            }
            if waited >= timeoutMs {
                throw AgentError("no virtio-console port named \(name) within \(timeoutMs) ms; the host must add a virtserialport with name=\(name)")
            }
            usleep(10_000); waited += 10
        }
    }

    static func findPort(named name: String) -> String? {
        do {
            let sys = try FileDescriptor.open("/sys/class/virtio-ports", O_RDONLY | O_DIRECTORY)
            for entry in try sys.entries().sorted() {
                let fd = try sys.openAt("\(entry)/name", O_RDONLY)
                let portName = String(decoding: try fd.readAll(limit: 4096), as: UTF8.self).trimmingCharacters(in: " \n")
                if portName == name { return "/dev/\(entry)" }
            }
        } catch {}
        return nil
    }

    /// Device nodes and links a container's tmpfs /dev needs.
    static func populateDev(_ dev: borrowing FileDescriptor) {
        let nodes: [(String, UInt32, UInt32, mode_t)] = [
            ("null", 1, 3, 0o666), ("zero", 1, 5, 0o666), ("full", 1, 7, 0o666),
            ("random", 1, 8, 0o666), ("urandom", 1, 9, 0o666), ("tty", 5, 0, 0o666),
        ]
        for (name, major, minor, mode) in nodes {
            try? dev.mknod(name, mode: S_IFCHR | mode, device: dev_t(major << 8 | minor))
            try? dev.chmod(name, mode: mode)
        }
        for (name, target) in [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                               ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
            try? dev.symlink(name, target: target)
        }
    }

    /// Mounts the spec's kernel filesystems inside the container root. Destinations are resolved inside
    /// the root (openat2 RESOLVE_IN_ROOT), so a symlink in the image cannot send a mount elsewhere.
    public static func applyMounts(_ mounts: [GuestMount], root: String) throws -> [String] {
        var skipped: [String] = []
        let rootFD = try FileDescriptor.open(root, O_RDONLY | O_DIRECTORY)
        for m in mounts {
            var type = m.type ?? ""
            guard GuestMount.guestTypes.contains(type) else {
                skipped.append("\(m.destination) (\(type.isEmpty ? "bind" : type))")
                continue
            }
            if type == "cgroup" { type = "cgroup2" }
            let target = try makeDirectories(m.destination, in: rootFD)
            var (flags, data) = m.flagsAndData
            if type == "devpts", !data.contains("newinstance") { data += data.isEmpty ? "newinstance" : ",newinstance" }
            try Mount.mount(source: m.source ?? type, target: "/proc/self/fd/\(target.raw)", type: type, flags: flags, data: data.isEmpty ? nil : data)
            if type == "tmpfs", m.destination == "/dev" {
                let dev = try rootFD.openDirectory("dev")
                populateDev(dev)
            }
        }
        return skipped
    }

    /// Creates `path`'s directories inside `root` (never leaving it) and returns an O_PATH fd to the last one.
    static func makeDirectories(_ path: String, in root: borrowing FileDescriptor) throws -> FileDescriptor {
        let oPath: Int32 = 0o10000000
        var prefix = ""
        for part in path.split(separator: "/") where part != "." && part != ".." {
            let parent = prefix.isEmpty ? "." : prefix
            prefix += (prefix.isEmpty ? "" : "/") + part
            do {
                _ = try root.openAt2(prefix, oPath | O_DIRECTORY, resolve: BH_RESOLVE_IN_ROOT_VALUE)
                continue
            } catch let error as SystemError where error.errno == ENOENT {}
            let parentFD = try root.openAt2(parent, O_RDONLY | O_DIRECTORY, resolve: BH_RESOLVE_IN_ROOT_VALUE)
            try parentFD.mkdirIfMissing(String(part))
        }
        return try root.openAt2(prefix.isEmpty ? "." : prefix, oPath | O_DIRECTORY, resolve: BH_RESOLVE_IN_ROOT_VALUE)
    }
}

public struct AgentError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s.removeFirst() }
        while let l = s.last, chars.contains(l) { s.removeLast() }
        return String(s)
    }
}
