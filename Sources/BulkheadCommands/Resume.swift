import ArgumentParser
import Runtime

struct Resume: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Thaw a paused container.").verb
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "The container ID.") var id: String
    func run() throws {
        let (_, record, backend) = try RuntimeSupport.open(globals, id)
        try backend.resume(record)
    }
}
