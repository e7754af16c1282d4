import Foundation
import Testing
@testable import GuestAgent

@Suite struct BootConfigParsing {
    @Test func defaults() {
        let c = BootConfig.parse("console=ttyS0 reboot=k panic=-1")
        #expect(c == BootConfig())
        #expect(c.rootfsDevice == "/dev/vda" && c.scratch == "tmpfs" && c.halt == "reboot")
    }

    @Test func readsBulkheadKeys() {
        let c = BootConfig.parse("quiet bulkhead.rootfs=/dev/vdb bulkhead.scratch=/dev/vdc bulkhead.halt=poweroff bulkhead.control=ctl\n")
        #expect(c.rootfsDevice == "/dev/vdb")
        #expect(c.scratch == "/dev/vdc")
        #expect(c.halt == "poweroff")
        #expect(c.controlPort == "ctl")
    }

    @Test func refusesOddValues() {
        let c = BootConfig.parse("bulkhead.rootfs=/etc/passwd bulkhead.scratch=/dev/../etc bulkhead.halt=explode bulkhead.rootfs= bulkhead.control=" + String(repeating: "x", count: 300))
        #expect(c == BootConfig())
    }
}

@Suite struct SpecDecoding {
    @Test func decodesTheFieldsTheAgentUses() throws {
        let json = """
        {"ociVersion":"1.0.2","hostname":"box",
         "process":{"terminal":true,"consoleSize":{"height":24,"width":80},"user":{"uid":1000,"gid":100,"additionalGids":[10]},
                    "args":["sh","-c","echo hi"],"env":["PATH=/bin","TERM=xterm"],"cwd":"/tmp",
                    "rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":512}],"noNewPrivileges":true,
                    "capabilities":{"bounding":["CAP_KILL"]}},
         "root":{"path":"rootfs","readonly":true},
         "mounts":[{"destination":"/proc","type":"proc","source":"proc"},{"destination":"/data","type":"bind","source":"/srv","options":["rbind","ro"]}],
         "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}],"seccomp":{"defaultAction":"SCMP_ACT_ERRNO"},"resources":{"memory":{"limit":1}}},
         "annotations":{"x":"y"}}
        """
        let spec = try GuestSpec.decode(Array(json.utf8))
        #expect(spec.hostname == "box")
        let p = try #require(spec.process)
        #expect(p.args == ["sh", "-c", "echo hi"])
        #expect(p.user == GuestProcess.User(uid: 1000, gid: 100, additionalGids: [10]))
        #expect(p.rlimits?.first?.soft == 512)
        #expect(p.consoleSize == GuestProcess.ConsoleSize(height: 24, width: 80))
        #expect(p.validate() == nil)
        #expect(spec.mounts?.count == 2)
        #expect(spec.linux?.namespaces?.map(\.type) == ["pid", "mount"])
    }

    @Test func validationNamesTheField() throws {
        #expect(try GuestProcess.decode(Array(#"{"args":[]}"#.utf8)).validate()?.contains("process.args") == true)
        #expect(try GuestProcess.decode(Array(#"{"args":["x"],"cwd":"tmp"}"#.utf8)).validate()?.contains("process.cwd") == true)
        #expect(try GuestProcess.decode(Array(#"{"args":["x"],"rlimits":[{"type":"RLIMIT_BOGUS","hard":1,"soft":1}]}"#.utf8)).validate()?.contains("RLIMIT_BOGUS") == true)
        #expect(throws: (any Error).self) { try GuestProcess.decode(Array(#"{"args":"sh"}"#.utf8)) }
        #expect(throws: (any Error).self) { try GuestSpec.decode(Array("not json".utf8)) }
    }

    @Test func mountOptionsBecomeFlagsAndData() {
        let m = GuestMount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k", "rw"])
        let (flags, data) = m.flagsAndData
        #expect(flags == 2 | (1 << 24))
        #expect(data == "mode=755,size=65536k")
        #expect(GuestMount(destination: "/sys", type: "sysfs", source: nil, options: ["ro", "nodev", "noexec"]).flagsAndData.flags == 1 | 4 | 8)
        // podman's options: propagation and its own hints are not mount data (cgroup2 refuses them with EINVAL).
        let podman = GuestMount(destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup",
                                options: ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"]).flagsAndData
        #expect(podman.flags == 1 | 2 | 4 | 8 | (1 << 21))
        #expect(podman.data == "")
        #expect(GuestMount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "tmpcopyup", "mode=755"]).flagsAndData.data == "mode=755")
    }
}

@Suite(.serialized) struct AgentMountsInsideRoot {
    /// A symlink in the image pointing out of the root must not redirect a spec mount.
    @Test(.enabled(if: isRoot, "needs root to mount tmpfs"))
    func mountDestinationsStayInsideTheRoot() throws {
        // Mount tables are read from /proc/thread-self: other suites in this test process unshare the mount
        // namespace of their own worker threads, so the process-wide view need not be this thread's.
        let t = try TempDir("mounts")
        let root = t.path + "/root", outside = t.path + "/outside"
        try sh("mkdir -p \(root)/etc \(outside) && ln -s \(outside) \(root)/escape && ln -s ../../../../.. \(root)/up")
        // An absolute symlink is resolved inside the root, where its target does not exist: refused.
        #expect(throws: (any Error).self) {
            try Boot.applyMounts([GuestMount(destination: "/escape/x", type: "tmpfs", source: "tmpfs", options: ["size=1m"])], root: root)
        }
        // A relative symlink climbing out stops at the root: the mount lands at root/y.
        #expect(try Boot.applyMounts([GuestMount(destination: "/up/y", type: "tmpfs", source: "tmpfs", options: nil)], root: root).isEmpty)
        let skipped = try Boot.applyMounts([
            GuestMount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["mode=755"]),
            GuestMount(destination: "/data", type: "bind", source: "/srv", options: ["rbind"]),
        ], root: root)
        #expect(skipped == ["/data (bind)"])
        #expect(try String(contentsOfFile: "/proc/thread-self/mountinfo", encoding: .utf8).contains(" \(root)/y "))
        // Nothing appeared outside; the mounts landed below the root.
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        let mounts = try String(contentsOfFile: "/proc/thread-self/mountinfo", encoding: .utf8)
        #expect(!mounts.contains(" \(outside)"))
        #expect(mounts.contains(" \(root)/dev "))
        // /dev got its device nodes.
        var st = stat()
        #expect(lstat("\(root)/dev/null", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/dev/ptmx") == "pts/ptmx")
    }
}
