import GuestProtocol
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// What the agent reports about the guest on the host's request: its processes (`ps`) and resource usage
/// (`events --stats`), read from /proc and the container's cgroup.
enum GuestInspect {
    static func read(_ path: String, limit: Int = 65536) -> String? {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY), let bytes = try? fd.readAll(limit: limit) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func number(_ path: String) -> UInt64? {
        guard let text = read(path, limit: 256) else { return nil }
        return UInt64(text.trimmingCharacters(in: " \n"))
    }

    /// The guest's processes, the agent (PID 1) and kernel threads left out, at most `limit`, ordered by pid.
    static func processes(limit: Int) -> [GuestProcessInfo] {
        guard let proc = try? FileDescriptor.open("/proc", O_RDONLY | O_DIRECTORY), let names = try? proc.entries() else { return [] }
        let pids = names.compactMap { Int32($0) }.filter { $0 > 2 }.sorted()
        let pageKiB = UInt64(max(1, sysconf(Int32(_SC_PAGESIZE)) / 1024))
        var list: [GuestProcessInfo] = []
        for pid in pids {
            guard list.count < limit, let stat = read("/proc/\(pid)/stat", limit: 4096),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { continue }
            let comm = String(stat[stat.index(after: open)..<close])
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // fields[0] state, [1] ppid, … [21] rss (pages)
            guard fields.count > 21, let ppid = Int32(fields[1]) else { continue }
            if ppid == 2 { continue }  // a kernel thread
            var uid: UInt32 = 0
            if let status = read("/proc/\(pid)/status"),
               let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }),
               let real = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first, let u = UInt32(real) {
                uid = u
            }
            let rawCmdline = read("/proc/\(pid)/cmdline", limit: 4096) ?? ""
            var command = rawCmdline.split(separator: "\0").joined(separator: " ")
            if command.isEmpty { command = "[\(comm)]" }
            if command.utf8.count > 512 { command = String(decoding: command.utf8.prefix(512), as: UTF8.self) }
            list.append(GuestProcessInfo(pid: pid, ppid: ppid, uid: uid, state: String(fields[0]),
                                         rssKiB: (UInt64(fields[21]) ?? 0) * pageKiB, command: command))
        }
        return list
    }

    /// Usage of the container's cgroup (v2) when there is one, else of the whole guest.
    static func stats(cgroup: String?) -> GuestStats {
        var s = GuestStats()
        if let cg = cgroup, access(cg + "/cgroup.procs", F_OK) == 0 {
            s.memoryUsageBytes = number(cg + "/memory.current") ?? 0
            s.memoryLimitBytes = number(cg + "/memory.max") ?? 0  // "max" does not parse: 0, no limit
            s.pidsCurrent = number(cg + "/pids.current") ?? 0
            s.pidsLimit = number(cg + "/pids.max") ?? 0
            if let cpu = read(cg + "/cpu.stat"),
               let line = cpu.split(separator: "\n").first(where: { $0.hasPrefix("usage_usec ") }),
               let usec = UInt64(line.dropFirst("usage_usec ".count)) {
                s.cpuUsageNanoseconds = usec * 1000
            }
            return s
        }
        if let meminfo = read("/proc/meminfo") {
            var values: [Substring: UInt64] = [:]
            for line in meminfo.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                if parts.count >= 2, let v = UInt64(parts[1]) { values[parts[0]] = v * 1024 }
            }
            let total = values["MemTotal:"] ?? 0
            s.memoryLimitBytes = total
            s.memoryUsageBytes = total - min(total, values["MemAvailable:"] ?? total)
        }
        if let stat = read("/proc/stat"), let first = stat.split(separator: "\n").first, first.hasPrefix("cpu ") {
            // user nice system idle iowait irq softirq steal: busy time in USER_HZ ticks.
            let ticks = first.split(separator: " ").dropFirst().compactMap { UInt64($0) }
            if ticks.count >= 8 {
                let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
                s.cpuUsageNanoseconds = busy * UInt64(1_000_000_000 / max(1, sysconf(Int32(_SC_CLK_TCK))))
            }
        }
        s.pidsCurrent = UInt64(processes(limit: 1 << 16).count)
        return s
    }
}
