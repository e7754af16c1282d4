import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The freestanding test guests in Tests/MicroVMTests/Guests (C and assembly, -ffreestanding -nostdlib, linked to
/// an ELF at 16 MiB), built with the host's gcc once per test process. The VMM tests and the kvm-driver tests of
/// the microVM tier run them on this host's /dev/kvm.
public enum FreestandingGuests {
    public static let sourceDirectory: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<2 { url.deleteLastPathComponent() }
        return url.path + "/MicroVMTests/Guests"
    }()
    static let buildDirectory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bulkhead-guests-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()
    private static let lock = NSLock()

    public static var hasCompiler: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc") }

    public struct BuildFailed: Error, CustomStringConvertible { public let description: String }

    /// The ELF for guest `name` (its `name.c` plus start.S), building it on first use.
    public static func elf(_ name: String) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let output = buildDirectory + "/\(name).elf"
        if FileManager.default.fileExists(atPath: output) { return output }
        let src = sourceDirectory
        try tool("/usr/bin/gcc", ["-ffreestanding", "-nostdlib", "-static", "-fno-pic", "-no-pie", "-mno-red-zone",
                                  "-mgeneral-regs-only", "-O2", "-fno-stack-protector", "-fcf-protection=none",
                                  "-Wl,-T,\(src)/linker.ld", "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments",
                                  "-o", output, "\(src)/start.S", "\(src)/\(name).c"])
        return output
    }

    /// A flat binary of guest `name` (objcopy -O binary), for the flat-image loader.
    public static func flat(_ name: String) throws -> String {
        let elfPath = try elf(name)
        lock.lock()
        defer { lock.unlock() }
        let output = buildDirectory + "/\(name).bin"
        if !FileManager.default.fileExists(atPath: output) {
            try tool("/usr/bin/objcopy", ["-O", "binary", "--only-section=.text", "--only-section=.rodata", "--only-section=.data", elfPath, output])
        }
        return output
    }

    static func tool(_ path: String, _ arguments: [String]) throws {
        let r = try ToolRunner.run([path] + arguments, timeout: 120)
        guard r.code == 0 else {
            throw BuildFailed(description: "\(path) \(arguments.joined(separator: " ")) failed (\(r.code)): \(r.stderr)")
        }
    }
}
