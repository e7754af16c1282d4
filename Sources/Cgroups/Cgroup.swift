import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// What the freezer says about a cgroup.
public enum FreezerState: String, Sendable { case thawed, frozen, freezing }

/// Applies `linux.resources` to a cgroup: ``CgroupResourceApplier`` (v1 and v2 writers, picked by the layout).
public protocol ResourceApplier: Sendable {
    /// Called after the cgroup's directories exist and before any process joins it.
    func apply(_ resources: ResourceRequest, to cgroup: Cgroup) throws
}

/// The resources section as the applier receives it: raw JSON text of `linux.resources`, so this target does
/// not depend on the spec types.
public struct ResourceRequest: Sendable {
    public var json: [UInt8]
    public init(json: [UInt8]) { self.json = json }
}

/// Applies nothing (for tests of the create path without limits).
public struct NoResourceLimits: ResourceApplier {
    public init() {}
    public func apply(_ resources: ResourceRequest, to cgroup: Cgroup) throws {}
}

/// One container's cgroup, on whatever layout the host has: a directory in each v1 hierarchy and/or in the
/// cgroup2 hierarchy, all at the same relative `path`.
public struct Cgroup: Sendable, Equatable {
    public let layout: CgroupLayout
    /// The cgroup path relative to every hierarchy's root, e.g. `/bulkhead/ID`.
    public let path: String
    /// Directory prefix added before every mount point (a fake tree in tests; "" on a real host).
    public let fsRoot: String

    public init(layout: CgroupLayout, path: String, fsRoot: String = "") {
        self.layout = layout; self.path = path; self.fsRoot = fsRoot
    }

    /// Every directory that makes up this cgroup, with the controllers it carries ("" for cgroup2).
    public var directories: [(controllers: [String], directory: String)] {
        var out: [(controllers: [String], directory: String)] = []
        for h in layout.v1 { out.append((h.controllers, fsRoot + h.mountPoint + path)) }
        if let unified = layout.unified { out.append(([], fsRoot + unified + path)) }
        return out
    }

    /// The directory of the hierarchy carrying `controller` (v1), or the cgroup2 directory.
    public func directory(for controller: String) -> String? {
        if layout.kind == .unified { return layout.unified.map { fsRoot + $0 + path } }
        return layout.hierarchy(for: controller).map { fsRoot + $0.mountPoint + path }
    }

    var unifiedDirectory: String? { layout.unified.map { fsRoot + $0 + path } }

    /// Creates the cgroup's directories (and missing parents) in every hierarchy.
    public func create() throws {
        for (controllers, dir) in directories {
            try makeDirectories(dir, cpuset: controllers.contains("cpuset"))
        }
        if layout.kind == .unified, let dir = unifiedDirectory {
            try enableControllers(below: dir)
        }
    }

    /// Creates `dir` and its missing parents. In a v1 cpuset hierarchy, each new level inherits cpus and mems
    /// from its parent (an empty cpuset cannot hold tasks).
    func makeDirectories(_ dir: String, cpuset: Bool) throws {
        var current = ""
        for component in dir.split(separator: "/") {
            let parent = current.isEmpty ? "/" : current
            current += "/"
            current += component   // two appends: String + Substring is a generic `+` with run-time type lookups
            if Glibc.mkdir(current, 0o755) == 0 {
                if cpuset {
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        // Only where the kernel made the file and left it empty.
                        guard let mine = try? Cgroup.read(current + "/" + file) else { continue }
                        if mine.trimmed.isEmpty, let theirs = try? Cgroup.read(parent + "/" + file) {
                            try Cgroup.write(current + "/" + file, theirs.trimmed)
                        }
                    }
                }
            } else if errno != EEXIST {
                throw SystemError(operation: "mkdir cgroup", path: current, errno: errno)
            }
        }
    }

    /// On a unified host, enables every controller the root offers down to the container's parent, so the
    /// container's cgroup gets them (the resource layer needs them).
    func enableControllers(below dir: String) throws {
        guard let mount = layout.unified.map({ fsRoot + $0 }) else { return }
        var current = mount
        let components = path.split(separator: "/")
        for component in components.dropLast() {
            Self.enableAvailableControllers(in: current)
            current += "/"
            current += component
        }
        Self.enableAvailableControllers(in: current)
    }

    /// Writes "+c1 +c2 …" for every controller cgroup.controllers lists to cgroup.subtree_control (best effort).
    /// The line is built by hand: `joined(separator:)` on mapped parts looks up conformances at run time.
    static func enableAvailableControllers(in dir: String) {
        guard let available = try? Cgroup.read(dir + "/cgroup.controllers") else { return }
        var enable = ""
        for name in available.split(separator: " ") {
            let trimmed = name.trimmed
            if trimmed.isEmpty { continue }
            if !enable.isEmpty { enable += " " }
            enable += "+"
            enable += trimmed
        }
        if !enable.isEmpty { try? Cgroup.write(dir + "/cgroup.subtree_control", enable) }
    }

    /// Moves `pid` (and, on v2, nothing else) into this cgroup in every hierarchy.
    public func join(pid: Int32) throws {
        for (_, dir) in directories {
            try Cgroup.write(dir + "/cgroup.procs", String(pid))
        }
    }

    /// The processes in the cgroup (from the first hierarchy that lists them).
    public func pids() throws -> [Int32] {
        let dir = directory(for: "pids") ?? directory(for: "freezer") ?? directories.first?.directory
        guard let dir else { return [] }
        let text = try Cgroup.read(dir + "/cgroup.procs")
        return text.split(separator: "\n").compactMap { Int32($0.trimmed) }
    }

    /// Whether the cgroup still exists in its first hierarchy.
    public var exists: Bool {
        guard let dir = directories.first?.directory else { return false }
        return access(dir, F_OK) == 0
    }

    // MARK: freezer

    public func freeze() throws { try setFrozen(true) }
    public func thaw() throws { try setFrozen(false) }

    func setFrozen(_ frozen: Bool) throws {
        if layout.kind != .unified, let dir = directory(for: "freezer") {
            try Cgroup.write(dir + "/freezer.state", frozen ? "FROZEN" : "THAWED")
            // Freezing is asynchronous on v1: wait until the state settles.
            for _ in 0..<1000 {
                let state = (try? Cgroup.read(dir + "/freezer.state"))?.trimmed ?? ""
                if state == (frozen ? "FROZEN" : "THAWED") { return }
                if frozen { try? Cgroup.write(dir + "/freezer.state", "FROZEN") }
                usleep(1000)
            }
            throw CgroupError("the freezer of cgroup \(path) did not reach \(frozen ? "FROZEN" : "THAWED") within 1 s")
        } else if let dir = unifiedDirectory {
            try Cgroup.write(dir + "/cgroup.freeze", frozen ? "1" : "0")
            for _ in 0..<1000 {
                let events = (try? Cgroup.read(dir + "/cgroup.events")) ?? ""
                if events.contains(frozen ? "frozen 1" : "frozen 0") { return }
                usleep(1000)
            }
            throw CgroupError("cgroup \(path) did not become \(frozen ? "frozen" : "thawed") within 1 s")
        } else {
            throw CgroupError("this host has no freezer (neither a v1 freezer hierarchy nor cgroup v2)")
        }
    }

    public func freezerState() -> FreezerState {
        if layout.kind != .unified, let dir = directory(for: "freezer") {
            switch (try? Cgroup.read(dir + "/freezer.state"))?.trimmed {
            case "FROZEN": return .frozen
            case "FREEZING": return .freezing
            default: return .thawed
            }
        }
        if let dir = unifiedDirectory, let value = try? Cgroup.read(dir + "/cgroup.freeze") {
            return value.trimmed == "1" ? .frozen : .thawed
        }
        return .thawed
    }

    // MARK: delete

    /// Removes the cgroup's directories (the leaf only; shared parents stay). The processes must be gone;
    /// waits up to `timeoutMs` for the kernel to let go of exiting tasks.
    public func delete(timeoutMs: Int = 2000) throws {
        for (_, dir) in directories.reversed() {
            var waited = 0
            while Glibc.rmdir(dir) != 0 {
                let code = errno
                if code == ENOENT { break }
                if code == EBUSY && waited < timeoutMs {
                    // A frozen cgroup cannot empty itself.
                    if waited == 0 { try? thaw() }
                    usleep(5000); waited += 5; continue
                }
                throw SystemError(operation: "rmdir cgroup", path: dir, errno: code,
                                  hint: code == EBUSY ? "processes are still in the cgroup; kill them first" : nil)
            }
        }
    }

    // MARK: file helpers

    public static func read(_ path: String) throws -> String {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        return String(decoding: try fd.readAll(limit: 1 << 20, path: path), as: UTF8.self)
    }

    public static func write(_ path: String, _ value: String) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY)
        do { try fd.writeAll(value, path: path) } catch let e as SystemError {
            throw SystemError(operation: "write \"\(value)\" to", path: path, errno: e.errno, hint: e.hint)
        }
    }
}

extension Substring {
    var trimmed: String { String(self).trimmed }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" { s.removeLast() }
        return String(s)
    }
}

/// The calling process's own cgroup path in the hierarchy carrying `controller` ("" for cgroup2).
public func ownCgroupPath(controller: String = "") -> String {
    guard let text = try? Cgroup.read("/proc/self/cgroup") else { return "/" }
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { continue }
        if controller.isEmpty ? parts[0] == "0" : parts[1].split(separator: ",").contains(Substring(controller)) {
            return String(parts[2])
        }
    }
    return "/"
}
