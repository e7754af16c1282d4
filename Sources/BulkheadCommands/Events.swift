import ArgumentParser
import Cgroups
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead events`: as runc. With --stats, one "stats" record and exit; otherwise a "stats" record every
/// --interval and an "oom" record as soon as the OOM killer kills a process of the container (seen through the
/// cgroup's oom_kill counter: v1 memory.oom_control, v2 memory.events), until the container stops.
struct Events: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print container events (stats, oom) as JSON lines.").verb
    @OptionGroup var globals: GlobalOptions
    @Flag(name: .customLong("stats"), help: "Print the statistics once and exit.") var stats = false
    @Option(name: .customLong("interval"), help: "Seconds between statistics (e.g. 5 or 5s).") var interval: String = "5s"
    @Argument(help: "The container ID.") var id: String

    struct Event<D: Encodable>: Encodable {
        var type: String
        var id: String
        var data: D?
    }

    /// How often the OOM counter is read between stats records.
    static let oomPollMicroseconds: UInt32 = 100_000

    func run() throws {
        let seconds = Double(interval.hasSuffix("s") ? String(interval.dropLast()) : interval) ?? 5
        guard seconds > 0 || stats else { throw RuntimeError("events --interval \(interval): give a positive number of seconds") }
        var lastOOM: UInt64?
        var nextStats: UInt64 = 0
        while true {
            let (directory, record, backend) = try RuntimeSupport.open(globals, id)
            // OOM first: a container whose init the OOM killer just took is already stopped.
            if !stats, let count = backend.oomKills(record) {
                if let last = lastOOM, count > last {
                    try RuntimeSupport.printJSON(Event<CgroupStats>(type: "oom", id: id, data: nil), pretty: false)
                }
                lastOOM = count
            }
            if backend.status(of: record, directory: directory) == .stopped {
                throw RuntimeError.notRunning(id)
            }
            let now = Self.monotonicMicroseconds()
            if stats || now >= nextStats {
                let s = try backend.stats(record)
                try RuntimeSupport.printJSON(Event(type: "stats", id: id, data: s), pretty: false)
                if stats { return }
                nextStats = now + UInt64(seconds * 1_000_000)
            }
            _ = consume directory
            usleep(Self.oomPollMicroseconds)
        }
    }

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
