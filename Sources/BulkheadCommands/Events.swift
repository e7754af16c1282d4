import ArgumentParser
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead events`: usage statistics of a container (cpu, memory, pids), once with --stats or every
/// --interval. OOM notifications come with the resource layer.
struct Events: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print container statistics as JSON lines.")
    @OptionGroup var globals: GlobalOptions
    @Flag(name: .customLong("stats"), help: "Print the statistics once and exit.") var stats = false
    @Option(name: .customLong("interval"), help: "Seconds between statistics (e.g. 5 or 5s).") var interval: String = "5s"
    @Argument(help: "The container ID.") var id: String

    struct Event: Encodable {
        var type: String
        var id: String
        var data: Data
        struct Data: Encodable {
            var cpu: CPU
            var memory: Memory
            var pids: Pids
        }
        struct CPU: Encodable { var usage: Usage; struct Usage: Encodable { var total: UInt64 } }
        struct Memory: Encodable { var usage: Usage; struct Usage: Encodable { var usage: UInt64; var limit: UInt64 } }
        struct Pids: Encodable { var current: UInt64; var limit: UInt64 }
    }

    func run() throws {
        let seconds = Double(interval.hasSuffix("s") ? String(interval.dropLast()) : interval) ?? 5
        while true {
            let (directory, record, backend) = try RuntimeSupport.open(globals, id)
            if backend.status(of: record, directory: directory) == .stopped {
                throw RuntimeError.notRunning(id)
            }
            let s = try backend.stats(record)
            let event = Event(type: "stats", id: id, data: .init(
                cpu: .init(usage: .init(total: s.cpuUsageNanoseconds ?? 0)),
                memory: .init(usage: .init(usage: s.memoryUsageBytes ?? 0, limit: s.memoryLimitBytes ?? 0)),
                pids: .init(current: s.pidsCurrent ?? 0, limit: s.pidsLimit ?? 0)))
            try RuntimeSupport.printJSON(event, pretty: false)
            if stats { return }
            _ = consume directory
            usleep(UInt32(max(0.1, seconds) * 1_000_000))
        }
    }
}
