import Foundation
import LinuxOS
import OCIRuntime
import Runtime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The id-range allocator behind `run --userns auto` and the spec's user-namespace rules, without containers.
struct IDRangeAllocatorTests {
    func scratch(subuid: String, subgid: String) throws -> (IDRangeAllocator, String) {
        let dir = try TestEnv.scratch("idalloc")
        try subuid.write(toFile: dir + "/subuid", atomically: true, encoding: .utf8)
        try subgid.write(toFile: dir + "/subgid", atomically: true, encoding: .utf8)
        return (IDRangeAllocator(runtimeRoot: dir + "/state", user: "bulkhead", subuidPath: dir + "/subuid", subgidPath: dir + "/subgid"), dir)
    }

    @Test func parsesSubordinateIDFiles() {
        let entries = SubordinateIDs.parse("# comment\nbulkhead:100000:65536\n\n  alice:200000:1000\nbad line\nbob:x:1\nzero:5:0\nwrap:4294967295:2\n")
        #expect(entries == [.init(owner: "bulkhead", range: IDRange(start: 100000, count: 65536)),
                            .init(owner: "alice", range: IDRange(start: 200000, count: 1000))])
    }

    @Test func allocatesDisjointRangesFromTheUsersSubordinateIDsAndReleasesThem() throws {
        let (allocator, dir) = try scratch(subuid: "alice:100000:65536\nbulkhead:300000:131072\nbulkhead:600000:65536\n",
                                           subgid: "bulkhead:700000:196608\n")
        defer { TestEnv.remove(dir) }
        // The allocations below belong to this (live) process, so none is stale.
        let a = try allocator.allocate(containerID: "a")
        let b = try allocator.allocate(containerID: "b")
        let c = try allocator.allocate(containerID: "c")
        #expect([a.uid, b.uid, c.uid] == [300000, 365536, 600000])
        #expect([a.gid, b.gid, c.gid] == [700000, 765536, 831072])
        #expect(a.pool == "subuid:bulkhead")
        #expect(try allocator.allocate(containerID: "a") == a, "a container keeps its range")
        #expect(throws: RuntimeError.self) { try allocator.allocate(containerID: "a", reuse: false) }
        #expect(throws: RuntimeError.self) { try allocator.allocate(containerID: "d") }
        try allocator.release(containerID: "b")
        let d = try allocator.allocate(containerID: "d")
        #expect(d.uid == 365536 && d.gid == 765536, "the freed range is handed out again")
        #expect(Set(try allocator.allocations().map(\.containerID)) == ["a", "c", "d"])
    }

    @Test func builtInPoolAvoidsEveryoneElsesSubordinateIDs() throws {
        let start = IDRangeAllocator.builtInStart
        let (allocator, dir) = try scratch(subuid: "alice:\(start + 10):5\n", subgid: "")
        defer { TestEnv.remove(dir) }
        let a = try allocator.allocate(containerID: "a", size: 1000)
        #expect(a.pool == "built-in")
        #expect(a.uid == start + 15 && a.gid == start + 15)
    }

    @Test func allocationsOfGoneContainersAndProcessesAreReclaimed() throws {
        let (allocator, dir) = try scratch(subuid: "bulkhead:100000:65536\n", subgid: "bulkhead:100000:65536\n")
        defer { TestEnv.remove(dir) }
        _ = try allocator.allocate(containerID: "old")
        // Rewrite the record as made by a process that has exited (pid of a reaped child) and for a container
        // with no state directory: the next allocation reclaims it.
        let pid = try ChildProcess.spawn("/bin/true", arguments: ["true"], environment: [], fds: [])
        _ = try ChildProcess.wait(pid)
        let path = dir + "/state/.userns/old.json"
        var record = try JSONDecoder().decode(IDAllocation.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        record.allocator = pid
        try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: path))
        let fresh = try allocator.allocate(containerID: "new")
        #expect(fresh.uid == 100000)
        #expect(try allocator.allocations().map(\.containerID) == ["new"])
        // A container that has a state directory keeps its range even when its allocator is gone.
        try FileManager.default.createDirectory(atPath: dir + "/state/kept", withIntermediateDirectories: true)
        try "{}".write(toFile: dir + "/state/kept/state.json", atomically: true, encoding: .utf8)
        try allocator.release(containerID: "new")
        _ = try allocator.allocate(containerID: "kept")
        let keptPath = dir + "/state/.userns/kept.json"
        var kept = try JSONDecoder().decode(IDAllocation.self, from: Data(contentsOf: URL(fileURLWithPath: keptPath)))
        kept.allocator = pid
        try JSONEncoder().encode(kept).write(to: URL(fileURLWithPath: keptPath))
        #expect(try allocator.allocations().map(\.containerID) == ["kept"])
    }

    @Test func specUserNamespaceRulesNameTheField() throws {
        func problem(_ edit: (inout Spec) -> Void) -> String? {
            var spec = Spec.defaultSpec(args: ["true"], terminal: false)
            edit(&spec)
            do { try spec.validate(); return nil } catch { return "\(error)" }
        }
        let map = [Spec.IDMapping(containerID: 0, hostID: 100000, size: 65536)]
        #expect(problem { $0.linux?.uidMappings = map }?.contains("linux.uidMappings is set but linux.namespaces has no user namespace") == true)
        #expect(problem { $0.linux?.gidMappings = map }?.contains("linux.gidMappings is set") == true)
        #expect(problem { $0.linux?.namespaces?.append(.init(type: .user)) }?.contains("linux.uidMappings is empty") == true)
        #expect(problem { $0.linux?.namespaces?.append(.init(type: .user)); $0.linux?.uidMappings = map }?.contains("linux.gidMappings is empty") == true)
        #expect(problem {
            $0.linux?.namespaces?.append(.init(type: .user)); $0.linux?.gidMappings = map
            $0.linux?.uidMappings = map + [Spec.IDMapping(containerID: 70000, hostID: 100010, size: 5)]
        }?.contains("linux.uidMappings[1] and [0] overlap in hostID") == true)
        #expect(problem {
            $0.linux?.namespaces?.append(.init(type: .user)); $0.linux?.uidMappings = map
            $0.linux?.gidMappings = [Spec.IDMapping(containerID: 0, hostID: 1, size: 0)]
        }?.contains("linux.gidMappings[0].size is 0") == true)
        // Joining a namespace by path needs no mappings; several disjoint ranges are fine.
        #expect(problem { $0.linux?.namespaces?.append(.init(type: .user, path: "/proc/1/ns/user")) } == nil)
        #expect(problem {
            $0.linux?.namespaces?.append(.init(type: .user))
            $0.linux?.uidMappings = [.init(containerID: 0, hostID: 100000, size: 1000), .init(containerID: 1000, hostID: 300000, size: 64536)]
            $0.linux?.gidMappings = map
        } == nil)
    }
}

/// Containers in user namespaces, from bundles (spec mappings) and from images (`run --userns auto`).
@Suite(.serialized, .enabled(if: TestEnv.canRunContainers, "needs root and busybox-static"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct UserNamespaceTests {
    static let twoRanges = (uid: [Spec.IDMapping(containerID: 0, hostID: 100000, size: 1000), Spec.IDMapping(containerID: 1000, hostID: 201000, size: 64536)],
                            gid: [Spec.IDMapping(containerID: 0, hostID: 100000, size: 65536)])

    static func withUserNamespace(_ spec: inout Spec) {
        spec.linux?.namespaces?.append(.init(type: .user))
        spec.linux?.uidMappings = twoRanges.uid
        spec.linux?.gidMappings = twoRanges.gid
    }

    /// The `Uid:`/`Gid:` values of a host process, from the host's /proc.
    static func ids(ofPid pid: Int32) throws -> (uid: [String], gid: [String]) {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8).split(separator: "\n")
        func field(_ name: String) -> [String] {
            status.first { $0.hasPrefix(name + ":") }.map { $0.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().map(String.init) } ?? []
        }
        return (field("Uid"), field("Gid"))
    }

    static func pid(_ bh: ([String]) throws -> TestEnv.Result, _ id: String) throws -> Int32 {
        try JSONDecoder().decode(ContainerStateJSON.self, from: Data(try bh(["state", id]).stdout.utf8)).pid
    }

    @Test func specMappingsMakeContainerRootAnUnprivilegedHostUserWithProcSysAndDevices() throws {
        let dir = try TestEnv.scratch("userns-spec")
        defer { TestEnv.remove(dir) }
        let probe = """
            id -u; cat /proc/self/uid_map /proc/self/gid_map
            echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 8 /dev/urandom | wc -c
            ls /sys/kernel >/dev/null && echo sys-ok
            grep -c . /proc/self/status >/dev/null && echo proc-ok
            exec sleep 60
            """
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", probe], edit: Self.withUserNamespace)
        let id = TestEnv.uniqueID("userns")
        let bh = { (args: [String]) in try TestEnv.run([TestEnv.bulkhead, "--root", dir + "/state"] + args) }
        defer { _ = try? bh(["delete", "--force", id]) }
        // The container's output goes to a file: `create` hands it the runtime's stdio.
        let out = dir + "/out"
        let created = try TestEnv.run(["/bin/sh", "-c", "exec \"$@\" > \(out) 2>&1", "sh", TestEnv.bulkhead, "--root", dir + "/state",
                                       "create", "--bundle", bundle, id])
        #expect(created.code == 0, "\(created.stderr)")
        #expect(try bh(["start", id]).code == 0)
        let pid = try Self.pid(bh, id)
        var text = ""
        for _ in 0..<250 where !text.contains("proc-ok") { usleep(20_000); text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        let lines = text.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        #expect(lines == ["0", "0 100000 1000", "1000 201000 64536", "0 100000 65536", "4", "8", "sys-ok", "proc-ok"], "\(text)")
        // From the host, root in the container is uid 100000.
        let ids = try Self.ids(ofPid: pid)
        #expect(ids.uid == ["100000", "100000", "100000", "100000"], "\(ids)")
        #expect(ids.gid == ["100000", "100000", "100000", "100000"], "\(ids)")
        let maps = try UserNamespace.readMap(pid: pid, "uid_map")
        #expect(maps == [IDMapEntry(inside: 0, outside: 100000, count: 1000), IDMapEntry(inside: 1000, outside: 201000, count: 64536)])
    }

    @Test func userNamespaceWithoutNetworkNamespaceGetsTheHostsSysfsAndJoinsByPath() throws {
        let dir = try TestEnv.scratch("userns-join")
        defer { TestEnv.remove(dir) }
        let bh = { (args: [String]) in try TestEnv.run([TestEnv.bulkhead, "--root", dir + "/state"] + args) }
        // A: its own user namespace, the host's network namespace: sysfs cannot be mounted fresh, it is bound.
        let a = TestEnv.uniqueID("userns-a")
        let bundleA = try TestEnv.busyboxBundle(at: dir + "/a", args: ["sleep", "60"]) { spec in
            Self.withUserNamespace(&spec)
            spec.linux?.namespaces?.removeAll { $0.type == .network }
        }
        defer { _ = try? bh(["delete", "--force", a]) }
        #expect(try bh(["run", "--bundle", bundleA, "--detach", a]).code == 0)
        let pidA = try Self.pid(bh, a)
        let sysfs = try bh(["exec", a, "sh", "-c", "ls /sys/class/net >/dev/null && grep ' /sys ' /proc/self/mountinfo"])
        #expect(sysfs.code == 0 && sysfs.stdout.contains("sysfs"), "\(sysfs.stdout) \(sysfs.stderr)")

        // B joins A's user namespace by path: no mappings needed, and B's root is A's host uid.
        let bundleB = try TestEnv.busyboxBundle(at: dir + "/b", args: ["sh", "-c", "cat /proc/self/uid_map; id -u"]) { spec in
            spec.linux?.namespaces?.removeAll { $0.type == .network }
            spec.linux?.namespaces?.append(.init(type: .user, path: "/proc/\(pidA)/ns/user"))
        }
        let joined = try bh(["run", "--bundle", bundleB, TestEnv.uniqueID("userns-b")])
        #expect(joined.code == 0, "\(joined.stderr)")
        #expect(joined.stdout.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") } == ["0 100000 1000", "1000 201000 64536", "0"], "\(joined.stdout)")

        // Mappings that are not the joined namespace's maps are refused, naming the field.
        let bundleC = try TestEnv.busyboxBundle(at: dir + "/c", args: ["true"]) { spec in
            spec.linux?.namespaces?.removeAll { $0.type == .network }
            spec.linux?.namespaces?.append(.init(type: .user, path: "/proc/\(pidA)/ns/user"))
            spec.linux?.uidMappings = [.init(containerID: 0, hostID: 500000, size: 10)]
        }
        let wrong = try bh(["run", "--bundle", bundleC, TestEnv.uniqueID("userns-c")])
        #expect(wrong.code == 1 && wrong.stderr.contains("linux.uidMappings"), "\(wrong.stderr)")
    }

    @Test func badUserNamespaceSpecsFailCreateNamingTheField() throws {
        let dir = try TestEnv.scratch("userns-bad")
        defer { TestEnv.remove(dir) }
        let noNS = try TestEnv.busyboxBundle(at: dir + "/1", args: ["true"]) { $0.linux?.uidMappings = Self.twoRanges.uid; $0.linux?.gidMappings = Self.twoRanges.gid }
        let noMaps = try TestEnv.busyboxBundle(at: dir + "/2", args: ["true"]) { $0.linux?.namespaces?.append(.init(type: .user)) }
        let idmapWithoutUserns = try TestEnv.busyboxBundle(at: dir + "/3", args: ["true"]) {
            $0.mounts?.append(Spec.Mount(destination: "/data", type: "bind", source: "/etc", options: ["rbind", "idmap"]))
        }
        for (bundle, field) in [(noNS, "linux.uidMappings is set but linux.namespaces has no user namespace"), (noMaps, "linux.uidMappings is empty"),
                                (idmapWithoutUserns, "mounts[")] {
            let r = try TestEnv.run([TestEnv.bulkhead, "--root", dir + "/state", "create", "--bundle", bundle, TestEnv.uniqueID("userns-bad")])
            #expect(r.code == 1 && r.stderr.contains(field), "\(r.stderr)")
        }
        #expect(try StateStore(root: dir + "/state").ids().isEmpty)
    }

    @Test func idmappedBindMountsShowHostOwnersInsideAndWriteThemBack() throws {
        let dir = try TestEnv.scratch("userns-idmap")
        defer { TestEnv.remove(dir) }
        let shared = dir + "/shared"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: shared + "/root-file", contents: nil)
        _ = FileManager.default.createFile(atPath: shared + "/app-file", contents: nil)
        chown(shared + "/app-file", 1000, 1000)
        let probe = "stat -c '%n %u %g' /idm/root-file /idm/app-file /plain/root-file; touch /idm/made-inside"
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", probe]) { spec in
            Self.withUserNamespace(&spec)
            // idmap: the container's own mappings; the second mount has mappings of its own.
            spec.mounts?.append(Spec.Mount(destination: "/idm", type: "bind", source: shared, options: ["rbind", "idmap"]))
            var plain = Spec.Mount(destination: "/plain", type: "bind", source: shared, options: ["rbind", "ro"])
            plain.uidMappings = [.init(containerID: 0, hostID: 100007, size: 10)]
            plain.gidMappings = [.init(containerID: 0, hostID: 100007, size: 10)]
            spec.mounts?.append(plain)
        }
        for d in ["idm", "plain"] { try FileManager.default.createDirectory(atPath: bundle + "/rootfs/" + d, withIntermediateDirectories: true) }
        let r = try TestEnv.run([TestEnv.bulkhead, "--root", dir + "/state", "run", "--bundle", bundle, TestEnv.uniqueID("idmap")])
        #expect(r.code == 0, "\(r.stderr)")
        // Host 0 and 1000 are 0 and 1000 inside (not the overflow id); through the second map host 0 is container 7.
        #expect(r.stdout == "/idm/root-file 0 0\n/idm/app-file 1000 1000\n/plain/root-file 7 7\n", "\(r.stdout)")
        // What container root writes through the idmapped mount is host root's on disk.
        #expect(try UserNamespaceImageTests.owner(shared + "/made-inside") == (0, 0))
    }

    /// The same user-namespace bundle under bulkhead and Debian's runc: same ids, same maps, same mounts.
    @Test(.enabled(if: TestEnv.runc != nil, "needs runc"))
    func containerSeesTheSameWorldAsUnderRunc() throws {
        let probe = "sed 's/^ *\\([0-9]*\\) *\\([0-9]*\\) *\\([0-9]*\\)/uid_map=\\1 \\2 \\3/' /proc/self/uid_map; "
            + "sed 's/^ *\\([0-9]*\\) *\\([0-9]*\\) *\\([0-9]*\\)/gid_map=\\1 \\2 \\3/' /proc/self/gid_map; " + MatrixTests.probe
        let c = MatrixTests.Case(name: "userns") { spec in
            Self.withUserNamespace(&spec)
            spec.process?.args = ["sh", "-c", probe]
        }
        let (ours, theirs) = try MatrixTests().runBoth(c)
        #expect(theirs.code == 5, "runc failed: \(theirs.stderr)")
        #expect(ours.code == theirs.code, "bulkhead: \(ours.stderr)")
        let a = ours.stdout.split(separator: "\n").map(String.init)
        let b = theirs.stdout.split(separator: "\n").map(String.init)
        #expect(a.contains("uid_map=1000 201000 64536") && a.contains { $0.hasPrefix("id=uid=0") }, "\(a)")
        let onlyOurs = a.filter { !b.contains($0) }
        let onlyRunc = b.filter { !a.contains($0) }
        #expect(onlyOurs.isEmpty && onlyRunc.isEmpty, "only bulkhead: \(onlyOurs)\nonly runc: \(onlyRunc)")
    }
}

/// `bulkhead run --userns auto IMAGE`: a host id range per container, the rootfs shifted to it, released on delete.
@Suite(.serialized, .enabled(if: TestEnv.canRunContainers && Engines.umoci != nil, "needs root, busybox-static and umoci"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct UserNamespaceImageTests {
    final class Store: Sendable {
        let dir: String
        let base: [String]
        init() throws {
            dir = try TestEnv.scratch("userns-image")
            base = [TestEnv.bulkhead, "--root", dir + "/state", "--data-root", dir + "/data"]
            let made = try TestEnv.run([TestEnv.packageRoot + "/scripts/make-busybox-image", dir + "/bb.tar"], timeout: 120)
            guard made.code == 0 else { throw RuntimeError("make-busybox-image: \(made.stderr)") }
            let imported = try bh(["image", "import", dir + "/bb.tar", "--name", "bb"])
            guard imported.code == 0 else { throw RuntimeError("image import: \(imported.stderr)") }
        }
        func bh(_ args: [String]) throws -> TestEnv.Result { try TestEnv.run(base + args) }
        func pid(_ id: String) throws -> Int32 { try UserNamespaceTests.pid(bh, id) }
        deinit { TestEnv.remove(dir) }
    }

    static func owner(_ path: String) throws -> (uid: UInt32, gid: UInt32) {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw RuntimeError("stat \(path): errno \(errno)") }
        return (st.st_uid, st.st_gid)
    }

    @Test(arguments: ["idmapped-layers", "chown"])
    func filesCreatedByContainerRootBelongToTheMappedHostUser(_ shift: String) throws {
        let s = try Store()
        let volume = s.dir + "/vol"
        try FileManager.default.createDirectory(atPath: volume, withIntermediateDirectories: true)
        chmod(volume, 0o777)
        let id = "ua-\(shift)"
        defer { _ = try? s.bh(["delete", "--force", id]) }
        let r = try s.bh(["run", "-d", "--name", id, "--userns", "auto:shift=\(shift)", "-v", "\(volume):/vol", "bb", "sh", "-c",
                          "echo changed >> /etc/passwd && touch /made-inside /vol/made-inside && exec sleep 60"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stderr.contains("rootfs shifted with \(shift == "chown" ? "chown" : "idmapped layers")"), "the log says which way: \(r.stderr)")
        let pid = try s.pid(id)
        let maps = try UserNamespace.readMap(pid: pid, "uid_map")
        #expect(maps.count == 1 && maps[0].inside == 0 && maps[0].count == 65536 && maps[0].outside >= 100000, "\(maps)")
        let hostUID = maps[0].outside
        #expect(try UserNamespaceTests.ids(ofPid: pid).uid.first == String(hostUID), "container root is an ordinary host user")
        // The volume's file is the container's last write: once it is there, so are the others.
        for _ in 0..<250 where access(volume + "/made-inside", F_OK) != 0 { usleep(20_000) }
        let upper = s.dir + "/data/rootfs/\(id)/upper"
        #expect(try Self.owner(volume + "/made-inside") == (hostUID, hostUID))
        #expect(try Self.owner(upper + "/made-inside") == (hostUID, hostUID))
        #expect(try Self.owner(upper + "/etc/passwd") == (hostUID, hostUID), "a copied-up file too")
        // Inside, the image's files belong to root, and root can use them.
        let inside = try s.bh(["exec", id, "sh", "-c", "stat -c '%u %g' /bin/busybox /etc/passwd /root; ls /root >/dev/null && echo root-dir-ok; cat /proc/self/uid_map"])
        #expect(inside.stdout.hasPrefix("0 0\n0 0\n0 0\nroot-dir-ok\n"), "\(inside.stdout) \(inside.stderr)")
        if shift == "chown" {
            // metacopy: the chown copied metadata up, not the 2 MB busybox.
            var st = stat()
            if lstat(upper + "/bin/busybox", &st) == 0, (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.contains("metacopy=on") == true {
                #expect(st.st_blocks * 512 < 1 << 20, "busybox was copied up whole (\(st.st_blocks) blocks)")
            }
        } else {
            // The shared layer itself is untouched: still root's on the host.
            #expect(try Self.owner(s.dir + "/data/rootfs/\(id)/merged").uid == hostUID)
        }
    }

    @Test func concurrentContainersGetDisjointRangesFreedOnDelete() throws {
        let s = try Store()
        let ids = ["uc-1", "uc-2", "uc-3"]
        defer { for id in ids { _ = try? s.bh(["delete", "--force", id]) } }
        // Started at the same time: the allocator's lock keeps their ranges apart.
        let starts = ids.map { id in
            Thread.detachNewThreadWithResult { try s.bh(["run", "-d", "--name", id, "--userns", "auto", "bb", "sleep", "60"]) }
        }
        for (id, started) in zip(ids, starts) {
            let r = try started.get()
            #expect(r.code == 0, "\(id): \(r.stderr)")
        }
        var ranges: [String: IDMapEntry] = [:]
        for id in ids { ranges[id] = try UserNamespace.readMap(pid: try s.pid(id), "uid_map").first }
        let all = ids.compactMap { ranges[$0] }
        #expect(all.count == 3)
        for (i, a) in all.enumerated() {
            for b in all[(i + 1)...] {
                #expect(UInt64(a.outside) + UInt64(a.count) <= UInt64(b.outside) || UInt64(b.outside) + UInt64(b.count) <= UInt64(a.outside), "\(a) and \(b) overlap")
            }
        }
        let allocations = s.dir + "/state/.userns"
        #expect(FileManager.default.fileExists(atPath: allocations + "/uc-2.json"))
        #expect(try s.bh(["delete", "--force", "uc-2"]).code == 0)
        #expect(!FileManager.default.fileExists(atPath: allocations + "/uc-2.json"), "delete gives the range back")
        // The next container gets the freed range (first fit).
        defer { _ = try? s.bh(["delete", "--force", "uc-4"]) }
        #expect(try s.bh(["run", "-d", "--name", "uc-4", "--userns", "auto", "bb", "sleep", "60"]).code == 0)
        #expect(try UserNamespace.readMap(pid: try s.pid("uc-4"), "uid_map").first?.outside == ranges["uc-2"]?.outside)
        // --rm releases too.
        #expect(try s.bh(["run", "--rm", "--name", "uc-5", "--userns", "auto", "bb", "true"]).code == 0)
        #expect(!FileManager.default.fileExists(atPath: allocations + "/uc-5.json"))
    }

    @Test func policyRequiringAUserNamespaceTurnsOnAutoForImagesAndRefusesBundlesWithout() throws {
        let s = try Store()
        // The policy gate trusts a file only in directories nobody but root can write (/tmp is world-writable).
        let trusted = "/run/bulkhead-userns-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: trusted, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        defer { TestEnv.remove(trusted) }
        let policy = trusted + "/policy.yaml"
        try """
            version: 1
            rules:
              - name: userns
                decide: namespace
                namespace: {user_namespace: true}
            """.write(toFile: policy, atomically: false, encoding: .utf8)
        let audit = s.dir + "/audit.log"
        let r = try s.bh(["run", "--rm", "--policy", policy, "--audit-log", audit, "--name", "up", "bb", "sh", "-c", "cat /proc/self/uid_map"])
        #expect(r.code == 0, "\(r.stderr)")
        let map = UserNamespace.parseMap(r.stdout)
        #expect(map.count == 1 && map[0].outside >= 100000, "\(r.stdout)")
        #expect(r.stderr.contains("requires a user namespace"), "the log names the rule: \(r.stderr)")

        let bundle = try TestEnv.busyboxBundle(at: s.dir + "/b", args: ["true"])
        let refused = try s.bh(["run", "--bundle", bundle, "--policy", policy, "--audit-log", audit, "up-bundle"])
        #expect(refused.code == 1 && refused.stderr.contains("requires a user namespace"), "\(refused.stderr)")

        let bad = try s.bh(["run", "--rm", "--userns", "sometimes", "bb", "true"])
        #expect(bad.code == 1 && bad.stderr.contains("--userns sometimes"), "\(bad.stderr)")
    }
}

extension Thread {
    /// Runs `body` on a new thread; `get()` waits for its result.
    static func detachNewThreadWithResult<T: Sendable>(_ body: @escaping @Sendable () throws -> T) -> ThreadResult<T> {
        let result = ThreadResult<T>()
        Thread.detachNewThread { result.set(Result { try body() }) }
        return result
    }
}

final class ThreadResult<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: Result<T, Error>?
    func set(_ v: Result<T, Error>) { value = v; done.signal() }
    func get() throws -> T { done.wait(); return try value!.get() }
}
