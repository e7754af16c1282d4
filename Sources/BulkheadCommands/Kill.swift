import ArgumentParser
import Runtime

/// `bulkhead kill`: sends a signal to the container's init (or, with --all, every process in it).
struct Kill: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "kill", abstract: "Send a signal (default SIGTERM) to a container.").verb
    @OptionGroup var globals: GlobalOptions
    @Flag(name: [.short, .customLong("all")], help: "Signal every process in the container.") var all = false
    @Argument(help: "The container ID.") var id: String
    @Argument(help: "Signal name or number.") var signal: String = "SIGTERM"

    func run() throws {
        let number = try RuntimeSupport.signalNumber(signal)
        let (_, record, backend) = try RuntimeSupport.open(globals, id)
        try backend.kill(record, signal: number, all: all)
    }
}
