import ArgumentParser
import Runtime

/// `bulkhead state`: runc's state JSON.
struct State: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "state", abstract: "Print the state of a container as JSON.").verb
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "The container ID.") var id: String

    func run() throws {
        let (directory, record, backend) = try RuntimeSupport.open(globals, id)
        let status = backend.status(of: record, directory: directory)
        try RuntimeSupport.printJSON(record.stateJSON(status: status))
    }
}
