import ArgumentParser
import LinuxOS
import MicroVMBackend
import Runtime
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead ps`: the container's processes (json: host pids; table: `ps -ef` lines of those pids).
struct Ps: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "ps", abstract: "List the processes running in a container.").verb
    @OptionGroup var globals: GlobalOptions
    @Option(name: [.short, .customLong("format")], help: "table or json.") var format: String = "table"
    @Argument(help: "The container ID.") var id: String
    @Argument(parsing: .captureForPassthrough, help: "Options for ps(1) (table format).") var psOptions: [String] = []

    func run() throws {
        let (_, record, backend) = try RuntimeSupport.open(globals, id)
        if format == "table", let vm = backend as? MicroVMBackend {
            // The workload runs in the guest: its processes come from the agent (guest pids, guest uids).
            print("PID    PPID   UID    STAT  RSS(KiB)  COMMAND")
            for p in try vm.guestProcesses(record) {
                func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
                print(pad(String(p.pid), 7) + pad(String(p.ppid), 7) + pad(String(p.uid), 7) + pad(p.state, 6) + pad(String(p.rssKiB), 10) + p.command)
            }
            return
        }
        let pids = try backend.processes(record)
        switch format {
        case "json":
            print("[" + pids.map(String.init).joined(separator: ",") + "]")
        case "table":
            let options = psOptions.first == "--" ? Array(psOptions.dropFirst()) : psOptions
            let pipe = try makePipe()
            let child = try ChildProcess.spawn("/bin/ps", arguments: ["ps"] + (options.isEmpty ? ["-ef"] : options),
                                               environment: ["PATH=/usr/bin:/bin", "LC_ALL=C"], fds: [(pipe.1, 1)])
            _ = close(pipe.1)
            let out = FileDescriptor(adopting: pipe.0)
            let text = String(decoding: try out.readAll(), as: UTF8.self)
            _ = try ChildProcess.wait(child)
            let lines = text.split(separator: "\n")
            guard let header = lines.first else { return }
            let columns = header.split(separator: " ")
            guard let pidColumn = columns.firstIndex(of: "PID") else {
                throw RuntimeError("ps: the output of ps(1) has no PID column; use --format json")
            }
            print(header)
            let wanted = Set(pids)
            for line in lines.dropFirst() {
                let fields = line.split(separator: " ")
                if fields.count > pidColumn, let pid = Int32(fields[pidColumn]), wanted.contains(pid) { print(line) }
            }
        default:
            throw RuntimeError("ps: unknown format \"\(format)\" (use table or json)")
        }
    }

    func makePipe() throws -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        try sys("pipe", nil) { pipe(&fds) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        return (fds[0], fds[1])
    }
}

/// `bulkhead list`: every container under --root.
struct List: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List containers.").verb
    @OptionGroup var globals: GlobalOptions
    @Option(name: [.short, .customLong("format")], help: "table or json.") var format: String = "table"
    @Flag(name: [.short, .customLong("quiet")], help: "Only the IDs.") var quiet = false

    func run() throws {
        let store = RuntimeSupport.store(globals)
        var states: [ContainerStateJSONRow] = []
        for id in try store.ids() {
            guard let directory = try? store.open(id: id), let record = try? directory.load(),
                  let backend = try? RuntimeSupport.backend(named: record.backend, globals: globals) else { continue }
            let s = record.stateJSON(status: backend.status(of: record, directory: directory))
            states.append(ContainerStateJSONRow(ociVersion: s.ociVersion, id: s.id, pid: s.pid, status: s.status,
                                                bundle: s.bundle, rootfs: s.rootfs, created: s.created, owner: s.owner,
                                                annotations: s.annotations ?? [:]))
        }
        if quiet { for s in states { print(s.id) }; return }
        switch format {
        case "json":
            try RuntimeSupport.printJSON(states, pretty: false)
        case "table":
            let header = ["ID", "PID", "STATUS", "TIER", "BUNDLE", "CREATED", "OWNER"]
            let rows = [header] + states.map { [$0.id, String($0.pid), $0.status, $0.annotations["bulkhead.tier"] ?? "-",
                                                $0.bundle, $0.created, $0.owner] }
            var widths = [Int](repeating: 0, count: header.count)
            for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
            for row in rows {
                print(row.enumerated().map { i, c in i == row.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count + 4) }.joined())
            }
        default:
            throw RuntimeError("list: unknown format \"\(format)\" (use table or json)")
        }
    }
}

/// A `list --format json` row (runc's field set).
struct ContainerStateJSONRow: Codable {
    var ociVersion: String
    var id: String
    var pid: Int32
    var status: String
    var bundle: String
    var rootfs: String
    var created: String
    var owner: String
    var annotations: [String: String]
}
