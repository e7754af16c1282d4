import ArgumentParser
import OCIImage

/// `bulkhead image rm NAME|DIGEST…`.
struct ImageRemove: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove image names or images; blobs and layers go only when nothing else uses them.",
        discussion: "A name of an image with several names is only untagged. Layers used by a container's prepared root filesystem stay until the container is deleted.",
        aliases: ["remove"]).verb

    @OptionGroup var globals: GlobalOptions

    @Argument(help: ArgumentHelp("NAME[:TAG], a digest, or a unique digest prefix.", valueName: "image"))
    var images: [String]

    func validate() throws {
        if images.isEmpty { throw ValidationError("name at least one image to remove (see `bulkhead image ls`)") }
    }

    func run() throws {
        let store = try ImageStore(dataRoot: globals.dataRoot)
        for image in images {
            let result = try store.remove(image)
            for name in result.untagged { print("untagged: \(name)") }
            for digest in result.deletedImages { print("deleted: \(digest) (\(result.deletedBlobs) blobs, \(result.deletedSnapshots) layers, \(ByteCount.format(result.freedBytes)))") }
        }
    }
}
