import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Applies `linux.resources` through the cgroup files of whichever layout the host has: the v2 writer on a
/// unified host, the v1 writer (one hierarchy per controller) on a legacy or hybrid host. A value the kernel
/// refuses, a controller the host lacks, or a field the layout cannot honour is an error naming the field and
/// the value; fields the kernel has retired (kernel memory) are ignored with a warning, as runc does.
public struct CgroupResourceApplier: ResourceApplier {
    public let warn: @Sendable (String) -> Void

    public init(warn: @escaping @Sendable (String) -> Void = { _ in }) { self.warn = warn }

    public func apply(_ request: ResourceRequest, to cgroup: Cgroup) throws {
        try apply(try LinuxResources.decode(request.json), to: cgroup, update: false)
    }

    /// With `update`, only the fields given are changed (`bulkhead update`); otherwise the device rules are
    /// always written (deny by default plus the standard devices), as for a new container.
    public func apply(_ r: LinuxResources, to cgroup: Cgroup, update: Bool) throws {
        let writer = ResourceWriter(cgroup: cgroup, warn: warn)
        if cgroup.layout.kind == .unified {
            try writer.applyV2(r, update: update)
        } else {
            try writer.applyV1(r, update: update)
        }
    }
}

/// The file-level work of the two layouts.
struct ResourceWriter {
    let cgroup: Cgroup
    let warn: @Sendable (String) -> Void

    // MARK: helpers

    /// Writes `value` to `dir/file`, turning a refusal into an error that names the spec field and value.
    func write(_ field: String, _ given: CustomStringConvertible, _ dir: String, _ file: String, _ value: String) throws {
        do { try Cgroup.write(dir + "/" + file, value) } catch let e as SystemError {
            if e.errno == ENOENT {
                throw CgroupError("linux.resources.\(field) \(given): this kernel has no \(file) in \(dir) (the setting is not available on this host; remove it)")
            }
            throw CgroupError("linux.resources.\(field) \(given): the kernel refused \"\(value)\" for \(dir)/\(file): \(e.reason)")
        }
    }

    func exists(_ dir: String, _ file: String) -> Bool { access(dir + "/" + file, F_OK) == 0 }

    func readNumber(_ path: String) -> UInt64? { (try? Cgroup.read(path)).flatMap { UInt64($0.trimmed) } }

    /// The v1 directory of `controller`, or an error naming the field that needs it.
    func v1Directory(_ controller: String, for field: String) throws -> String {
        guard let hierarchy = cgroup.layout.hierarchy(for: controller) else {
            throw CgroupError("linux.resources.\(field): this host has no \(controller) cgroup controller (mounted v1 controllers: \(cgroup.layout.v1.flatMap(\.controllers).joined(separator: ", "))); remove the setting or mount the controller")
        }
        return cgroup.fsRoot + hierarchy.mountPoint + cgroup.path
    }

    /// On a hybrid host, a controller that no v1 hierarchy carries may be bound to the cgroup2 hierarchy: then
    /// it is enabled down to the container's cgroup2 directory, which is returned. nil where cgroup2 lacks it too.
    func hybridUnifiedDirectory(_ controller: String) throws -> String? {
        guard cgroup.layout.kind == .hybrid, let mount = cgroup.layout.unified.map({ cgroup.fsRoot + $0 }) else { return nil }
        guard v2Controllers(mount).contains(controller) else { return nil }
        var current = mount
        for component in cgroup.path.split(separator: "/") {
            do { try Cgroup.write(current + "/cgroup.subtree_control", "+" + controller) } catch let e as SystemError {
                throw CgroupError("linux.resources: enabling the \(controller) controller (bound to cgroup v2 on this hybrid host) in \(current)/cgroup.subtree_control failed: \(e.reason)")
            }
            current += "/"
            current += component   // two appends: String + Substring is a generic `+` with run-time type lookups
        }
        return current
    }

    // MARK: cgroup v1

    func applyV1(_ r: LinuxResources, update: Bool) throws {
        if let cpu = r.cpu {
            if cpu.cpus != nil || cpu.mems != nil {
                let dir = try v1Directory("cpuset", for: "cpu.cpus")
                if let cpus = cpu.cpus, !cpus.isEmpty { try write("cpu.cpus", "\"\(cpus)\"", dir, "cpuset.cpus", cpus) }
                if let mems = cpu.mems, !mems.isEmpty { try write("cpu.mems", "\"\(mems)\"", dir, "cpuset.mems", mems) }
            }
            try v1CPU(cpu)
        }
        if let memory = r.memory { try v1Memory(memory, update: update) }
        if let pids = r.pids, pids.limit != 0 {   // 0: not set (as runc)
            let dir = try v1Directory("pids", for: "pids.limit")
            try write("pids.limit", pids.limit, dir, "pids.max", pids.limit > 0 ? String(pids.limit) : "max")
        }
        if let io = r.blockIO { try v1BlockIO(io) }
        if let pages = r.hugepageLimits, !pages.isEmpty {
            if cgroup.layout.hierarchy(for: "hugetlb") == nil, let dir = try hybridUnifiedDirectory("hugetlb") {
                // A hybrid host whose hugetlb controller is bound to cgroup2 (as this one): its v2 files.
                for (i, p) in pages.enumerated() {
                    try write("hugepageLimits[\(i)] (\(p.pageSize))", p.limit, dir, "hugetlb.\(p.pageSize).max", String(p.limit))
                }
            } else {
                let dir = try v1Directory("hugetlb", for: "hugepageLimits")
                for (i, p) in pages.enumerated() {
                    try write("hugepageLimits[\(i)] (\(p.pageSize))", p.limit, dir, "hugetlb.\(p.pageSize).limit_in_bytes", String(p.limit))
                }
            }
        }
        if let net = r.network {
            if let classID = net.classID {
                let dir = try v1Directory("net_cls", for: "network.classID")
                try write("network.classID", classID, dir, "net_cls.classid", String(classID))
            }
            if let prios = net.priorities, !prios.isEmpty {
                let dir = try v1Directory("net_prio", for: "network.priorities")
                for (i, p) in prios.enumerated() {
                    try write("network.priorities[\(i)]", "\(p.name)=\(p.priority)", dir, "net_prio.ifpriomap", "\(p.name) \(p.priority)")
                }
            }
        }
        if let rdma = r.rdma, !rdma.isEmpty {
            let dir = cgroup.layout.hierarchy(for: "rdma") == nil ? try hybridUnifiedDirectory("rdma") ?? v1Directory("rdma", for: "rdma")
                : try v1Directory("rdma", for: "rdma")
            for (device, limit) in rdma.sorted(by: { $0.key < $1.key }) {
                try write("rdma[\"\(device)\"]", "", dir, "rdma.max", Self.rdmaLine(device, limit))
            }
        }
        if (!update || r.devices != nil) && cgroup.layout.hierarchy(for: "devices") == nil && (r.devices ?? []).isEmpty {
            // Nothing asked for, and no controller to give the defaults with: say so rather than refuse to run.
            warn("this host has no devices cgroup controller: the container's device access is not restricted by a cgroup")
        } else if update && r.devices != nil {
            // v1 can only be rewritten from "deny all", which would refuse the running processes every device
            // for a moment (runc's update does not change devices either). v2 swaps the BPF program atomically.
            throw CgroupError("linux.resources.devices: the device rules of a running container cannot be changed on cgroup v1 (it would briefly refuse every device to its processes); recreate the container with the new rules")
        } else if !update {
            let rules = try DeviceAccessRule.effective(r.devices)
            let dir = try v1Directory("devices", for: "devices")
            // Start from "nothing allowed", then the rules in order (the kernel evaluates them as v1 always has).
            try write("devices", "(deny all)", dir, "devices.deny", "a")
            for (i, rule) in rules.enumerated() {
                let name = i < (r.devices?.count ?? 0) ? "devices[\(i)]" : "devices (runc's standard device \(rule.v1String))"
                try write(name, "\"\(rule.v1String)\"", dir, rule.allow ? "devices.allow" : "devices.deny", rule.v1String)
            }
        }
        if let unified = r.unified, !unified.isEmpty {
            guard cgroup.layout.kind == .hybrid, let mount = cgroup.layout.unified else {
                throw CgroupError("linux.resources.unified: this host has no cgroup v2 hierarchy (cgroup v1 only); the unified key/values (\(unified.keys.sorted().joined(separator: ", "))) need cgroup v2: remove them or use the v1 fields")
            }
            try writeUnified(unified, dir: cgroup.fsRoot + mount + cgroup.path)
        }
    }

    func v1CPU(_ cpu: LinuxResources.CPU) throws {
        let needsCPU = cpu.shares != nil || cpu.quota != nil || cpu.period != nil || cpu.burst != nil
            || cpu.realtimePeriod != nil || cpu.realtimeRuntime != nil || cpu.idle != nil
        guard needsCPU else { return }
        let dir = try v1Directory("cpu", for: "cpu")
        // Real-time bandwidth first (a process already in SCHED_RR cannot join a group without it).
        var pendingRtPeriod: UInt64?
        if let p = cpu.realtimePeriod, p != 0 {
            do { try write("cpu.realtimePeriod", p, dir, "cpu.rt_period_us", String(p)) } catch {
                guard cpu.realtimeRuntime != nil else { throw error }
                pendingRtPeriod = p
            }
        }
        if let rt = cpu.realtimeRuntime, rt != 0 {
            try write("cpu.realtimeRuntime", rt, dir, "cpu.rt_runtime_us", String(rt))
            if let p = pendingRtPeriod { try write("cpu.realtimePeriod", p, dir, "cpu.rt_period_us", String(p)) }
        }
        if let shares = cpu.shares, shares != 0 {
            try write("cpu.shares", shares, dir, "cpu.shares", String(shares))
            if let read = readNumber(dir + "/cpu.shares"), read != shares {
                throw CgroupError("linux.resources.cpu.shares \(shares): the kernel set \(read) instead (the \(shares > read ? "maximum" : "minimum") allowed is \(read))")
            }
        }
        // A shorter period may be refused until the new quota is in; retry it after the quota.
        var pendingPeriod: UInt64?
        if let period = cpu.period, period != 0 {
            do { try write("cpu.period", period, dir, "cpu.cfs_period_us", String(period)) } catch {
                guard let q = cpu.quota, q != 0 else { throw error }
                pendingPeriod = period
            }
        }
        if let quota = cpu.quota, quota != 0 {
            try write("cpu.quota", quota, dir, "cpu.cfs_quota_us", String(quota < 0 ? -1 : quota))
            if let p = pendingPeriod { try write("cpu.period", p, dir, "cpu.cfs_period_us", String(p)) }
        }
        if let burst = cpu.burst { try write("cpu.burst", burst, dir, "cpu.cfs_burst_us", String(burst)) }
        if let idle = cpu.idle { try write("cpu.idle", idle, dir, "cpu.idle", String(idle)) }
    }

    func v1Memory(_ m: LinuxResources.Memory, update: Bool) throws {
        let dir = try v1Directory("memory", for: "memory")
        let hasSwapFile = exists(dir, "memory.memsw.limit_in_bytes")
        var limit = m.limit ?? 0
        var swap = m.swap ?? 0
        if limit < -1 { limit = -1 }
        if swap < -1 { swap = -1 }
        // Unlimited memory with swap not given: swap unlimited too (where the kernel accounts swap).
        if limit == -1 && swap == 0 && hasSwapFile { swap = -1 }
        if swap != 0 && !hasSwapFile {
            if swap == -1 { swap = 0 } else {
                throw CgroupError("linux.resources.memory.swap \(swap): this kernel does not account swap (no memory.memsw.limit_in_bytes in \(dir)); remove the swap limit or boot with swapaccount=1")
            }
        }
        func setLimit() throws {
            guard limit != 0 else { return }
            do { try Cgroup.write(dir + "/memory.limit_in_bytes", String(limit)) } catch let e as SystemError where e.errno == EBUSY {
                let usage = readNumber(dir + "/memory.usage_in_bytes") ?? 0
                let peak = readNumber(dir + "/memory.max_usage_in_bytes") ?? 0
                throw CgroupError("linux.resources.memory.limit \(limit): below what the container uses now (usage \(usage) bytes, peak \(peak)); give a higher limit")
            } catch let e as SystemError where e.errno == EINVAL && hasSwapFile && swap == 0 && limit > 0
                        && (readNumber(dir + "/memory.memsw.limit_in_bytes") ?? UInt64.max) < UInt64(limit) {
                throw CgroupError("linux.resources.memory.limit \(limit): above the container's memory+swap limit (\(readNumber(dir + "/memory.memsw.limit_in_bytes") ?? 0) bytes); raise memory.swap (update --memory-swap) with it")
            } catch {
                try write("memory.limit", limit, dir, "memory.limit_in_bytes", String(limit))
            }
        }
        func setSwap() throws {
            guard swap != 0 else { return }
            try write("memory.swap", swap, dir, "memory.memsw.limit_in_bytes", String(swap))
        }
        // memory+swap must never be below memory: order the two writes by where the limits are going.
        if limit != 0 && swap != 0, let current = readNumber(dir + "/memory.limit_in_bytes"),
           swap == -1 || current < UInt64(swap) {
            try setSwap(); try setLimit()
        } else {
            try setLimit(); try setSwap()
        }
        if m.kernel != nil || m.kernelTCP != nil {
            warn("linux.resources.memory.kernel/kernelTCP ignored: kernel memory limits are deprecated by the kernel (runc ignores them too)")
        }
        if let reservation = m.reservation, reservation != 0 {
            try write("memory.reservation", reservation, dir, "memory.soft_limit_in_bytes", String(reservation < 0 ? -1 : reservation))
        }
        if let disable = m.disableOOMKiller, disable || update {
            try write("memory.disableOOMKiller", disable, dir, "memory.oom_control", disable ? "1" : "0")
        }
        if let swappiness = m.swappiness {
            guard swappiness <= 100 else {
                throw CgroupError("linux.resources.memory.swappiness \(swappiness): must be between 0 and 100")
            }
            try write("memory.swappiness", swappiness, dir, "memory.swappiness", String(swappiness))
        }
    }

    func v1BlockIO(_ io: LinuxResources.BlockIO) throws {
        let dir = try v1Directory("blkio", for: "blockIO")
        let bfq = !exists(dir, "blkio.weight") && exists(dir, "blkio.bfq.weight")
        let weightFile = bfq ? "blkio.bfq.weight" : "blkio.weight"
        let weightDeviceFile = bfq ? "blkio.bfq.weight_device" : "blkio.weight_device"
        if let w = io.weight, w != 0 { try write("blockIO.weight", w, dir, weightFile, String(w)) }
        if let w = io.leafWeight, w != 0 { try write("blockIO.leafWeight", w, dir, "blkio.leaf_weight", String(w)) }
        for (i, d) in (io.weightDevice ?? []).enumerated() {
            if let w = d.weight, w != 0 {
                try write("blockIO.weightDevice[\(i)]", "\(d.major):\(d.minor) \(w)", dir, weightDeviceFile, "\(d.major):\(d.minor) \(w)")
            }
            if let w = d.leafWeight, w != 0 {
                try write("blockIO.weightDevice[\(i)].leafWeight", w, dir, "blkio.leaf_weight_device", "\(d.major):\(d.minor) \(w)")
            }
        }
        let throttles: [(String, [LinuxResources.ThrottleDevice]?, String)] = [
            ("throttleReadBpsDevice", io.throttleReadBpsDevice, "blkio.throttle.read_bps_device"),
            ("throttleWriteBpsDevice", io.throttleWriteBpsDevice, "blkio.throttle.write_bps_device"),
            ("throttleReadIOPSDevice", io.throttleReadIOPSDevice, "blkio.throttle.read_iops_device"),
            ("throttleWriteIOPSDevice", io.throttleWriteIOPSDevice, "blkio.throttle.write_iops_device"),
        ]
        for (name, list, file) in throttles {
            for (i, t) in (list ?? []).enumerated() {
                try write("blockIO.\(name)[\(i)]", "\(t.major):\(t.minor) \(t.rate)", dir, file, "\(t.major):\(t.minor) \(t.rate)")
            }
        }
    }

    static func rdmaLine(_ device: String, _ limit: LinuxResources.Rdma) -> String {
        var line = device
        line += " hca_handle=" + (limit.hcaHandles.map(String.init) ?? "max")
        line += " hca_object=" + (limit.hcaObjects.map(String.init) ?? "max")
        return line
    }

    /// `unified` key/values: each key is a file of the container's own cgroup2 directory.
    func writeUnified(_ unified: [String: String], dir: String) throws {
        for (key, value) in unified.sorted(by: { $0.key < $1.key }) {
            guard !key.isEmpty, !key.contains("/"), key != ".", key != ".." else {
                throw CgroupError("linux.resources.unified[\"\(key)\"]: not a cgroup file name")
            }
            guard exists(dir, key) else {
                let controller = key.split(separator: ".").first.map(String.init) ?? key
                throw CgroupError("linux.resources.unified[\"\(key)\"] \"\(value)\": \(dir) has no file \(key) (is the \(controller) controller available and enabled for this cgroup?)")
            }
            try write("unified[\"\(key)\"]", "\"\(value)\"", dir, key, value)
        }
    }

    // MARK: cgroup v2

    /// The controllers enabled for the container's cgroup (its cgroup.controllers).
    func v2Controllers(_ dir: String) -> Set<String> {
        Set(((try? Cgroup.read(dir + "/cgroup.controllers")) ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    func applyV2(_ r: LinuxResources, update: Bool) throws {
        guard let mount = cgroup.layout.unified else { throw CgroupError("no cgroup2 hierarchy on this host") }
        let dir = cgroup.fsRoot + mount + cgroup.path
        let enabled = v2Controllers(dir)
        func need(_ controller: String, _ field: String) throws {
            guard enabled.contains(controller) else {
                throw CgroupError("linux.resources.\(field): the \(controller) controller is not available to cgroup \(cgroup.path) (its cgroup.controllers: \(enabled.sorted().joined(separator: " ").isEmpty ? "none" : enabled.sorted().joined(separator: " "))); enable it in the parent's cgroup.subtree_control or remove the setting")
            }
        }
        if let cpu = r.cpu {
            if cpu.cpus?.isEmpty == false || cpu.mems?.isEmpty == false {
                try need("cpuset", "cpu.cpus")
                if let cpus = cpu.cpus, !cpus.isEmpty { try write("cpu.cpus", "\"\(cpus)\"", dir, "cpuset.cpus", cpus) }
                if let mems = cpu.mems, !mems.isEmpty { try write("cpu.mems", "\"\(mems)\"", dir, "cpuset.mems", mems) }
            }
            if (cpu.realtimeRuntime ?? 0) != 0 || (cpu.realtimePeriod ?? 0) != 0 {
                throw CgroupError("linux.resources.cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no real-time group scheduling (no cpu.rt_* files); remove them")
            }
            if let shares = cpu.shares, shares != 0 {
                try need("cpu", "cpu.shares")
                let weight = Self.cpuWeight(fromShares: shares)
                try write("cpu.shares", shares, dir, "cpu.weight", String(weight))
            }
            if (cpu.quota ?? 0) != 0 || (cpu.period ?? 0) != 0 {
                try need("cpu", "cpu.quota")
                var value = (cpu.quota ?? 0) > 0 ? String(cpu.quota!) : "max"
                if let period = cpu.period, period != 0 { value += " \(period)" }
                try write("cpu.quota/period", "\(cpu.quota.map(String.init) ?? "-")/\(cpu.period.map(String.init) ?? "-")", dir, "cpu.max", value)
            }
            if let burst = cpu.burst { try need("cpu", "cpu.burst"); try write("cpu.burst", burst, dir, "cpu.max.burst", String(burst)) }
            if let idle = cpu.idle { try need("cpu", "cpu.idle"); try write("cpu.idle", idle, dir, "cpu.idle", String(idle)) }
        }
        if let m = r.memory {
            let limit = m.limit ?? 0, swap = m.swap ?? 0
            if limit != 0 || swap != 0 || (m.reservation ?? 0) != 0 {
                try need("memory", "memory")
                let swapValue = try Self.v2Swap(swap: swap, memory: limit)
                var swapText = swapValue == -1 ? "max" : (swapValue == 0 ? "" : String(swapValue))
                if swapText.isEmpty && swapValue == 0 && swap > 0 { swapText = "0" }   // memory == swap: no swap
                if !swapText.isEmpty {
                    do { try Cgroup.write(dir + "/memory.swap.max", swapText) } catch let e as SystemError where e.errno == ENOENT && (swapText == "max" || swapText == "0") {
                        // No swap accounting: "unlimited" and "none" are what the container gets anyway.
                    } catch {
                        try write("memory.swap", swap, dir, "memory.swap.max", swapText)
                    }
                }
                if limit != 0 {
                    try write("memory.limit", limit, dir, "memory.max", limit < 0 ? "max" : String(limit))
                }
                if let reservation = m.reservation, reservation != 0 {
                    // As runc and crun: the reservation (v1 soft limit) is memory.low, a protection, not a cap.
                    try write("memory.reservation", reservation, dir, "memory.low", reservation < 0 ? "max" : String(reservation))
                }
            }
            if m.kernel != nil || m.kernelTCP != nil {
                warn("linux.resources.memory.kernel/kernelTCP ignored: cgroup v2 accounts kernel memory within memory.max")
            }
            if m.disableOOMKiller == true {
                warn("linux.resources.memory.disableOOMKiller ignored: cgroup v2 cannot disable the OOM killer")
            }
            if m.swappiness != nil {
                warn("linux.resources.memory.swappiness ignored: cgroup v2 has no per-cgroup swappiness")
            }
        }
        if let pids = r.pids, pids.limit != 0 {   // 0: not set (as runc)
            try need("pids", "pids.limit")
            try write("pids.limit", pids.limit, dir, "pids.max", pids.limit > 0 ? String(pids.limit) : "max")
        }
        if let io = r.blockIO { try v2IO(io, dir: dir, need: need) }
        if let pages = r.hugepageLimits, !pages.isEmpty {
            try need("hugetlb", "hugepageLimits")
            for (i, p) in pages.enumerated() {
                try write("hugepageLimits[\(i)] (\(p.pageSize))", p.limit, dir, "hugetlb.\(p.pageSize).max", String(p.limit))
            }
        }
        if let rdma = r.rdma, !rdma.isEmpty {
            try need("rdma", "rdma")
            for (device, limit) in rdma.sorted(by: { $0.key < $1.key }) {
                try write("rdma[\"\(device)\"]", "", dir, "rdma.max", Self.rdmaLine(device, limit))
            }
        }
        if let net = r.network, net.classID != nil || !(net.priorities ?? []).isEmpty {
            throw CgroupError("linux.resources.network (classID/priorities): cgroup v2 has no net_cls or net_prio controller; remove the section (tag traffic with a BPF program or nftables instead)")
        }
        if let unified = r.unified, !unified.isEmpty { try writeUnified(unified, dir: dir) }
        if !update || r.devices != nil {
            let rules = try DeviceAccessRule.effective(r.devices)
            let program = DeviceFilter.program(for: rules)
            if cgroup.fsRoot.isEmpty {
                try DeviceFilter.attach(program, toCgroup: dir, replacing: update)
            }
        }
    }

    func v2IO(_ io: LinuxResources.BlockIO, dir: String, need: (String, String) throws -> Void) throws {
        let bfq = exists(dir, "io.bfq.weight")
        if let w = io.weight, w != 0 {
            try need("io", "blockIO.weight")
            if bfq { try write("blockIO.weight", w, dir, "io.bfq.weight", String(w)) }
            else { try write("blockIO.weight", w, dir, "io.weight", String(Self.ioWeight(fromBlkio: w))) }
        }
        if (io.leafWeight ?? 0) != 0 {
            throw CgroupError("linux.resources.blockIO.leafWeight \(io.leafWeight!): cgroup v2 has no leaf weights; remove it")
        }
        for (i, d) in (io.weightDevice ?? []).enumerated() {
            guard let w = d.weight, w != 0 else { continue }
            try need("io", "blockIO.weightDevice")
            if bfq { try write("blockIO.weightDevice[\(i)]", "\(d.major):\(d.minor) \(w)", dir, "io.bfq.weight", "\(d.major):\(d.minor) \(w)") }
            else {
                try write("blockIO.weightDevice[\(i)]", "\(d.major):\(d.minor) \(w)", dir, "io.weight", "\(d.major):\(d.minor) \(Self.ioWeight(fromBlkio: w))")
            }
        }
        let throttles: [(String, [LinuxResources.ThrottleDevice]?, String)] = [
            ("throttleReadBpsDevice", io.throttleReadBpsDevice, "rbps"),
            ("throttleWriteBpsDevice", io.throttleWriteBpsDevice, "wbps"),
            ("throttleReadIOPSDevice", io.throttleReadIOPSDevice, "riops"),
            ("throttleWriteIOPSDevice", io.throttleWriteIOPSDevice, "wiops"),
        ]
        for (name, list, key) in throttles {
            for (i, t) in (list ?? []).enumerated() {
                try need("io", "blockIO.\(name)")
                try write("blockIO.\(name)[\(i)]", "\(t.major):\(t.minor) \(t.rate)", dir, "io.max", "\(t.major):\(t.minor) \(key)=\(t.rate == 0 ? "max" : String(t.rate))")
            }
        }
    }

    // MARK: conversions (the ones runc and crun use)

    /// cpu.shares (2…262144, default 1024) to cpu.weight (1…10000, default 100): the quadratic fit in log space
    /// that current runc (≥ 1.3) and crun (≥ 1.23) use, mapping 2→1, 1024→100, 262144→10000.
    public static func cpuWeight(fromShares shares: UInt64) -> UInt64 {
        if shares == 0 { return 0 }
        if shares <= 2 { return 1 }
        if shares >= 262_144 { return 10_000 }
        let l = log2(Double(shares))
        let exponent = (l * l + 125 * l) / 612.0 - 7.0 / 34.0
        return UInt64(ceil(pow(10, exponent)))
    }

    /// blkio weight (10…1000) to io.weight (1…10000), linearly.
    public static func ioWeight(fromBlkio weight: UInt16) -> UInt64 {
        weight == 0 ? 0 : 1 + (UInt64(max(weight, 10)) - 10) * 9999 / 990
    }

    /// The spec's memory.swap is memory+swap (a v1 notion); memory.swap.max is swap alone.
    public static func v2Swap(swap: Int64, memory: Int64) throws -> Int64 {
        switch true {
        case memory == -1 && swap == 0: return -1
        case swap == -1 || swap == 0: return swap
        case memory == -1: return swap
        case memory == 0:
            throw CgroupError("linux.resources.memory.swap \(swap): a swap limit needs memory.limit as well (swap is memory+swap in the spec)")
        case memory < 0:
            throw CgroupError("linux.resources.memory.limit \(memory) is invalid")
        case swap < memory:
            throw CgroupError("linux.resources.memory.swap \(swap): must be at least memory.limit \(memory) (it is memory+swap)")
        default: return swap - memory
        }
    }
}
