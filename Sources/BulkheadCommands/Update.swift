import ArgumentParser
import Cgroups
import LinuxOS
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead update`: changes the resource limits of a running (or created, or paused) container, with runc's
/// flags. `--resources FILE` (or `-` for stdin) takes a `linux.resources` JSON object; the flags override its
/// fields. Only the fields given change.
struct Update: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Update the resource limits of a container.",
        discussion: "Memory sizes take a number of bytes or a suffix: 512k, 64m, 2g (-1: no limit).").verb
    @OptionGroup var globals: GlobalOptions
    @Option(name: [.short, .customLong("resources")], help: "A linux.resources JSON file, or - for stdin.") var resources: String?
    @Option(name: .customLong("memory"), help: "Memory limit.") var memory: String?
    @Option(name: .customLong("memory-reservation"), help: "Memory soft limit (v2: memory.low).") var memoryReservation: String?
    @Option(name: .customLong("memory-swap"), help: "Memory plus swap limit.") var memorySwap: String?
    @Option(name: .customLong("kernel-memory"), help: "Accepted for runc compatibility; ignored (deprecated by the kernel).") var kernelMemory: String?
    @Option(name: .customLong("kernel-memory-tcp"), help: "Accepted for runc compatibility; ignored.") var kernelMemoryTCP: String?
    @Option(name: .customLong("cpu-quota"), help: "CPU CFS quota in microseconds (-1: none).") var cpuQuota: Int64?
    @Option(name: .customLong("cpu-period"), help: "CPU CFS period in microseconds.") var cpuPeriod: UInt64?
    @Option(name: .customLong("cpu-share"), help: "CPU shares (relative weight).") var cpuShare: UInt64?
    @Option(name: .customLong("cpu-rt-period"), help: "CPU real-time period in microseconds.") var cpuRtPeriod: UInt64?
    @Option(name: .customLong("cpu-rt-runtime"), help: "CPU real-time runtime in microseconds.") var cpuRtRuntime: Int64?
    @Option(name: .customLong("cpuset-cpus"), help: "CPUs to run on (0-3, 0,1).") var cpusetCpus: String?
    @Option(name: .customLong("cpuset-mems"), help: "Memory nodes to allocate from.") var cpusetMems: String?
    @Option(name: .customLong("pids-limit"), help: "Maximum number of processes (-1: no limit).") var pidsLimit: Int64?
    @Option(name: .customLong("blkio-weight"), help: "Block IO weight (10-1000).") var blkioWeight: UInt16?
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        var r = LinuxResources()
        if let resources {
            let bytes: [UInt8]
            if resources == "-" {
                bytes = try FileDescriptor(adopting: dup(0)).readAll(limit: 1 << 20, path: "stdin")
            } else {
                bytes = try FileDescriptor.open(resources, O_RDONLY).readAll(limit: 1 << 20, path: resources)
            }
            do { r = try LinuxResources.decode(bytes) } catch let e as CgroupError {
                throw RuntimeError("update --resources \(resources): \(e.message)")
            }
        }
        func size(_ text: String?, _ flag: String) throws -> Int64? {
            guard let text else { return nil }
            guard let v = Self.parseSize(text) else {
                throw RuntimeError("update --\(flag) \"\(text)\": give bytes or a size such as 512k, 64m, 2g (-1 for no limit)")
            }
            return v
        }
        if let v = try size(memory, "memory") { r.memory = r.memory ?? .init(); r.memory!.limit = v }
        if let v = try size(memoryReservation, "memory-reservation") { r.memory = r.memory ?? .init(); r.memory!.reservation = v }
        if let v = try size(memorySwap, "memory-swap") { r.memory = r.memory ?? .init(); r.memory!.swap = v }
        if let v = try size(kernelMemory, "kernel-memory") { r.memory = r.memory ?? .init(); r.memory!.kernel = v }
        if let v = try size(kernelMemoryTCP, "kernel-memory-tcp") { r.memory = r.memory ?? .init(); r.memory!.kernelTCP = v }
        if cpuQuota != nil || cpuPeriod != nil || cpuShare != nil || cpuRtPeriod != nil || cpuRtRuntime != nil
            || cpusetCpus != nil || cpusetMems != nil {
            var cpu = r.cpu ?? .init()
            if let cpuQuota { cpu.quota = cpuQuota }
            if let cpuPeriod { cpu.period = cpuPeriod }
            if let cpuShare { cpu.shares = cpuShare }
            if let cpuRtPeriod { cpu.realtimePeriod = cpuRtPeriod }
            if let cpuRtRuntime { cpu.realtimeRuntime = cpuRtRuntime }
            if let cpusetCpus { cpu.cpus = cpusetCpus }
            if let cpusetMems { cpu.mems = cpusetMems }
            r.cpu = cpu
        }
        if let pidsLimit { r.pids = .init(limit: pidsLimit) }
        if let blkioWeight {
            guard blkioWeight == 0 || (10...1000).contains(blkioWeight) else {
                throw RuntimeError("update --blkio-weight \(blkioWeight): must be between 10 and 1000")
            }
            r.blockIO = r.blockIO ?? .init(); r.blockIO!.weight = blkioWeight
        }
        guard r != LinuxResources() else {
            throw RuntimeError("update \(id): nothing to change; give --resources FILE or a flag such as --memory 64m (see bulkhead update --help)")
        }
        let (directory, record, backend) = try RuntimeSupport.open(globals, id)
        if backend.status(of: record, directory: directory) == .stopped {
            throw RuntimeError("cannot update container \(id): it is stopped")
        }
        try backend.update(record, resources: r)
    }

    /// `1024`, `512k`, `64m`, `2g`, `1t` (also `64mb`, `64MiB`); `-1` means no limit.
    static func parseSize(_ text: String) -> Int64? {
        let t = text.lowercased()
        if t == "-1" { return -1 }
        var digits = Substring(t)
        var unit = ""
        while let c = digits.last, !c.isNumber && c != "." { unit = String(c) + unit; digits.removeLast() }
        guard let value = Double(digits), value >= 0 else { return nil }
        let shifts: [String: Int] = ["": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20,
                                     "g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40]
        guard let shift = shifts[unit] else { return nil }
        let m = Double(UInt64(1) << shift)
        let bytes = value * m
        guard bytes < 9.2e18 else { return nil }
        return Int64(bytes)
    }
}
