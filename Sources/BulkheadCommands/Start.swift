import ArgumentParser
import Runtime

/// `bulkhead start`: lets a created container's program run.
struct Start: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start a created container.").verb
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let (directory, record, backend) = try RuntimeSupport.open(globals, id)
        var r = record
        try backend.start(&r, directory: directory)
    }
}
