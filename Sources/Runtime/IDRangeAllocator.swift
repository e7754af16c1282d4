import FoundationEssentials
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// A range of host ids, `start ..< start+count`.
public struct IDRange: Codable, Sendable, Hashable, CustomStringConvertible {
    public var start: UInt32
    public var count: UInt32
    public init(start: UInt32, count: UInt32) { self.start = start; self.count = count }
    public var end: UInt64 { UInt64(start) + UInt64(count) }
    public func overlaps(_ other: IDRange) -> Bool { UInt64(start) < other.end && UInt64(other.start) < end }
    public var description: String { "\(start)-\(end - 1)" }
}

/// `/etc/subuid` and `/etc/subgid`: `name-or-uid:start:count` lines (shadow-utils' format).
public enum SubordinateIDs {
    public struct Entry: Sendable, Hashable {
        public var owner: String
        public var range: IDRange
        public init(owner: String, range: IDRange) { self.owner = owner; self.range = range }
    }

    /// Every well-formed line of `text`; comments, blank and malformed lines are skipped.
    public static func parse(_ text: String) -> [Entry] {
        text.split(separator: "\n").compactMap { raw in
            let line = String(raw.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
            guard !line.isEmpty, !line.hasPrefix("#") else { return nil }
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            guard f.count == 3, !f[0].isEmpty, let start = UInt32(f[1]), let count = UInt32(f[2]), count > 0,
                  UInt64(start) + UInt64(count) <= UInt64(UInt32.max) else { return nil }
            return Entry(owner: String(f[0]), range: IDRange(start: start, count: count))
        }
    }

    /// The file's entries, or none when it does not exist.
    public static func read(_ path: String) throws -> [Entry] {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDONLY) } catch let e as SystemError where e.errno == ENOENT { return [] }
        return parse(String(decoding: try fd.readAll(limit: 16 << 20, path: path), as: UTF8.self))
    }
}

/// One container's share of host ids: container ids `0 ..< size` are host uids `uid ..< uid+size` and host gids
/// `gid ..< gid+size`.
public struct IDAllocation: Codable, Sendable, Equatable {
    public var containerID: String
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt32
    /// Where the range came from: `subuid:NAME` (the /etc/subuid and /etc/subgid entries of NAME) or `built-in`.
    public var pool: String
    /// The process that allocated it and that process's start time; an allocation whose container has no
    /// state directory is live only while that process is.
    public var allocator: Int32
    public var allocatorStart: UInt64

    public var uidRange: IDRange { IDRange(start: uid, count: size) }
    public var gidRange: IDRange { IDRange(start: gid, count: size) }
}

/// Hands out disjoint host id ranges to containers that run in their own user namespace (`run --userns auto`)
/// and takes them back on delete. Allocations live as one JSON file per container in `<runtime root>/.userns/`,
/// changed only under an flock of `<runtime root>/.userns/lock`, so concurrent `bulkhead run`s never share a range.
///
/// The pool is the /etc/subuid and /etc/subgid entries of `user` (default `bulkhead`, as podman's
/// `containers` user); without any, a built-in pool of `builtInSlots` ranges of `size` ids from 100000000 up,
/// minus every range /etc/subuid or /etc/subgid gives to anyone.
public struct IDRangeAllocator: Sendable {
    public let directory: String
    public var stateRoot: String
    public var user: String
    public var subuidPath: String
    public var subgidPath: String

    public static let defaultUser = "bulkhead"
    public static let builtInStart: UInt32 = 100_000_000
    public static let builtInSlots: UInt32 = 16384
    public static let defaultSize: UInt32 = 65536

    public init(runtimeRoot: String, user: String = IDRangeAllocator.defaultUser,
                subuidPath: String = "/etc/subuid", subgidPath: String = "/etc/subgid") {
        directory = runtimeRoot + "/.userns"
        stateRoot = runtimeRoot
        self.user = user
        self.subuidPath = subuidPath
        self.subgidPath = subgidPath
    }

    /// The pools for uids and gids and what they are called.
    public func pools(size: UInt32) throws -> (uids: [IDRange], gids: [IDRange], name: String) {
        let subuid = try SubordinateIDs.read(subuidPath), subgid = try SubordinateIDs.read(subgidPath)
        let uidNumber = getpwnam(user).map { String($0.pointee.pw_uid) }
        func mine(_ entries: [SubordinateIDs.Entry]) -> [IDRange] {
            entries.filter { $0.owner == user || $0.owner == uidNumber }.map(\.range)
        }
        let uids = mine(subuid), gids = mine(subgid)
        if !uids.isEmpty || !gids.isEmpty {
            guard !uids.isEmpty && !gids.isEmpty else {
                let missing = uids.isEmpty ? subuidPath : subgidPath
                throw RuntimeError("--userns auto: \(user) has subordinate ids in \(uids.isEmpty ? subgidPath : subuidPath) but none in \(missing); add a line \"\(user):START:COUNT\" to \(missing)")
            }
            return (uids, gids, "subuid:\(user)")
        }
        let builtIn = IDRange(start: Self.builtInStart, count: UInt32(min(UInt64(Self.builtInSlots) * UInt64(size), UInt64(UInt32.max - 1) - UInt64(Self.builtInStart))))
        let others = (subuid + subgid).map(\.range)
        let free = Self.subtract(others, from: builtIn)
        return (free, free, "built-in")
    }

    /// Allocates `size` uids and gids for `containerID`. When it already has a range: returns it if `reuse`,
    /// else throws.
    public func allocate(containerID: String, size: UInt32 = IDRangeAllocator.defaultSize, reuse: Bool = true) throws -> IDAllocation {
        guard size > 0 else { throw RuntimeError("--userns auto: the size of the id range must be at least 1") }
        return try locked { current in
            if let existing = current.first(where: { $0.containerID == containerID }) {
                guard reuse else {
                    throw RuntimeError("--userns auto: container \(containerID) already holds host ids \(existing.uidRange) (it exists, or is being created); choose another --name")
                }
                return existing
            }
            let (uidPool, gidPool, name) = try pools(size: size)
            guard let uid = Self.firstFit(size, in: uidPool, taken: current.map(\.uidRange)),
                  let gid = Self.firstFit(size, in: gidPool, taken: current.map(\.gidRange)) else {
                throw RuntimeError("--userns auto: no free range of \(size) ids left in the \(name) pool (\(current.count) in use): delete stopped containers, or give \(user) more ids in \(subuidPath) and \(subgidPath)")
            }
            let me = getpid()
            let allocation = IDAllocation(containerID: containerID, uid: uid, gid: gid, size: size, pool: name, allocator: me,
                                          allocatorStart: (try? ChildProcess.statFields(me).startTime) ?? 0)
            let dir = try FileDescriptor.open(directory, O_RDONLY | O_DIRECTORY)
            try dir.writeFileAtomically(containerID + ".json", bytes: Array(try JSONEncoder().encode(allocation)), mode: 0o600)
            return allocation
        }
    }

    /// Gives the range of `containerID` back. Idempotent.
    public func release(containerID: String) throws {
        guard access(directory, F_OK) == 0 else { return }
        try locked { _ in
            let dir = try FileDescriptor.open(directory, O_RDONLY | O_DIRECTORY)
            do { try dir.unlink(containerID + ".json") } catch let e as SystemError where e.errno == ENOENT {}
        }
    }

    /// Live allocations (stale ones, whose container and allocating process are both gone, are dropped).
    public func allocations() throws -> [IDAllocation] { try locked { $0 } }

    /// Runs `body` with the lock held and the live allocations read.
    func locked<T>(_ body: ([IDAllocation]) throws -> T) throws -> T {
        for path in [stateRoot, directory] where Glibc.mkdir(path, 0o711) != 0 && errno != EEXIST {
            throw SystemError(operation: "mkdir", path: path, errno: errno)
        }
        let lock = try FileLock(path: directory + "/lock")
        defer { _ = lock.path }   // held until the body is done
        let dir = try FileDescriptor.open(directory, O_RDONLY | O_DIRECTORY)
        var live: [IDAllocation] = []
        for name in try dir.entries() where name.hasSuffix(".json") {
            guard let fd = try? dir.openAt(name, O_RDONLY), let bytes = try? fd.readAll(limit: 1 << 16),
                  let a = try? JSONDecoder().decode(IDAllocation.self, from: Data(bytes)), a.containerID + ".json" == name else {
                continue   // not ours or torn: never counted, never removed
            }
            if isLive(a) { live.append(a) } else { try? dir.unlink(name) }
        }
        return try body(live)
    }

    func isLive(_ a: IDAllocation) -> Bool {
        if access(stateRoot + "/" + a.containerID + "/state.json", F_OK) == 0 { return true }
        guard ChildProcess.isAlive(a.allocator) else { return false }
        return a.allocatorStart == 0 || (try? ChildProcess.statFields(a.allocator).startTime) == a.allocatorStart
    }

    /// The lowest start in `pool` where `size` ids fit without touching `taken`.
    static func firstFit(_ size: UInt32, in pool: [IDRange], taken: [IDRange]) -> UInt32? {
        let busy = taken.sorted { $0.start < $1.start }
        for range in pool.sorted(by: { $0.start < $1.start }) {
            var candidate = UInt64(range.start)
            for t in busy where t.end > candidate && UInt64(t.start) < candidate + UInt64(size) {
                candidate = t.end
            }
            if candidate + UInt64(size) <= range.end { return UInt32(candidate) }
        }
        return nil
    }

    /// `range` minus every range in `holes`.
    static func subtract(_ holes: [IDRange], from range: IDRange) -> [IDRange] {
        var pieces = [range]
        for hole in holes {
            pieces = pieces.flatMap { p -> [IDRange] in
                guard p.overlaps(hole) else { return [p] }
                var out: [IDRange] = []
                if hole.start > p.start { out.append(IDRange(start: p.start, count: hole.start - p.start)) }
                if hole.end < p.end { out.append(IDRange(start: UInt32(hole.end), count: UInt32(p.end - hole.end))) }
                return out
            }
        }
        return pieces
    }
}
