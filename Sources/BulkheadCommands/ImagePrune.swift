import ArgumentParser
import OCIImage

/// `bulkhead image prune`.
struct ImagePrune: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove unnamed images no container uses, unreferenced blobs and layers, and leftovers of killed imports.").verb

    @OptionGroup var globals: GlobalOptions

    func run() throws {
        let result = try ImageStore(dataRoot: globals.dataRoot).prune()
        print("pruned \(result.deletedImages.count) images, \(result.deletedBlobs) blobs, \(result.deletedSnapshots) layers; freed \(ByteCount.format(result.freedBytes)) of blobs")
    }
}
