import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// How the host mounts its cgroup hierarchies, detected at run time from /proc/self/mountinfo.
///
/// - `unified`: cgroup v2 only (one hierarchy, usually at /sys/fs/cgroup).
/// - `hybrid`: controllers on v1 hierarchies, plus a cgroup2 hierarchy without controllers
///   (usually /sys/fs/cgroup/unified).
/// - `legacy`: v1 hierarchies only.
public struct CgroupLayout: Sendable, Equatable {
    public enum Kind: String, Sendable { case unified, hybrid, legacy }

    /// A v1 hierarchy: where it is mounted, which controllers it carries (`name=systemd` included), and the
    /// calling process's cgroup in it.
    public struct Hierarchy: Sendable, Equatable {
        public var mountPoint: String
        public var controllers: [String]
        public var root: String
        public init(mountPoint: String, controllers: [String], root: String = "/") {
            self.mountPoint = mountPoint; self.controllers = controllers; self.root = root
        }
    }

    public var kind: Kind
    /// v1 hierarchies (empty on a unified host).
    public var v1: [Hierarchy]
    /// The cgroup2 mount point, if any.
    public var unified: String?

    public init(kind: Kind, v1: [Hierarchy], unified: String?) {
        self.kind = kind; self.v1 = v1; self.unified = unified
    }

    public var description: String {
        switch kind {
        case .unified: "v2 (unified at \(unified ?? "?"))"
        case .hybrid: "hybrid (v1 controllers, cgroup2 at \(unified ?? "?"))"
        case .legacy: "v1"
        }
    }

    /// The v1 hierarchy that carries `controller`.
    public func hierarchy(for controller: String) -> Hierarchy? {
        v1.first { $0.controllers.contains(controller) }
    }

    /// Detects the layout of this host.
    public static func detect() throws -> CgroupLayout {
        let fd = try FileDescriptor.open("/proc/self/mountinfo", O_RDONLY)
        let text = String(decoding: try fd.readAll(path: "/proc/self/mountinfo"), as: UTF8.self)
        return parse(mountinfo: text)
    }

    /// Where the host's cgroup hierarchies are mounted.
    public static let base = "/sys/fs/cgroup"

    /// The layout described by a mountinfo text (for tests against fake trees).
    public static func parse(mountinfo text: String) -> CgroupLayout {
        var v1: [Hierarchy] = []
        var unified: String?
        for line in text.split(separator: "\n") {
            // The optional fields end at a lone "-" (fields are space-separated, spaces in paths are escaped).
            // Splitting at single spaces is much cheaper than splitting at the string " - ".
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-") else { continue }
            let pre = fields[..<dash], post = fields[(dash + 1)...]
            guard pre.count >= 5, post.count >= 3 else { continue }
            let mountPoint = Mount.unescapeMountinfoForTesting(String(pre[pre.startIndex + 4]))
            // Only the hierarchies at /sys/fs/cgroup are the host's (as runc and crun assume): cgroup mounts elsewhere
            // (a chroot's /sys, another tool's private mount seen through propagation) are someone else's.
            guard mountPoint == Self.base || mountPoint.hasPrefix(Self.base + "/") else { continue }
            let root = String(pre[pre.startIndex + 3])
            switch post[post.startIndex] {
            case "cgroup2":
                if unified == nil { unified = mountPoint }
            case "cgroup":
                let controllers = post[post.startIndex + 2].split(separator: ",").map(String.init).filter {
                    !["rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "xattr",
                      "cpuset_v2_mode", "noprefix", "favordynmods"].contains($0) && !$0.hasPrefix("release_agent=")
                }
                if !controllers.isEmpty, !v1.contains(where: { $0.controllers == controllers }) {
                    v1.append(Hierarchy(mountPoint: mountPoint, controllers: controllers, root: root))
                }
            default: continue
            }
        }
        let kind: Kind = v1.isEmpty ? .unified : (unified != nil ? .hybrid : .legacy)
        return CgroupLayout(kind: kind, v1: v1, unified: unified)
    }
}

/// Turns a spec's `linux.cgroupsPath` into a cgroup path (relative to each hierarchy's root).
public enum CgroupPath {
    /// - an absolute path is used as is;
    /// - `slice:prefix:name` (systemd form) becomes `/<expanded slice>/<prefix>-<name>.scope` (cgroupfs driver);
    /// - a relative path is placed below the calling process's cgroup (`ownCgroup`);
    /// - an empty one becomes `/bulkhead/<id>`.
    public static func resolve(_ spec: String?, containerID: String, systemd: Bool = false,
                               ownCgroup: String = "/") throws -> String {
        let value = spec ?? ""
        if value.isEmpty {
            return systemd ? "/system.slice/bulkhead-\(containerID).scope" : "/bulkhead/\(containerID)"
        }
        let parts = value.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if parts.count == 3 && !value.hasPrefix("/") {
            return try systemdForm(slice: parts[0], prefix: parts[1], name: parts[2])
        }
        if systemd && parts.count != 3 {
            throw CgroupError("linux.cgroupsPath \"\(value)\": with --systemd-cgroup it must have the form slice:prefix:name")
        }
        try checkComponents(value)
        let resolved = value.hasPrefix("/") ? normalise(value) : normalise((ownCgroup.hasSuffix("/") ? ownCgroup : ownCgroup + "/") + value)
        // A container's cgroup is its own: delete and tear-down kill every process left in it, so the root cgroup
        // or the runtime's own cgroup (where the host's other processes live) must never be one.
        if resolved == "/" || resolved == normalise(ownCgroup) {
            throw CgroupError("linux.cgroupsPath \"\(value)\" resolves to \(resolved == "/" ? "the root cgroup" : "the runtime's own cgroup (\(resolved))"), which other processes share; give the container a cgroup of its own, e.g. /bulkhead/\(containerID)")
        }
        return resolved
    }

    /// Whether systemd is this host's init (sd_booted's test). Without it the systemd form of cgroupsPath is
    /// served by the cgroupfs driver at the same path systemd would have used.
    public static func systemdIsRunning() -> Bool { access("/run/systemd/system", F_OK) == 0 }

    static func systemdForm(slice: String, prefix: String, name: String) throws -> String {
        guard !name.isEmpty, !name.contains("/") else {
            throw CgroupError("linux.cgroupsPath: the name part of slice:prefix:name must be a single non-empty word")
        }
        let parent = try expandSlice(slice.isEmpty ? "system.slice" : slice)
        let unit: String
        if name.hasSuffix(".slice") {
            return parent + "/" + name
        } else if prefix.isEmpty {
            unit = name.hasSuffix(".scope") ? name : name + ".scope"
        } else {
            unit = "\(prefix)-\(name).scope"
        }
        return parent + "/" + unit
    }

    /// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`, as systemd nests slices. `-.slice` is the root.
    public static func expandSlice(_ slice: String) throws -> String {
        guard slice.hasSuffix(".slice"), !slice.contains("/") else {
            throw CgroupError("linux.cgroupsPath: \"\(slice)\" is not a systemd slice name (it must end in .slice)")
        }
        if slice == "-.slice" { return "" }
        let base = String(slice.dropLast(".slice".count))
        if base.hasPrefix("-") || base.hasSuffix("-") || base.contains("--") {
            throw CgroupError("linux.cgroupsPath: slice name \"\(slice)\" is malformed")
        }
        var out = ""
        var prefix = ""
        for part in base.split(separator: "-") {
            prefix = prefix.isEmpty ? String(part) : prefix + "-" + part
            out += "/" + prefix + ".slice"
        }
        return out
    }

    static func checkComponents(_ path: String) throws {
        for component in path.split(separator: "/") where component == ".." {
            throw CgroupError("linux.cgroupsPath \"\(path)\" must not contain \"..\"")
        }
    }

    static func normalise(_ path: String) -> String {
        "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
    }
}

public struct CgroupError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
