@testable import Cgroups
import Foundation
import LinuxOS
import OCIRuntime
import Runtime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `linux.resources` without a kernel: decoding, the conversions runc and crun use, and the file-level
/// behaviour of the v2 writer on a fake cgroupfs tree (this host's controllers are bound to v1).
@Suite struct ResourceUnitTests {
    @Test func decodingIsLenientAboutFloatsAndNamesTheField() throws {
        let r = try LinuxResources.decode(Array(#"{"memory":{"limit":1.048576e+08,"swap":9.2233720368547758e+18,"swappiness":-1},"pids":{"limit":5}}"#.utf8))
        #expect(r.memory?.limit == 104_857_600)
        #expect(r.memory?.swap == Int64.max)
        #expect(r.memory?.swappiness == nil)
        #expect(r.pids?.limit == 5)
        #expect(throws: CgroupError.self) { try LinuxResources.decode(Array(#"{"memory":{"limit":"lots"}}"#.utf8)) }
        do {
            _ = try LinuxResources.decode(Array(#"{"cpu":{"shares":1.5}}"#.utf8))
            Issue.record("a fractional cpu.shares was accepted")
        } catch let e as CgroupError {
            #expect(e.message.contains("cpu.shares"), "\(e.message)")
        }
    }

    @Test func conversionsMatchRuncAndCrun() throws {
        #expect(ResourceWriter.cpuWeight(fromShares: 2) == 1)
        #expect(ResourceWriter.cpuWeight(fromShares: 1024) == 100)
        #expect(ResourceWriter.cpuWeight(fromShares: 262_144) == 10_000)
        #expect(ResourceWriter.cpuWeight(fromShares: 512) == 59)
        #expect(ResourceWriter.ioWeight(fromBlkio: 10) == 1)
        #expect(ResourceWriter.ioWeight(fromBlkio: 1000) == 10_000)
        #expect(try ResourceWriter.v2Swap(swap: 200, memory: 100) == 100)
        #expect(try ResourceWriter.v2Swap(swap: 0, memory: -1) == -1)
        #expect(throws: CgroupError.self) { try ResourceWriter.v2Swap(swap: 50, memory: 100) }
        #expect(throws: CgroupError.self) { try ResourceWriter.v2Swap(swap: 50, memory: 0) }
    }

    @Test func deviceRulesAreCheckedAndGetTheStandardDevices() throws {
        let rules = try DeviceAccessRule.effective([.init(allow: false, access: "rwm"), .init(allow: true, type: "c", major: 10, minor: 229, access: "wr")])
        #expect(rules.first?.v1String == "a *:* rwm")
        #expect(rules[1].v1String == "c 10:229 rw")
        #expect(rules.count == 2 + DeviceAccessRule.defaults.count)
        #expect(throws: CgroupError.self) { try DeviceAccessRule.effective([.init(allow: true, type: "x")]) }
        #expect(throws: CgroupError.self) { try DeviceAccessRule.effective([.init(allow: true, type: "c", access: "rwx")]) }
    }

    /// Every jump of the generated program lands inside it, and the last instruction is an exit.
    @Test func deviceProgramJumpsStayInside() {
        let program = DeviceFilter.program(for: DeviceAccessRule.defaults + [.init(allow: false, kind: .char, major: 1, minor: 3, access: "w")])
        #expect(program.last == DeviceFilter.Instruction(code: 0x95, dst: 0, src: 0, offset: 0, imm: 0))
        for (i, insn) in program.enumerated() where insn.code & 0x07 == 0x05 && insn.code != 0x95 {
            let target = i + 1 + Int(insn.offset)
            #expect(target > i && target < program.count, "jump at \(i) to \(target)")
        }
    }

    /// A fake cgroup2 tree: the directory, its cgroup.controllers and empty interface files.
    func fakeV2(_ controllers: String, files: [String]) throws -> (Cgroup, String, String) {
        let fake = "/tmp/bulkhead-fake-v2-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let dir = fake + "/sys/fs/cgroup/bulkhead/c1"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try controllers.write(toFile: dir + "/cgroup.controllers", atomically: false, encoding: .utf8)
        for f in files { _ = FileManager.default.createFile(atPath: dir + "/" + f, contents: nil) }
        let layout = CgroupLayout.parse(mountinfo: CgroupPathTests.unified)
        return (Cgroup(layout: layout, path: "/bulkhead/c1", fsRoot: fake), dir, fake)
    }

    @Test func v2WriterWritesTheUnifiedFiles() throws {
        let files = ["cpu.weight", "cpu.max", "cpuset.cpus", "cpuset.mems", "memory.max", "memory.swap.max", "memory.low",
                     "pids.max", "io.weight", "io.max", "hugetlb.2MB.max", "memory.oom.group"]
        let (cg, dir, fake) = try fakeV2("cpuset cpu io memory hugetlb pids", files: files)
        defer { TestEnv.remove(fake) }
        let json = #"""
            {"cpu":{"shares":1024,"quota":10000,"period":100000,"cpus":"0-1","mems":"0"},
             "memory":{"limit":33554432,"swap":67108864,"reservation":16777216,"kernel":1},
             "pids":{"limit":20},
             "blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":7,"minor":0,"rate":1048576}]},
             "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
             "unified":{"memory.oom.group":"1"}}
            """#
        let warnings = WarningLog()
        try CgroupResourceApplier(warn: { warnings.add($0) }).apply(ResourceRequest(json: Array(json.utf8)), to: cg)
        func file(_ name: String) throws -> String { try String(contentsOfFile: dir + "/" + name, encoding: .utf8) }
        #expect(try file("cpu.weight") == "100")
        #expect(try file("cpu.max") == "10000 100000")
        #expect(try file("cpuset.cpus") == "0-1")
        #expect(try file("memory.max") == "33554432")
        #expect(try file("memory.swap.max") == "33554432")
        #expect(try file("memory.low") == "16777216")
        #expect(try file("pids.max") == "20")
        #expect(try file("io.weight") == String(ResourceWriter.ioWeight(fromBlkio: 500)))
        #expect(try file("io.max") == "7:0 rbps=1048576")
        #expect(try file("hugetlb.2MB.max") == "4194304")
        #expect(try file("memory.oom.group") == "1")
        #expect(warnings.all.contains { $0.contains("kernel") })
    }

    @Test func v2WriterRefusesWhatV2CannotHonourNamingTheField() throws {
        let (cg, _, fake) = try fakeV2("memory pids", files: ["memory.max", "pids.max"])
        defer { TestEnv.remove(fake) }
        let cases: [(String, String)] = [
            (#"{"cpu":{"quota":1000}}"#, "cpu controller"),
            (#"{"cpu":{"realtimeRuntime":1000}}"#, "realtime"),
            (#"{"network":{"classID":1}}"#, "linux.resources.network"),
            (#"{"unified":{"memory.nonexistent":"1"}}"#, "memory.nonexistent"),
            (#"{"pids":{"limit":-5}, "hugepageLimits":[{"pageSize":"2MB","limit":1}]}"#, "hugepageLimits"),
        ]
        for (json, expected) in cases {
            do {
                try CgroupResourceApplier().apply(ResourceRequest(json: Array(json.utf8)), to: cg)
                Issue.record("accepted \(json)")
            } catch let e as CgroupError {
                #expect(e.message.contains(expected), "\(json): \(e.message)")
            }
        }
    }

    @Test func unifiedKeysOnAV1OnlyHostAreRefused() throws {
        let legacy = CgroupLayout.parse(mountinfo: CgroupPathTests.hybrid.split(separator: "\n").filter { !$0.contains("cgroup2") }.joined(separator: "\n"))
        let cg = Cgroup(layout: legacy, path: "/bulkhead/none", fsRoot: "/nonexistent-fake")
        var r = LinuxResources()
        r.unified = ["memory.high": "1"]
        do {
            try CgroupResourceApplier().apply(r, to: cg, update: true)
            Issue.record("unified accepted on v1")
        } catch let e as CgroupError {
            #expect(e.message.contains("linux.resources.unified") && e.message.contains("cgroup v2"), "\(e.message)")
        }
        r = LinuxResources()
        r.hugepageLimits = try JSONDecoder().decode([LinuxResources.HugepageLimit].self, from: Data(#"[{"pageSize":"2MB","limit":1}]"#.utf8))
        #expect(throws: CgroupError.self) { try CgroupResourceApplier().apply(r, to: cg, update: true) }
    }
}

final class WarningLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

/// The v2 device controller for real: a BPF_PROG_TYPE_CGROUP_DEVICE program loaded and attached to a cgroup in
/// this host's cgroup2 hierarchy (device filtering on v2 is BPF only and works with no controllers bound).
@Suite(.enabled(if: TestEnv.isRoot && TestEnv.busybox != nil, "needs root (bpf, cgroup2) and busybox-static"),
       .enabled(if: CgroupLayout.parse(mountinfo: (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").unified != nil,
                "needs a cgroup2 hierarchy"))
struct DeviceFilterKernelTests {
    @Test func aProcessInTheCgroupIsRefusedDevicesOutsideTheList() throws {
        let layout = try CgroupLayout.detect()
        let path = "/bulkhead-test-bpf-\(getpid())"
        let dir = layout.unified! + path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { _ = rmdir(dir) }
        let scratch = try TestEnv.scratch("bpf")
        defer { TestEnv.remove(scratch) }
        // Only /dev/null (c 1:3) may be used; no mknod at all.
        let program = DeviceFilter.program(for: [.init(allow: true, kind: .char, major: 1, minor: 3, access: "rw")])
        try DeviceFilter.attach(program, toCgroup: dir)
        let cgroupFD = try FileDescriptor.open(dir, O_RDONLY | O_DIRECTORY)
        let attached = try DeviceFilter.attachedPrograms(cgroupFD: cgroupFD.raw)
        #expect(attached.count == 1)
        let script = """
            echo $$ > \(dir)/cgroup.procs || exit 99
            if echo x > /dev/null; then echo null=ok; else echo null=refused; fi
            if head -c 1 /dev/zero > /dev/null 2>&1; then echo zero=ok; else echo zero=refused; fi
            if \(TestEnv.busybox!) mknod \(scratch)/node c 1 5 2>/dev/null; then echo mknod=ok; else echo mknod=refused; fi
            """
        let r = try TestEnv.run([TestEnv.busybox!, "sh", "-c", script])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n") == ["null=ok", "zero=refused", "mknod=refused"], "\(r.stdout) \(r.stderr)")
        // Outside the cgroup the same calls work (the filter is the cgroup's, not the host's).
        let outside = try TestEnv.run([TestEnv.busybox!, "sh", "-c", "head -c 1 /dev/zero > /dev/null && echo zero=ok"])
        #expect(outside.stdout.contains("zero=ok"))
        // Replacing the filter (update) leaves exactly one program attached; the usual spec (deny everything,
        // then the standard devices) and an allow-everything rule pass the verifier too.
        for rules in [try DeviceAccessRule.effective([.init(allow: false, access: "rwm")]),
                      try DeviceAccessRule.effective([.init(allow: true, access: "rwm")]),
                      try DeviceAccessRule.effective([.init(allow: true), .init(allow: false, type: "b", major: 7, access: "rw")])] {
            try DeviceFilter.attach(DeviceFilter.program(for: rules), toCgroup: dir, replacing: true)
            #expect(try DeviceFilter.attachedPrograms(cgroupFD: cgroupFD.raw).count == 1)
        }
    }
}

/// A tier without `update` of its own says so (the microVM tier today).
@Suite struct BackendUpdateDefaultTests {
    struct NoUpdateBackend: Backend {
        let name = "example"
        func create(_ request: CreateRequest, record: inout ContainerRecord, directory: ContainerDirectory) throws {}
        func start(_ record: inout ContainerRecord, directory: ContainerDirectory) throws {}
        func status(of record: ContainerRecord, directory: ContainerDirectory) -> ContainerStatus { .running }
        func kill(_ record: ContainerRecord, signal: Int32, all: Bool) throws {}
        func delete(_ record: ContainerRecord, directory: ContainerDirectory, force: Bool) throws {}
        func exec(_ record: ContainerRecord, _ request: ExecRequest) throws -> Int32 { 0 }
        func pause(_ record: ContainerRecord) throws {}
        func resume(_ record: ContainerRecord) throws {}
        func processes(_ record: ContainerRecord) throws -> [Int32] { [] }
        func stats(_ record: ContainerRecord) throws -> ContainerStats { ContainerStats() }
        func wait(forChild pid: Int32) -> Int32 { 0 }
    }

    @Test func updateIsRefusedNamingTheTier() throws {
        let record = ContainerRecord(id: "c1", backend: "example", bundle: "/b", rootfs: "/b/rootfs", created: "now")
        do {
            try NoUpdateBackend().update(record, resources: LinuxResources())
            Issue.record("update was accepted")
        } catch let e as RuntimeError {
            #expect(e.message.contains("not supported by the example tier") && e.message.contains("c1"), "\(e.message)")
        }
    }
}
