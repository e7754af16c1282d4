import ArgumentParser
import Runtime

/// `bulkhead pause` / `resume`: the cgroup freezer.
struct Pause: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "pause", abstract: "Freeze every process of a container.").verb
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "The container ID.") var id: String
    func run() throws {
        let (_, record, backend) = try RuntimeSupport.open(globals, id)
        try backend.pause(record)
    }
}
