import Cgroups
import Foundation
import LinuxOS
import OCIRuntime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `linux.resources` enforced on real containers through the `bulkhead` binary, on whatever layout this host
/// has (here: hybrid, so the v1 controllers do the work). Needs root and busybox-static.
@Suite(.serialized, .enabled(if: TestEnv.canRunContainers, "needs root and busybox-static (/bin/busybox)"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct ResourceContainerTests {
    let root: String
    let dir: String
    let layout: CgroupLayout

    init() throws {
        dir = try TestEnv.scratch("res")
        root = dir + "/state"
        layout = try CgroupLayout.detect()
    }

    func bh(_ args: [String], stdin: String? = nil, timeout: TimeInterval = 60) throws -> TestEnv.Result {
        try TestEnv.run([TestEnv.bulkhead, "--root", root] + args, stdin: stdin, timeout: timeout)
    }

    /// A busybox bundle with `resources` (JSON of linux.resources) and a few more applets.
    func bundle(_ args: [String], resources: String, name: String = "b") throws -> String {
        let b = try TestEnv.busyboxBundle(at: dir + "/" + name, args: args) {
            $0.linux?.resources = try! JSONDecoder().decode(Spec.Resources.self, from: Data(resources.utf8))
        }
        for applet in ["dd", "mknod", "seq", "tr", "sed"] {
            try? FileManager.default.createSymbolicLink(atPath: b + "/rootfs/bin/" + applet, withDestinationPath: "busybox")
        }
        return b
    }

    /// The host directory of the container's cgroup for `controller` (v1), or its cgroup2 directory.
    func cgroupFile(_ id: String, _ controller: String, _ file: String) -> String {
        Cgroup(layout: layout, path: "/bulkhead/\(id)").directory(for: controller)! + "/" + file
    }

    func read(_ path: String) -> String { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }

    @Test func aMemoryHogIsKilledAtTheLimitRunExits137AndEventsSayOOM() throws {
        defer { TestEnv.remove(dir) }
        // memory+swap = memory: no way out through swap.
        let res = #"{"memory":{"limit":33554432,"swap":33554432}}"#
        let hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"]
        let b = try bundle(hog, resources: res)
        let run = try bh(["run", "--bundle", b, TestEnv.uniqueID("oomrun")])
        #expect(run.code == 137, "stdout: \(run.stdout) stderr: \(run.stderr)")

        // The same hog, created then watched by `events`: an "oom" record, then the container is gone.
        let b2 = try bundle(["sh", "-c", "sleep 1; exec " + hog.joined(separator: " ")], resources: res, name: "b2")
        let id = TestEnv.uniqueID("oomev")
        #expect(try bh(["create", "--bundle", b2, id]).code == 0)
        defer { _ = try? bh(["delete", "-f", id]) }
        #expect(try bh(["start", id]).code == 0)
        let events = try bh(["events", "--interval", "30s", id], timeout: 30)
        let lines = events.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains(#"{"id":"\#(id)","type":"oom"}"#), "\(events.stdout) \(events.stderr)")
        #expect(lines.first?.contains(#""type":"stats""#) == true)
        #expect(try bh(["state", id]).stdout.contains("\"stopped\""))
    }

    @Test func aBusyLoopAtATenPercentQuotaGetsTenPercent() throws {
        defer { TestEnv.remove(dir) }
        let b = try bundle(["sh", "-c", "while :; do :; done"], resources: #"{"cpu":{"quota":10000,"period":100000}}"#)
        let id = TestEnv.uniqueID("cpu")
        #expect(try bh(["create", "--bundle", b, id]).code == 0)
        defer { _ = try? bh(["delete", "-f", id]) }
        #expect(try bh(["start", id]).code == 0)
        usleep(300_000)
        // Usage from the cgroup (cpuacct on v1, cpu.stat on v2) over ~2 s of wall time.
        func usage() throws -> UInt64 {
            let stats = try bh(["events", "--stats", id])
            let object = try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any]
            let cpu = ((object?["data"] as? [String: Any])?["cpu"] as? [String: Any])?["usage"] as? [String: Any]
            return (cpu?["total"] as? NSNumber)?.uint64Value ?? 0
        }
        let u0 = try usage(), t0 = DispatchTime.now().uptimeNanoseconds
        usleep(2_000_000)
        let u1 = try usage(), t1 = DispatchTime.now().uptimeNanoseconds
        let share = Double(u1 - u0) / Double(t1 - t0)
        print("cpu share at a 10% quota: \(String(format: "%.1f", share * 100))% of one CPU over \(String(format: "%.2f", Double(t1 - t0) / 1e9)) s")
        #expect(share > 0.07 && share < 0.13, "measured \(share * 100)% of one CPU")
    }

    @Test func aForkBombStopsAtPidsMax() throws {
        defer { TestEnv.remove(dir) }
        // The bomb runs in a subshell (busybox sh gives up at the first refused fork); the outer shell then
        // reports what the pids controller saw, from inside the container (with builtins only: no fork is left).
        let script = """
            ( i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done ) 2>/dev/null
            d=/sys/fs/cgroup/pids; [ -d $d ] || d=/sys/fs/cgroup
            read -r events < $d/pids.events; read -r current < $d/pids.current; peak=0
            [ -f $d/pids.peak ] && read -r peak < $d/pids.peak
            echo "events=$events"; echo "current=$current"; echo "peak=$peak"
            exit 0
            """
        let b = try bundle(["sh", "-c", script], resources: #"{"pids":{"limit":16}}"#)
        let r = try bh(["run", "--bundle", b, TestEnv.uniqueID("pids")])
        #expect(r.code == 0, "\(r.stderr)")
        var values: [String: UInt64] = [:]
        for line in r.stdout.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { values[String(kv[0])] = UInt64(kv[1].split(separator: " ").last ?? "") }
        }
        #expect((values["events"] ?? 0) >= 1, "fork refusals counted in pids.events: \(r.stdout)")
        // The shell, the subshell and 14 sleeps made 16; the subshell has gone since.
        #expect((values["current"] ?? 99) == 15, "the bomb filled the cgroup up to pids.max: \(r.stdout)")
        if let peak = values["peak"], peak > 0 { #expect(peak == 16, "\(r.stdout)") }
    }

    @Test func deviceAccessOutsideTheAllowedListIsRefused() throws {
        defer { TestEnv.remove(dir) }
        // The spec's rules: deny everything (the standard devices are added, as runc adds them).
        // /dev is the container's own tmpfs (no nodev), so a node made there is refused only by the cgroup.
        let script = """
            if echo x > /dev/null; then echo null=ok; else echo null=refused; fi
            mknod /dev/zero2 c 1 5 && if head -c 1 /dev/zero2 > /dev/null 2>&1; then echo zero2=ok; else echo zero2=refused; fi
            mknod /dev/mem c 1 1 && if head -c 1 /dev/mem > /dev/null 2>&1; then echo mem=ok; else echo mem=refused; fi
            mknod /dev/loop9 b 7 0 && if head -c 1 /dev/loop9 > /dev/null 2>&1; then echo loop=ok; else echo loop=refused; fi
            """
        let b = try bundle(["sh", "-c", script], resources: #"{"devices":[{"allow":false,"access":"rwm"}]}"#)
        let r = try bh(["run", "--bundle", b, TestEnv.uniqueID("dev")])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n") == ["null=ok", "zero2=ok", "mem=refused", "loop=refused"], "\(r.stdout) \(r.stderr)")
    }

    @Test func updateChangesTheLimitsOfARunningContainer() throws {
        defer { TestEnv.remove(dir) }
        let b = try bundle(["sleep", "30"], resources: #"{"memory":{"limit":33554432,"swap":33554432},"pids":{"limit":10}}"#)
        let id = TestEnv.uniqueID("upd")
        #expect(try bh(["run", "-d", "--bundle", b, id]).code == 0)
        defer { _ = try? bh(["delete", "-f", id]) }
        let limitFile = layout.kind == .unified ? cgroupFile(id, "memory", "memory.max") : cgroupFile(id, "memory", "memory.limit_in_bytes")
        #expect(read(limitFile) == "33554432")
        if layout.kind != .unified && FileManager.default.fileExists(atPath: cgroupFile(id, "memory", "memory.memsw.limit_in_bytes")) {
            // Above memory+swap: refused with the way out named.
            let above = try bh(["update", "--memory", "64m", id])
            #expect(above.code == 1 && above.stderr.contains("memory-swap"), "\(above.stderr)")
        }
        let u = try bh(["update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "20", "--cpu-quota", "50000", id])
        #expect(u.code == 0, "\(u.stderr)")
        #expect(read(limitFile) == "67108864")
        if layout.kind != .unified {
            #expect(read(cgroupFile(id, "memory", "memory.memsw.limit_in_bytes")) == "134217728")
            #expect(read(cgroupFile(id, "cpu", "cpu.cfs_quota_us")) == "50000")
        }
        #expect(read(cgroupFile(id, "pids", "pids.max")) == "20")
        let stats = try bh(["events", "--stats", id]).stdout
        #expect(stats.contains(#""limit":67108864"#), "\(stats)")
        // runc's shape: the same top-level sections as `runc events --stats`.
        let object = try JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [String: Any]
        #expect(object?["type"] as? String == "stats" && object?["id"] as? String == id)
        #expect(Set((object?["data"] as? [String: Any])?.keys.map { $0 } ?? []) ==
                ["blkio", "cpu", "cpuset", "hugetlb", "intel_rdt", "memory", "network_interfaces", "pids"])
        // From a file on stdin too, and a refused value names the field.
        #expect(try bh(["update", "-r", "-", id], stdin: #"{"pids":{"limit":30}}"#).code == 0)
        #expect(read(cgroupFile(id, "pids", "pids.max")) == "30")
        let bad = try bh(["update", "--cpuset-cpus", "99", id])
        #expect(bad.code == 1)
        #expect(bad.stderr.contains("cpu.cpus") && bad.stderr.contains("99"), "\(bad.stderr)")
    }

    @Test func aValueTheKernelRefusesFailsCreateNamingItAndLeavesNothing() throws {
        defer { TestEnv.remove(dir) }
        let b = try bundle(["true"], resources: #"{"cpu":{"cpus":"0-99"}}"#)
        let id = TestEnv.uniqueID("badres")
        let r = try bh(["create", "--bundle", b, id])
        #expect(r.code == 1)
        #expect(r.stderr.contains("linux.resources.cpu.cpus") && r.stderr.contains("0-99"), "\(r.stderr)")
        #expect(try bh(["state", id]).code == 1)
        #expect(!FileManager.default.fileExists(atPath: Cgroup(layout: layout, path: "/bulkhead/\(id)").directory(for: "pids") ?? "/nonexistent"))
    }

    /// `--systemd-cgroup` with `slice:prefix:name` on a host without systemd: the cgroupfs driver at the path
    /// systemd would have used, and the log says so.
    @Test(.enabled(if: !CgroupPath.systemdIsRunning(), "systemd is running here; the fallback is not taken"))
    func systemdCgroupsPathFallsBackToCgroupfs() throws {
        defer { TestEnv.remove(dir) }
        let id = TestEnv.uniqueID("sd")
        let b = try TestEnv.busyboxBundle(at: dir + "/sd", args: ["sleep", "30"]) {
            $0.linux?.cgroupsPath = "bhtest-sub.slice:bh:\(id)"
            $0.linux?.resources = try! JSONDecoder().decode(Spec.Resources.self, from: Data(#"{"pids":{"limit":9}}"#.utf8))
        }
        let r = try bh(["--systemd-cgroup", "--log", dir + "/log.json", "--log-format", "json", "create", "--bundle", b, id])
        #expect(r.code == 0, "\(r.stderr)")
        defer { _ = try? bh(["delete", "-f", id]) }
        let cg = Cgroup(layout: layout, path: "/bhtest.slice/bhtest-sub.slice/bh-\(id).scope")
        #expect(read(cg.directory(for: "pids")! + "/pids.max") == "9")
        let log = (try? String(contentsOfFile: dir + "/log.json", encoding: .utf8)) ?? ""
        #expect(log.contains("systemd is not running") && log.contains("/bhtest.slice/bhtest-sub.slice/bh-\(id).scope"), "\(log)")
        #expect(try bh(["delete", "-f", id]).code == 0)
        #expect(!cg.exists)
        // The slices stay (shared parents, as systemd's would); the test removes its own.
        for controller in layout.v1.map(\.mountPoint) + [layout.unified].compactMap({ $0 }) {
            _ = rmdir(controller + "/bhtest.slice/bhtest-sub.slice"); _ = rmdir(controller + "/bhtest.slice")
        }
    }

    /// The v2 layout on this hybrid host, for real: `bulkhead` in a private mount namespace whose /sys/fs/cgroup is
    /// the host's cgroup2 hierarchy (as bench/start.sh runs). Its only controller here is hugetlb; devices are
    /// BPF. So: the device program refuses a node outside the list, hugetlb.2MB.max is written, and a field whose
    /// controller is missing (memory) fails create naming the field.
    @Test(.enabled(if: CgroupLayout.parse(mountinfo: (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").kind == .hybrid,
                   "needs a hybrid host (cgroup2 beside the v1 controllers) to borrow its cgroup2 hierarchy"))
    func onTheV2LayoutDevicesAreRefusedByTheBPFProgram() throws {
        defer { TestEnv.remove(dir) }
        func inV2Namespace(_ args: [String]) throws -> TestEnv.Result {
            let command = ([TestEnv.bulkhead, "--root", root] + args).map { "'\($0)'" }.joined(separator: " ")
            // Every cgroup mount of the namespace goes (other suites move worker threads of this test process into
            // mount namespaces of their own, which may hold more), then cgroup2 alone at /sys/fs/cgroup.
            let script = """
                awk '$0 ~ / - cgroup2? / {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
                while umount -l /sys/fs/cgroup 2>/dev/null; do :; done
                mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 97
                grep -q ' - cgroup ' /proc/self/mountinfo && { echo 'v1 cgroup mounts left' >&2; exit 98; }
                exec \(command)
                """
            return try TestEnv.run(["/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script])
        }
        let script = """
            if echo x > /dev/null; then echo null=ok; else echo null=refused; fi
            mknod /dev/mem2 c 1 1 && if head -c 1 /dev/mem2 > /dev/null 2>&1; then echo mem=ok; else echo mem=refused; fi
            [ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2=yes
            """
        let hugetlb = FileManager.default.fileExists(atPath: "/sys/kernel/mm/hugepages/hugepages-2048kB")
            && read(layout.unified! + "/cgroup.controllers").split(separator: " ").contains("hugetlb")
        let b = try bundle(["sh", "-c", script + (hugetlb ? "\ncat /sys/fs/cgroup/hugetlb.2MB.max" : "")],
                           resources: #"{"devices":[{"allow":false,"access":"rwm"}]"# + (hugetlb ? #","hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"# : "}"))
        let r = try inV2Namespace(["run", "--bundle", b, TestEnv.uniqueID("v2dev")])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n") == ["null=ok", "mem=refused", "v2=yes"] + (hugetlb ? ["4194304"] : []), "\(r.stdout) \(r.stderr)")
        let b2 = try bundle(["true"], resources: #"{"memory":{"limit":33554432}}"#, name: "b2")
        let refused = try inV2Namespace(["run", "--bundle", b2, TestEnv.uniqueID("v2mem")])
        #expect(refused.code == 1)
        #expect(refused.stderr.contains("linux.resources.memory") && refused.stderr.contains("memory controller"), "\(refused.stderr)")
    }

    /// hugepageLimits on a hybrid host whose hugetlb controller is bound to cgroup2 (this one): written to the
    /// container's cgroup2 directory, and shown by `events --stats`.
    @Test(.enabled(if: {
        let layout = CgroupLayout.parse(mountinfo: (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "")
        guard layout.kind == .hybrid, layout.hierarchy(for: "hugetlb") == nil, let u = layout.unified else { return false }
        return ((try? String(contentsOfFile: u + "/cgroup.controllers", encoding: .utf8)) ?? "").contains("hugetlb")
            && FileManager.default.fileExists(atPath: "/sys/kernel/mm/hugepages/hugepages-2048kB")
    }(), "needs a hybrid host with hugetlb bound to cgroup2 and 2 MB huge pages"))
    func hugetlbBoundToCgroup2OnAHybridHostIsUsed() throws {
        defer { TestEnv.remove(dir) }
        let b = try bundle(["sleep", "30"], resources: #"{"hugepageLimits":[{"pageSize":"2MB","limit":8388608}],"pids":{"limit":5}}"#)
        let id = TestEnv.uniqueID("huge")
        let r = try bh(["create", "--bundle", b, id])
        #expect(r.code == 0, "\(r.stderr)")
        defer { _ = try? bh(["delete", "-f", id]) }
        #expect(read(layout.unified! + "/bulkhead/\(id)/hugetlb.2MB.max") == "8388608")
        #expect(read(cgroupFile(id, "pids", "pids.max")) == "5")
        let stats = try bh(["events", "--stats", id]).stdout
        #expect(stats.contains(#""2MB":{"failcnt":0,"max":8388608,"usage":0}"#), "\(stats)")
    }

    /// The same bundle under `bulkhead` and Debian's `runc`: the cgroup files the container sees must hold the
    /// same values (v1 hierarchies here; devices.list compared as a set, its order is the kernel's).
    @Test(.enabled(if: TestEnv.runc != nil, "needs runc"))
    func sameCgroupFilesAsRunc() throws {
        defer { TestEnv.remove(dir) }
        guard layout.kind != .unified else { return }
        let files = ["memory/memory.limit_in_bytes", "memory/memory.soft_limit_in_bytes", "memory/memory.memsw.limit_in_bytes",
                     "memory/memory.swappiness", "memory/memory.oom_control", "cpu/cpu.shares", "cpu/cpu.cfs_quota_us",
                     "cpu/cpu.cfs_period_us", "cpuset/cpuset.cpus", "cpuset/cpuset.mems", "pids/pids.max",
                     "devices/devices.list", "blkio/blkio.throttle.read_bps_device", "blkio/blkio.throttle.write_iops_device"]
        let probe = "cd /sys/fs/cgroup; for f in \(files.joined(separator: " ")); do while read -r line; do echo \"$f: $line\"; done < $f; done"
        let loop = FileManager.default.fileExists(atPath: "/sys/dev/block/7:0")
        let res = """
            {"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"minor":229,"access":"rw"},{"allow":false,"type":"c","major":1,"minor":9,"access":"w"}],
             "memory":{"limit":33554432,"reservation":16777216,"swap":67108864,"swappiness":30},
             "cpu":{"shares":512,"quota":20000,"period":50000,"cpus":"0","mems":"0"},
             "pids":{"limit":42}\(loop ? #","blockIO":{"throttleReadBpsDevice":[{"major":7,"minor":0,"rate":1048576}],"throttleWriteIOPSDevice":[{"major":7,"minor":0,"rate":100}]}"# : "")}
            """
        let b = try bundle(["sh", "-c", probe], resources: res)
        let ours = try TestEnv.run([TestEnv.bulkhead, "--root", dir + "/bh", "run", "--bundle", b, TestEnv.uniqueID("cmp")])
        let theirs = try TestEnv.run([TestEnv.runc!, "--root", dir + "/runc", "run", "--bundle", b, TestEnv.uniqueID("cmp")])
        #expect(ours.code == 0 && theirs.code == 0, "bulkhead: \(ours.stderr)\nrunc: \(theirs.stderr)")
        let a = Set(ours.stdout.split(separator: "\n").map(String.init))
        let r = Set(theirs.stdout.split(separator: "\n").map(String.init))
        #expect(a.count > 20, "\(ours.stdout)")
        #expect(a == r, "only bulkhead: \(a.subtracting(r).sorted())\nonly runc: \(r.subtracting(a).sorted())")
    }
}
