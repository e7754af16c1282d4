import ArgumentParser
import OCIImage

/// `bulkhead image inspect NAME|DIGEST`.
struct ImageInspect: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show an image's record, manifest and config as JSON.").verb

    @OptionGroup var globals: GlobalOptions

    @Argument(help: ArgumentHelp("NAME[:TAG], a digest, or a unique digest prefix.", valueName: "image"))
    var image: String

    func run() throws {
        print(try ImageStore(dataRoot: globals.dataRoot).inspect(image))
    }
}
