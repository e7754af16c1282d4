import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// A container's resource usage: the `data` of an `events` "stats" record, in runc's JSON shape (its
/// types.Stats: cpu, memory, pids, blkio, hugetlb). The one stats type of the runtime (`Runtime` names it
/// `ContainerStats`); each backend fills what it can.
public struct CgroupStats: Codable, Sendable, Equatable {
    public var cpu = CPU()
    public var memory = Memory()
    public var pids = Pids()
    public var blkio = Blkio()
    public var hugetlb: [String: Hugetlb] = [:]
    public var cpuset = CPUSet()
    /// Always empty here (runc fills it on hosts with Intel RDT); kept for the shape.
    public var intelRdt = IntelRdt()
    /// Always null here (runc reads the container's network namespace); kept for the shape.
    public var networkInterfaces: [String]? = nil

    public init() {}

    enum CodingKeys: String, CodingKey {
        case cpu, memory, pids, blkio, hugetlb, cpuset
        case intelRdt = "intel_rdt", networkInterfaces = "network_interfaces"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cpu, forKey: .cpu); try c.encode(memory, forKey: .memory); try c.encode(pids, forKey: .pids)
        try c.encode(blkio, forKey: .blkio); try c.encode(hugetlb, forKey: .hugetlb); try c.encode(cpuset, forKey: .cpuset)
        try c.encode(intelRdt, forKey: .intelRdt)
        if let networkInterfaces { try c.encode(networkInterfaces, forKey: .networkInterfaces) } else { try c.encodeNil(forKey: .networkInterfaces) }
    }

    public struct IntelRdt: Codable, Sendable, Equatable {}

    public struct CPUSet: Codable, Sendable, Equatable {
        public var cpus: [UInt16]?
        public var mems: [UInt16]?
    }

    public struct CPU: Codable, Sendable, Equatable {
        public var usage = Usage()
        public var throttling = Throttling()
        public struct Usage: Codable, Sendable, Equatable {
            /// Nanoseconds.
            public var total: UInt64 = 0
            public var percpu: [UInt64]?
            public var percpuKernel: [UInt64]?
            public var percpuUser: [UInt64]?
            public var kernel: UInt64 = 0
            public var user: UInt64 = 0
            enum CodingKeys: String, CodingKey {
                case total, percpu, kernel, user
                case percpuKernel = "percpu_kernel", percpuUser = "percpu_user"
            }
        }
        public struct Throttling: Codable, Sendable, Equatable {
            public var periods: UInt64 = 0
            public var throttledPeriods: UInt64 = 0
            /// Nanoseconds.
            public var throttledTime: UInt64 = 0
        }
    }

    public struct MemoryEntry: Codable, Sendable, Equatable {
        public var limit: UInt64 = 0
        public var usage: UInt64 = 0
        public var max: UInt64 = 0
        public var failcnt: UInt64 = 0
    }

    public struct Memory: Codable, Sendable, Equatable {
        public var cache: UInt64 = 0
        public var usage = MemoryEntry()
        public var swap = MemoryEntry()
        public var kernel = MemoryEntry()
        public var kernelTCP = MemoryEntry()
        public var raw: [String: UInt64]?
    }

    public struct Pids: Codable, Sendable, Equatable {
        public var current: UInt64 = 0
        /// 0: no limit.
        public var limit: UInt64 = 0
    }

    public struct BlkioEntry: Codable, Sendable, Equatable {
        public var major: UInt64
        public var minor: UInt64
        public var op: String
        public var value: UInt64
    }

    public struct Blkio: Codable, Sendable, Equatable {
        public var ioServiceBytesRecursive: [BlkioEntry]?
        public var ioServicedRecursive: [BlkioEntry]?
    }

    public struct Hugetlb: Codable, Sendable, Equatable {
        public var usage: UInt64 = 0
        public var max: UInt64 = 0
        public var failcnt: UInt64 = 0
    }
}

extension Cgroup {
    // MARK: reading cgroup files

    static func number(_ path: String?) -> UInt64? {
        guard let path, let text = try? read(path) else { return nil }
        let t = text.trimmed
        return t == "max" ? nil : UInt64(t)
    }

    /// `key value` lines (cpu.stat, memory.stat, memory.events, cpuacct.stat).
    static func keyed(_ path: String?) -> [String: UInt64] {
        guard let path, let text = try? read(path) else { return [:] }
        var out: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: " ")
            if kv.count == 2, let v = UInt64(kv[1]) { out[String(kv[0])] = v }
        }
        return out
    }

    /// Huge page sizes of this kernel as cgroup files name them (2MB, 1GB).
    static func hugePageSizes() -> [String] {
        guard let dir = try? FileDescriptor.open("/sys/kernel/mm/hugepages", O_RDONLY | O_DIRECTORY),
              let names = try? dir.entries() else { return [] }
        return names.compactMap { name -> String? in
            guard name.hasPrefix("hugepages-"), name.hasSuffix("kB"), let kb = UInt64(name.dropFirst(10).dropLast(2)) else { return nil }
            if kb >= 1 << 20 { return "\(kb >> 20)GB" }
            if kb >= 1 << 10 { return "\(kb >> 10)MB" }
            return "\(kb)KB"
        }.sorted()
    }

    /// The container's usage, read from whichever layout the host has.
    public func stats() -> CgroupStats {
        layout.kind == .unified ? statsV2() : statsV1()
    }

    func statsV1() -> CgroupStats {
        var s = CgroupStats()
        func dir(_ c: String) -> String? { layout.hierarchy(for: c).map { fsRoot + $0.mountPoint + path } }
        if let d = dir("cpuacct") {
            s.cpu.usage.total = Self.number(d + "/cpuacct.usage") ?? 0
            if let text = try? Self.read(d + "/cpuacct.usage_percpu") {
                s.cpu.usage.percpu = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { UInt64($0) }
            }
            // cpuacct.usage_all: "cpu user system" then one line per CPU, in nanoseconds.
            if let text = try? Self.read(d + "/cpuacct.usage_all") {
                var kernel: [UInt64] = [], user: [UInt64] = []
                for line in text.split(separator: "\n").dropFirst() {
                    let f = line.split(separator: " ")
                    if f.count == 3, let u = UInt64(f[1]), let k = UInt64(f[2]) { user.append(u); kernel.append(k) }
                }
                if !user.isEmpty { s.cpu.usage.percpuUser = user; s.cpu.usage.percpuKernel = kernel }
            }
            // cpuacct.stat counts clock ticks.
            let ticks = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
            let stat = Self.keyed(d + "/cpuacct.stat")
            s.cpu.usage.user = (stat["user"] ?? 0) * (1_000_000_000 / ticks)
            s.cpu.usage.kernel = (stat["system"] ?? 0) * (1_000_000_000 / ticks)
        }
        if let d = dir("cpu") {
            let stat = Self.keyed(d + "/cpu.stat")
            s.cpu.throttling = .init(periods: stat["nr_periods"] ?? 0, throttledPeriods: stat["nr_throttled"] ?? 0,
                                     throttledTime: stat["throttled_time"] ?? 0)
        }
        if let d = dir("memory") {
            let raw = Self.keyed(d + "/memory.stat")
            s.memory.raw = raw
            s.memory.cache = raw["cache"] ?? 0
            func entry(_ prefix: String) -> CgroupStats.MemoryEntry {
                .init(limit: Self.number(d + "/\(prefix)limit_in_bytes") ?? 0, usage: Self.number(d + "/\(prefix)usage_in_bytes") ?? 0,
                      max: Self.number(d + "/\(prefix)max_usage_in_bytes") ?? 0, failcnt: Self.number(d + "/\(prefix)failcnt") ?? 0)
            }
            s.memory.usage = entry("memory.")
            s.memory.swap = entry("memory.memsw.")
            s.memory.kernel = entry("memory.kmem.")
            s.memory.kernelTCP = entry("memory.kmem.tcp.")
        }
        if let d = dir("pids") {
            s.pids = .init(current: Self.number(d + "/pids.current") ?? 0, limit: Self.number(d + "/pids.max") ?? 0)
        }
        if let d = dir("cpuset") {
            s.cpuset = .init(cpus: Self.cpuList(d + "/cpuset.cpus"), mems: Self.cpuList(d + "/cpuset.mems"))
        }
        if let d = dir("blkio") {
            s.blkio.ioServiceBytesRecursive = Self.blkioEntries(d + "/blkio.throttle.io_service_bytes_recursive")
            s.blkio.ioServicedRecursive = Self.blkioEntries(d + "/blkio.throttle.io_serviced_recursive")
        }
        if dir("hugetlb") == nil, layout.kind == .hybrid, let u = layout.unified.map({ fsRoot + $0 + path }) {
            for size in Self.hugePageSizes() where access(u + "/hugetlb.\(size).current", F_OK) == 0 {
                s.hugetlb[size] = .init(usage: Self.number(u + "/hugetlb.\(size).current") ?? 0,
                                        max: Self.number(u + "/hugetlb.\(size).max") ?? 0,
                                        failcnt: Self.keyed(u + "/hugetlb.\(size).events")["max"] ?? 0)
            }
        }
        if let d = dir("hugetlb") {
            for size in Self.hugePageSizes() {
                s.hugetlb[size] = .init(usage: Self.number(d + "/hugetlb.\(size).usage_in_bytes") ?? 0,
                                        max: Self.number(d + "/hugetlb.\(size).max_usage_in_bytes") ?? 0,
                                        failcnt: Self.number(d + "/hugetlb.\(size).failcnt") ?? 0)
            }
        }
        return s
    }

    /// A cpu or node list (`0-2,5`) expanded; nil where the file is missing or empty.
    static func cpuList(_ path: String) -> [UInt16]? {
        guard let text = try? read(path), !text.trimmed.isEmpty else { return nil }
        var out: [UInt16] = []
        for part in text.trimmed.split(separator: ",") {
            let range = part.split(separator: "-")
            if range.count == 2, let a = UInt16(range[0]), let b = UInt16(range[1]), a <= b { out += Array(a...b) }
            else if let a = UInt16(part) { out.append(a) }
        }
        return out
    }

    /// `8:0 Read 4096` lines (v1 blkio).
    static func blkioEntries(_ path: String) -> [CgroupStats.BlkioEntry]? {
        guard let text = try? read(path) else { return nil }
        var out: [CgroupStats.BlkioEntry] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 3 else { continue }
            let dev = f[0].split(separator: ":")
            guard dev.count == 2, let major = UInt64(dev[0]), let minor = UInt64(dev[1]), let v = UInt64(f[2]) else { continue }
            out.append(.init(major: major, minor: minor, op: String(f[1]), value: v))
        }
        return out
    }

    func statsV2() -> CgroupStats {
        var s = CgroupStats()
        guard let d = layout.unified.map({ fsRoot + $0 + path }) else { return s }
        let cpu = Self.keyed(d + "/cpu.stat")
        s.cpu.usage.total = (cpu["usage_usec"] ?? 0) * 1000
        s.cpu.usage.user = (cpu["user_usec"] ?? 0) * 1000
        s.cpu.usage.kernel = (cpu["system_usec"] ?? 0) * 1000
        s.cpu.throttling = .init(periods: cpu["nr_periods"] ?? 0, throttledPeriods: cpu["nr_throttled"] ?? 0,
                                 throttledTime: (cpu["throttled_usec"] ?? 0) * 1000)
        let raw = Self.keyed(d + "/memory.stat")
        if !raw.isEmpty { s.memory.raw = raw }
        s.memory.cache = raw["file"] ?? 0
        let events = Self.keyed(d + "/memory.events")
        s.memory.usage = .init(limit: Self.number(d + "/memory.max") ?? UInt64(Int64.max), usage: Self.number(d + "/memory.current") ?? 0,
                               max: Self.number(d + "/memory.peak") ?? 0, failcnt: events["max"] ?? 0)
        let swapUsage = Self.number(d + "/memory.swap.current") ?? 0
        // As runc: swap is reported as memory+swap, like v1's memsw.
        s.memory.swap = .init(limit: Self.number(d + "/memory.swap.max") ?? UInt64(Int64.max), usage: swapUsage + s.memory.usage.usage,
                              max: 0, failcnt: Self.keyed(d + "/memory.swap.events")["max"] ?? 0)
        s.pids = .init(current: Self.number(d + "/pids.current") ?? 0, limit: Self.number(d + "/pids.max") ?? 0)
        s.cpuset = .init(cpus: Self.cpuList(d + "/cpuset.cpus.effective"), mems: Self.cpuList(d + "/cpuset.mems.effective"))
        if let text = try? Self.read(d + "/io.stat") {
            var bytes: [CgroupStats.BlkioEntry] = [], ios: [CgroupStats.BlkioEntry] = []
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard let devText = f.first else { continue }
                let dev = devText.split(separator: ":")
                guard dev.count == 2, let major = UInt64(dev[0]), let minor = UInt64(dev[1]) else { continue }
                for kv in f.dropFirst() {
                    let p = kv.split(separator: "=")
                    guard p.count == 2, let v = UInt64(p[1]) else { continue }
                    switch p[0] {
                    case "rbytes": bytes.append(.init(major: major, minor: minor, op: "Read", value: v))
                    case "wbytes": bytes.append(.init(major: major, minor: minor, op: "Write", value: v))
                    case "rios": ios.append(.init(major: major, minor: minor, op: "Read", value: v))
                    case "wios": ios.append(.init(major: major, minor: minor, op: "Write", value: v))
                    default: break
                    }
                }
            }
            s.blkio.ioServiceBytesRecursive = bytes
            s.blkio.ioServicedRecursive = ios
        }
        for size in Self.hugePageSizes() where access(d + "/hugetlb.\(size).current", F_OK) == 0 {
            s.hugetlb[size] = .init(usage: Self.number(d + "/hugetlb.\(size).current") ?? 0,
                                    max: Self.number(d + "/hugetlb.\(size).max") ?? 0,
                                    failcnt: Self.keyed(d + "/hugetlb.\(size).events")["max"] ?? 0)
        }
        return s
    }

    // MARK: OOM

    /// How many processes of the cgroup the OOM killer has killed (v1 memory.oom_control's oom_kill, v2
    /// memory.events' oom_kill); nil where the kernel does not count them.
    public func oomKillCount() -> UInt64? {
        if layout.kind == .unified {
            guard let d = layout.unified.map({ fsRoot + $0 + path }) else { return nil }
            return Self.keyed(d + "/memory.events")["oom_kill"]
        }
        guard let d = layout.hierarchy(for: "memory").map({ fsRoot + $0.mountPoint + path }) else { return nil }
        return Self.keyed(d + "/memory.oom_control")["oom_kill"]
    }
}
