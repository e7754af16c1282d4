import Cgroups
import Foundation
import Testing

@Suite struct CgroupPathTests {
    @Test func systemdFormExpandsTheSliceAndNamesAScope() throws {
        #expect(try CgroupPath.resolve("system.slice:libpod:abc", containerID: "x") == "/system.slice/libpod-abc.scope")
        #expect(try CgroupPath.resolve("machine-foo.slice:crio:1", containerID: "x") == "/machine.slice/machine-foo.slice/crio-1.scope")
        #expect(try CgroupPath.resolve(":ctr:1", containerID: "x") == "/system.slice/ctr-1.scope")
        #expect(try CgroupPath.resolve("user.slice::pod.slice", containerID: "x") == "/user.slice/pod.slice")
    }

    @Test func plainPathsAbsoluteRelativeAndEmpty() throws {
        #expect(try CgroupPath.resolve("/a/b", containerID: "x") == "/a/b")
        #expect(try CgroupPath.resolve("a/b", containerID: "x", ownCgroup: "/mine") == "/mine/a/b")
        #expect(try CgroupPath.resolve(nil, containerID: "x") == "/bulkhead/x")
        #expect(throws: CgroupError.self) { try CgroupPath.resolve("/a/../../etc", containerID: "x") }
        #expect(throws: CgroupError.self) { try CgroupPath.resolve("/plain", containerID: "x", systemd: true) }
        #expect(throws: CgroupError.self) { try CgroupPath.resolve("notaslice:p:n", containerID: "x") }
    }

    /// delete and tear-down kill every process left in the container's cgroup: it must never be the root cgroup
    /// or the runtime's own.
    @Test func rootAndOwnCgroupAreRefused() throws {
        for path in ["/", "//", "/.", "."] {
            #expect(throws: CgroupError.self, "\(path)") { try CgroupPath.resolve(path, containerID: "x") }
        }
        #expect(throws: CgroupError.self) { try CgroupPath.resolve(".", containerID: "x", ownCgroup: "/mine") }
        #expect(throws: CgroupError.self) { try CgroupPath.resolve("/mine/", containerID: "x", ownCgroup: "/mine") }
        #expect(try CgroupPath.resolve("sub", containerID: "x", ownCgroup: "/mine") == "/mine/sub")
    }

    static let hybrid = """
        30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
        31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
        32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
        33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
        34 30 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,freezer
        35 30 0:31 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpuset
        """
    static let unified = "30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"

    @Test func layoutDetection() {
        let h = CgroupLayout.parse(mountinfo: Self.hybrid)
        #expect(h.kind == .hybrid)
        #expect(h.unified == "/sys/fs/cgroup/unified")
        #expect(h.hierarchy(for: "cpuacct")?.mountPoint == "/sys/fs/cgroup/cpu,cpuacct")
        #expect(h.hierarchy(for: "name=systemd") != nil)
        let u = CgroupLayout.parse(mountinfo: Self.unified)
        #expect(u.kind == .unified && u.v1.isEmpty && u.unified == "/sys/fs/cgroup")
        // Cgroup mounts outside /sys/fs/cgroup (a chroot's, seen through propagation) are not the host's layout.
        let stray = Self.unified + "\n" + Self.hybrid.replacingOccurrences(of: " /sys/fs/cgroup", with: " /tmp/chroot/sys/fs/cgroup")
        let s = CgroupLayout.parse(mountinfo: stray)
        #expect(s.kind == .unified && s.v1.isEmpty && s.unified == "/sys/fs/cgroup", "\(s)")
        let legacy = CgroupLayout.parse(mountinfo: Self.hybrid.split(separator: "\n").filter { !$0.contains("cgroup2") }.joined(separator: "\n"))
        #expect(legacy.kind == .legacy)
    }

    /// The file-level behaviour on a fake cgroupfs tree: directories in every hierarchy,
    /// procs written, v1 freezer state, removal.
    @Test func fakeTreeCreateJoinFreezeDelete() throws {
        let fake = "/tmp/bulkhead-fake-cgroup-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: fake) }
        let layout = CgroupLayout.parse(mountinfo: Self.hybrid)
        for h in layout.v1 { try FileManager.default.createDirectory(atPath: fake + h.mountPoint, withIntermediateDirectories: true) }
        try FileManager.default.createDirectory(atPath: fake + "/sys/fs/cgroup/unified", withIntermediateDirectories: true)
        try "0-1\n".write(toFile: fake + "/sys/fs/cgroup/cpuset/cpuset.cpus", atomically: false, encoding: .utf8)
        try "0\n".write(toFile: fake + "/sys/fs/cgroup/cpuset/cpuset.mems", atomically: false, encoding: .utf8)
        let cg = Cgroup(layout: layout, path: "/bulkhead/c1", fsRoot: fake)
        try cg.create()
        #expect(FileManager.default.fileExists(atPath: fake + "/sys/fs/cgroup/cpuset/bulkhead/c1"))
        for (_, dir) in cg.directories { _ = FileManager.default.createFile(atPath: dir + "/cgroup.procs", contents: nil) }
        _ = FileManager.default.createFile(atPath: fake + "/sys/fs/cgroup/freezer/bulkhead/c1/freezer.state", contents: Data("THAWED\n".utf8))
        try cg.join(pid: 4242)
        #expect(try String(contentsOfFile: fake + "/sys/fs/cgroup/unified/bulkhead/c1/cgroup.procs", encoding: .utf8) == "4242")
        try cg.freeze()
        #expect(cg.freezerState() == .frozen)
        try cg.thaw()
        #expect(cg.freezerState() == .thawed)
        // A real cgroupfs removes its files with rmdir; on the fake tree we empty the directories first.
        for (_, dir) in cg.directories {
            for f in try FileManager.default.contentsOfDirectory(atPath: dir) { try FileManager.default.removeItem(atPath: dir + "/" + f) }
        }
        try cg.delete()
        #expect(!cg.exists)
    }
}
