import ArgumentParser
import FoundationEssentials
import OCIImage

/// `bulkhead image ls`.
struct ImageList: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the images in the store: name, short digest, size, created.",
        aliases: ["list"]).verb

    @OptionGroup var globals: GlobalOptions

    @Option(help: "Output format: text or json.")
    var format: LogFormat = .text

    func run() throws {
        let images = try ImageStore(dataRoot: globals.dataRoot).list()
        switch format {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(images), as: UTF8.self))
        case .text:
            var rows = [["NAME", "DIGEST", "SIZE", "CREATED"]]
            for image in images {
                for name in image.names.isEmpty ? ["<none>"] : image.names {
                    rows.append([name, image.digest.short, ByteCount.format(image.size), image.created.map { String($0.prefix(19)) + "Z" } ?? "-"])
                }
            }
            let widths = (0..<4).map { column in rows.map { $0[column].count }.max() ?? 0 }
            for row in rows {
                print(row.enumerated().map { i, cell in i == 3 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count) }.joined(separator: "   "))
            }
        }
    }
}
