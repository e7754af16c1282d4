import Foundation
@testable import MicroVM

/// A Linux kernel for the boot-protocol tests.
///
/// Preferred: the repository's own guest kernel (`kernels/build` prints a directory holding `bzImage` and
/// `vmlinux`, cached under /var/cache/bulkhead/kernels/<config-hash>/). Until that exists, Debian's cloud kernel:
/// `apt-get download` of the package `linux-image-cloud-amd64` depends on, its /boot/vmlinuz extracted with
/// dpkg-deb, and the ELF vmlinux recovered from the bzImage the way the kernel's scripts/extract-vmlinux does —
/// except that instead of scanning for compressor magic numbers we read the exact payload position from the
/// setup header (payload_offset/payload_length, boot protocol ≥ 2.08) and pick the decompressor by its magic.
enum LinuxKernel {
    struct Images {
        let source: String
        let bzImage: String
        let vmlinux: String
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let debianCache = "/var/cache/bulkhead/kernels/debian-cloud"
    private static let lock = NSLock()

    static func images() throws -> Images {
        lock.lock()
        defer { lock.unlock() }
        let build = repositoryRoot.appendingPathComponent("kernels/build").path
        if FileManager.default.isExecutableFile(atPath: build) {
            let dir = try run(build, []).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? ""
            return Images(source: "kernels/build (\(dir))", bzImage: dir + "/bzImage", vmlinux: dir + "/vmlinux")
        }
        return try debianCloud()
    }

    static func debianCloud() throws -> Images {
        let fm = FileManager.default
        try fm.createDirectory(atPath: debianCache, withIntermediateDirectories: true)
        let vmlinuz = debianCache + "/vmlinuz", vmlinux = debianCache + "/vmlinux"
        if !fm.fileExists(atPath: vmlinuz) {
            var depends = (try? run("/usr/bin/apt-cache", ["depends", "linux-image-cloud-amd64"])) ?? ""
            if !depends.contains("Depends: linux-image-") { // a fresh machine may have no package lists yet
                try run("/usr/bin/apt-get", ["update", "-qq"])
                depends = try run("/usr/bin/apt-cache", ["depends", "linux-image-cloud-amd64"])
            }
            guard let package = depends.split(separator: "\n").compactMap({ line -> String? in
                let t = line.trimmingCharacters(in: .whitespaces)
                return t.hasPrefix("Depends: linux-image-") ? String(t.dropFirst("Depends: ".count)) : nil
            }).first else { throw CommandFailed(description: "apt-cache depends linux-image-cloud-amd64 names no kernel package; run apt-get update") }
            let work = debianCache + "/download"
            try? fm.removeItem(atPath: work)
            try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
            try run("/bin/sh", ["-c", "cd '\(work)' && apt-get download -q '\(package)' >/dev/null 2>&1 && dpkg-deb -x ./*.deb root"])
            let boot = work + "/root/boot"
            guard let name = try fm.contentsOfDirectory(atPath: boot).first(where: { $0.hasPrefix("vmlinuz-") }) else {
                throw CommandFailed(description: "\(package) has no /boot/vmlinuz-*")
            }
            try fm.moveItem(atPath: boot + "/" + name, toPath: vmlinuz + ".tmp")
            try fm.moveItem(atPath: vmlinuz + ".tmp", toPath: vmlinuz)
            try? fm.removeItem(atPath: work)
        }
        if !fm.fileExists(atPath: vmlinux) {
            try extractVmlinux(bzImage: vmlinuz, to: vmlinux)
        }
        return Images(source: "Debian linux-image-cloud-amd64", bzImage: vmlinuz, vmlinux: vmlinux)
    }

    /// Decompresses the bzImage's payload into an ELF vmlinux.
    static func extractVmlinux(bzImage: String, to output: String) throws {
        let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: bzImage)))
        let header = try BzImage.parseHeader(Array(image.prefix(4096)))
        let payloadOffset = Int(u32(image, 0x248)), payloadLength = Int(u32(image, 0x24C))
        let start = Int(header.protectedModeOffset) + payloadOffset
        guard payloadLength > 16, start + payloadLength <= image.count else {
            throw CommandFailed(description: "\(bzImage): payload \(payloadOffset)+\(payloadLength) lies outside the image")
        }
        let payload = Array(image[start..<(start + payloadLength)])
        let magic = Array(payload.prefix(6))
        let decompressor: [String]
        if magic.starts(with: [0x1F, 0x8B]) { decompressor = ["gzip", "-dc"] }
        else if magic.starts(with: [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) { decompressor = ["xz", "-dc", "--single-stream"] }
        else if magic.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { decompressor = ["zstd", "-dcq"] }
        else if magic.starts(with: [0x02, 0x21, 0x4C, 0x18]) { decompressor = ["lz4", "-dc", "-l"] }
        else if magic.starts(with: [0x89, 0x4C, 0x5A, 0x4F]) { decompressor = ["lzop", "-dc"] }
        else if magic.starts(with: [0x42, 0x5A, 0x68]) { decompressor = ["bzip2", "-dc"] }
        else { throw CommandFailed(description: "\(bzImage): unknown payload compression (magic \(magic))") }
        let packed = output + ".payload"
        try Data(payload).write(to: URL(fileURLWithPath: packed))
        defer { unlink(packed) }
        // Trailing bytes after the stream (the kernel appends the decompressed size) make some tools complain;
        // what matters is an ELF came out.
        _ = try? run("/bin/sh", ["-c", "\(decompressor.joined(separator: " ")) < '\(packed)' > '\(output).tmp' 2>/dev/null"])
        let elf = try [UInt8](Data(contentsOf: URL(fileURLWithPath: output + ".tmp")).prefix(4))
        guard elf == [0x7F, 0x45, 0x4C, 0x46] else {
            throw CommandFailed(description: "\(bzImage): \(decompressor[0]) did not produce an ELF vmlinux")
        }
        try FileManager.default.moveItem(atPath: output + ".tmp", toPath: output)
    }
}
