import ArgumentParser

/// `bulkhead image …`: the image store (import, list, inspect, remove, prune).
struct ImageCommand: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Manage the image store: import OCI and Docker archives, list, inspect, remove, prune.",
        discussion: """
            Images live under --data-root (default /var/lib/bulkhead): blobs are content-addressed and verified, \
            and each layer is unpacked once into a snapshot shared by every image and container that uses it.
            """,
        subcommands: [ImageImport.self, ImageList.self, ImageInspect.self, ImageRemove.self, ImagePrune.self]
    ).verb

    @OptionGroup var globals: GlobalOptions
}

/// Human-readable byte counts (powers of 1000, as `docker images` shows them).
enum ByteCount {
    static func format(_ bytes: Int64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        if unit == 0 { return "\(bytes) B" }
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[unit])"
    }
}
