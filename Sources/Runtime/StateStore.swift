import FoundationEssentials
import JSONText
import LinuxOS
import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

/// What the runtime remembers about one container between verbs (`<root>/<id>/state.json`).
public struct ContainerRecord: Codable, Sendable, Equatable {
    public var id: String
    public var backend: String
    public var bundle: String
    public var rootfs: String
    /// Host pid of the container's init (0 until known).
    public var pid: Int32
    /// Start time of that pid (field 22 of /proc/PID/stat), to tell it from a recycled pid.
    public var pidStartTime: UInt64
    public var created: String
    public var owner: String
    public var annotations: [String: String]?
    /// The cgroup path (relative to each hierarchy root), once created.
    public var cgroupPath: String?
    /// The namespace types the container created itself (for `exec` and for `delete`).
    public var hooks: Spec.Hooks?
    public var status: ContainerStatus
    /// Whether the container has a pid namespace of its own (then killing init kills everything).
    public var ownPidNamespace: Bool
    /// Free-form values a backend keeps (e.g. the image-form's rootfs owner).
    public var extra: [String: String]?

    public init(id: String, backend: String, bundle: String, rootfs: String, created: String,
                annotations: [String: String]? = nil) {
        self.id = id; self.backend = backend; self.bundle = bundle; self.rootfs = rootfs; self.pid = 0
        self.pidStartTime = 0; self.created = created; self.owner = "root"; self.annotations = annotations
        self.status = .creating; self.ownPidNamespace = true
    }

    /// The record as state.json holds it: what `JSONEncoder` would write (``load()`` decodes it with `JSONDecoder`),
    /// written by hand (JSONObjectWriter says why). Hooks, rare and nested, still go through JSONEncoder.
    public func json() throws -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("id", id)
        w.field("backend", backend)
        w.field("bundle", bundle)
        w.field("rootfs", rootfs)
        w.field("pid", Int64(pid))
        w.field("pidStartTime", pidStartTime)
        w.field("created", created)
        w.field("owner", owner)
        w.field("annotations", annotations)
        w.field("cgroupPath", cgroupPath)
        if let hooks {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            w.field("hooks", json: Array(try encoder.encode(hooks)))
        }
        w.field("status", status.rawValue)
        w.field("ownPidNamespace", ownPidNamespace)
        w.field("extra", extra)
        return w.finish()
    }

    /// runc's `state` output for this record with a live status.
    public func stateJSON(status: ContainerStatus) -> ContainerStateJSON {
        ContainerStateJSON(id: id, pid: status == .stopped ? 0 : pid, status: status == .creating ? "creating" : status.rawValue,
                           bundle: bundle, rootfs: rootfs, created: created, owner: owner, annotations: annotations)
    }
}

/// The state directory under `--root`: one directory per container, each with `state.json`, the container's
/// lock, and backend files (the exec fifo).
public struct StateStore: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    /// Container IDs: letters, digits and `_ + - .`, not `.`/`..`, at most 1024 bytes (runc's rule).
    public static func validate(id: String) throws {
        let ok = !id.isEmpty && id.utf8.count <= 1024 && id != "." && id != ".." && id.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "_+-.".unicodeScalars.contains($0)
        }
        if !ok {
            throw RuntimeError("invalid container ID \"\(id)\": use letters, digits and _ + - . only")
        }
    }

    func ensureRoot() throws {
        try HostPath.makeDirectories(root, mode: 0o711)
    }

    /// Creates the directory of a new container and returns it locked. Fails if the ID is taken.
    public func create(id: String) throws -> ContainerDirectory {
        try StateStore.validate(id: id)
        try ensureRoot()
        let path = root + "/" + id
        if Glibc.mkdir(path, 0o711) != 0 {
            if errno == EEXIST { throw RuntimeError("container with id \(id) already exists") }
            throw SystemError(operation: "mkdir", path: path, errno: errno)
        }
        return try ContainerDirectory(id: id, path: path)
    }

    /// Opens and locks an existing container's directory; "container ID does not exist" otherwise.
    public func open(id: String) throws -> ContainerDirectory {
        try StateStore.validate(id: id)
        let path = root + "/" + id
        let dir: ContainerDirectory
        do { dir = try ContainerDirectory(id: id, path: path) } catch let e as SystemError where e.errno == ENOENT || e.errno == ENOTDIR {
            throw RuntimeError.doesNotExist(id)
        }
        // Another verb may have deleted it while we waited for the lock.
        if !dir.handle.exists("state.json") { throw RuntimeError.doesNotExist(id) }
        return dir
    }

    /// IDs of every container in the store.
    public func ids() throws -> [String] {
        guard access(root, F_OK) == 0 else { return [] }
        let dir = try FileDescriptor.open(root, O_RDONLY | O_DIRECTORY)
        var out: [String] = []
        for name in try dir.entries() where dir.exists(name + "/state.json") { out.append(name) }
        return out.sorted()
    }
}

/// One container's state directory, locked (flock on the directory itself) for as long as the value lives.
/// Concurrent verbs on one container queue behind the lock.
public final class ContainerDirectory: @unchecked Sendable {
    public let id: String
    public let path: String
    let handle: FileDescriptor

    init(id: String, path: String) throws {
        let fd = try FileDescriptor.open(path, O_RDONLY | O_DIRECTORY)
        try sys("flock", path) { flock(fd.raw, LOCK_EX) }
        self.handle = fd
        self.id = id
        self.path = path
    }

    public var fd: Int32 { handle.raw }

    public func load() throws -> ContainerRecord {
        let file: FileDescriptor
        do { file = try handle.openAt("state.json", O_RDONLY) } catch let e as SystemError where e.errno == ENOENT {
            throw RuntimeError.doesNotExist(id)
        }
        let bytes = try file.readAll(path: path + "/state.json")
        do { return try JSONDecoder().decode(ContainerRecord.self, from: Data(bytes)) } catch {
            throw RuntimeError("the state of container \(id) (\(path)/state.json) is unreadable: \(error); use delete --force to remove it")
        }
    }

    /// Writes state.json atomically: a temporary file, then swapped in with no fsync (the state does not outlive the
    /// host's boot, as runc's in /run does not).
    ///
    /// The swap is an exchange of the two names (`RENAME_EXCHANGE`), then the old file goes, rather than a rename over
    /// the old file: ext4 (which holds /run on some hosts, this one among them) writes a file's data to disk when a
    /// rename replaces another file (its `auto_da_alloc` guard), which made each of a `run`'s four replacing saves
    /// cost block allocation and I/O submission. A reader sees the old or the new file, never a torn one, either way.
    /// The first save, and a filesystem without exchange, use a plain rename.
    public func save(_ record: ContainerRecord) throws {
        let bytes = try record.json()
        let tmp = try handle.openAt("state.json.tmp", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try tmp.writeAll(bytes, path: path + "/state.json.tmp")
        do {
            try handle.rename("state.json.tmp", to: "state.json", flags: Self.renameExchange)
        } catch let e as SystemError where e.errno == ENOENT || e.errno == EINVAL {
            try handle.rename("state.json.tmp", to: "state.json")
            return
        }
        try handle.unlink("state.json.tmp")
    }

    /// renameat2's RENAME_EXCHANGE (<linux/fs.h>; not exported by Glibc's module).
    static let renameExchange: UInt32 = 1 << 1

    /// Removes the directory and everything in it (the lock stays held until this value goes away).
    public func remove() throws {
        for name in try handle.entries() { try handle.removeTree(name) }
        try sys("rmdir", path) { Glibc.rmdir(path) }
    }
}
