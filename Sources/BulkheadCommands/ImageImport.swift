import ArgumentParser
import LinuxOS
import OCIImage
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead image import PATH`: OCI layout directory, OCI archive or docker-archive into the store.
struct ImageImport: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import an OCI layout directory, an OCI archive or a docker-archive.",
        discussion: """
            Every blob is checked against its digest and size while it streams in, and every layer against the \
            config's rootfs.diff_ids; a damaged, truncated or hostile image is refused and the store is left as it was. \
            Layers already in the store are not read or unpacked again.

            Examples:
              bulkhead image import busybox.oci.tar --name busybox:latest
              bulkhead image import ./layout --platform linux/arm64
              bulkhead image import saved.docker.tar
            """).verb

    @OptionGroup var globals: GlobalOptions

    @Argument(help: ArgumentHelp("The OCI layout directory, OCI archive (.tar) or docker-archive (.tar).", valueName: "path"))
    var path: String

    @Option(help: ArgumentHelp("Name the image NAME[:TAG] (default: the name recorded in the archive).", valueName: "name"))
    var name: String?

    @Option(help: ArgumentHelp("Pick this platform from a multi-platform index (default: the host's).", valueName: "os/arch[/variant]"))
    var platform: String?

    @Option(help: ArgumentHelp("Pick the image with this ref name or tag when the source holds several.", valueName: "ref"))
    var ref: String?

    @Option(name: .customLong("max-layer-bytes"), help: ArgumentHelp("Refuse a layer larger than this uncompressed (bytes).", valueName: "n"))
    var maxLayerBytes: Int64 = UnpackLimits().maxBytes

    @Option(name: .customLong("max-layer-entries"), help: ArgumentHelp("Refuse a layer with more entries than this.", valueName: "n"))
    var maxLayerEntries: Int = UnpackLimits().maxEntries

    func run() throws {
        var store = try ImageStore(dataRoot: globals.dataRoot)
        store.limits = UnpackLimits(maxBytes: maxLayerBytes, maxEntries: maxLayerEntries)
        let options = ImportOptions(name: name, platform: try platform.map { try Platform(parsing: $0) }, ref: ref)
        let display = ProgressDisplay(enabled: isTerminal(2) && globals.logFormat == .text)
        let result = try store.importImage(from: path, options: options) { display.handle($0) }
        display.finish()
        let record = result.record
        let label = record.names.first ?? record.digest.description
        print("imported \(label) \(record.digest) (\(result.layersUnpacked) layers unpacked, \(result.layersShared) shared, \(ByteCount.format(result.bytesRead)) read)")
    }
}

/// Progress on a terminal: one status line, redrawn at most ten times a second. Silent otherwise.
final class ProgressDisplay {
    let enabled: Bool
    private var layer = 0, count = 0, shared = 0
    private var bytes: Int64 = 0
    private let start = ProgressDisplay.now()
    private var lastDraw = 0.0

    init(enabled: Bool) { self.enabled = enabled }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func handle(_ event: ImportEvent) {
        guard enabled else { return }
        switch event {
        case .layer(let index, let total, _, _, let isShared):
            layer = index + 1
            count = total
            if isShared { shared += 1 }
            draw(force: true)
        case .bytes(let total):
            bytes = total
            draw(force: false)
        case .layerDone:
            draw(force: true)
        }
    }

    private func draw(force: Bool) {
        let t = ProgressDisplay.now()
        if !force && t - lastDraw < 0.1 { return }
        lastDraw = t
        let elapsed = max(t - start, 0.001)
        let rate = Int64(Double(bytes) / elapsed)
        let line = "\r\u{1b}[Kimporting: layer \(layer)/\(count)\(shared > 0 ? " (\(shared) shared)" : "")  \(ByteCount.format(bytes))  \(ByteCount.format(rate))/s"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }

    func finish() {
        guard enabled else { return }
        draw(force: true)
        _ = "\n".withCString { Glibc.write(2, $0, 1) }
    }
}
