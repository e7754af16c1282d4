import Foundation
import Testing
@testable import MicroVM

enum HardwareVirtualization {
    /// This host's /dev/kvm is kvm_pvm (a paravirtual, nested KVM) rather than VT-x/AMD-V.
    static let isParavirtual = FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm")
    static let hasVTxOrSVM: Bool = {
        guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }.map { $0.split(separator: " ") } ?? []
        return flags.contains("vmx") || flags.contains("svm")
    }()
    /// Where a stock Linux kernel boots to userspace under our VMM.
    static let bootsStockKernels = Host.hasKVM && hasVTxOrSVM && !isParavirtual
    static let reason: Comment = """
        this host's /dev/kvm is kvm_pvm (paravirtual nested KVM) without VT-x/AMD-V; a stock Linux kernel \
        only reaches its early console here (see the Linux boot-protocol test), so kernel → init → reset cannot run
        """
}

/// Reads `fd` until every string in `wanted` has appeared (or `seconds` pass); returns all text read.
func readUntilAll(_ fd: Int32, _ wanted: [String], seconds: Double) -> String {
    var text = ""
    let deadline = Date().addingTimeInterval(seconds)
    var buffer = [UInt8](repeating: 0, count: 65536)
    while !wanted.allSatisfy({ text.contains($0) }) && Date() < deadline {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 200) > 0 else { continue }
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        text += String(decoding: buffer[0..<n], as: UTF8.self).replacingOccurrences(of: "\r", with: "")
    }
    return text
}

@Suite("Linux boot protocol", .enabled(if: Host.hasKVM, "needs /dev/kvm (as root)"))
struct LinuxBootTests {
    @Test("bzImage header of a real kernel: 64-bit entry at protected-mode code + 0x200")
    func realBzImageHeader() throws {
        let kernel = try LinuxKernel.images()
        let source = try FileSource(path: kernel.bzImage)
        let header = try BzImage.parseHeader(try source.bytes(at: 0, count: 4096))
        #expect(header.protocolVersion >= 0x020C && header.xloadFlags & 1 != 0)
        let memory = try GuestMemory(size: 256 << 20)
        let loaded = try KernelLoader.load(source, into: memory)
        #expect(loaded.format == .bzImage)
        #expect(loaded.entry == BzImage.loadAddress(header) + 0x200)
        let first = try source.bytes(at: header.protectedModeOffset, count: 64)
        #expect(try memory.read(loaded.start, count: 64) == first)
    }

    @Test("ELF vmlinux via `bulkhead vm run`: early console shows Linux version, our exact command line and our e820 map")
    func vmlinuxEarlyConsole() throws {
        let kernel = try LinuxKernel.images()
        let commandLine = "console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 bulkhead.test=\(UInt32.random(in: 0...UInt32.max))"
        let memoryMiB = 256
        let e820 = E820Entry.map(for: GuestMemory.layout(size: UInt64(memoryMiB) << 20)).map { entry in
            func h(_ v: UInt64) -> String { let s = String(v, radix: 16); return "0x" + String(repeating: "0", count: 16 - s.count) + s }
            return "BIOS-e820: [mem \(h(entry.address))-\(h(entry.address + entry.size - 1))] \(entry.type == 1 ? "usable" : "reserved")"
        }
        let wanted = ["Linux version", "Command line: \(commandLine)\n"] + e820
        print("linux boot test: \(kernel.source), \(kernel.vmlinux) through its ELF 64-bit entry")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: BulkheadBinary.path)
        process.arguments = ["vm", "run", "--kernel", kernel.vmlinux, "--memory", String(memoryMiB), "--cmdline", commandLine]
        let out = Pipe()
        process.standardOutput = out
        let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("bulkhead-linux-\(getpid()).err").path
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { unlink(errPath) }
        process.standardError = FileHandle(forWritingAtPath: errPath)
        let started = Date()
        try process.run()
        // Usually seconds; on a busy paravirtual host every fresh guest page costs milliseconds, so allow minutes.
        let text = readUntilAll(out.fileHandleForReading.fileDescriptor, wanted, seconds: 420)
        let elapsed = Date().timeIntervalSince(started)
        let running = process.isRunning
        process.terminate()
        process.waitUntilExit()
        for line in wanted { #expect(text.contains(line), "missing on the early console: \(line)\n--- console ---\n\(text.prefix(4000))") }
        let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        #expect(running, "the VMM ended before the test stopped it: \(errors)")
        #expect(process.terminationStatus == 143, "\(errors)")
        print("""
            linux boot test: saw "Linux version", the exact command line and all \(e820.count) e820 entries after \
            \(String(format: "%.1f", elapsed)) s, then stopped the VM. \(HardwareVirtualization.isParavirtual ? "On this paravirtual host (kvm_pvm) the kernel goes no further in reasonable time (DESIGN.md §3: it crawls, then stops with an emulation failure; the bzImage decompressor stalls before printing), so the test stops here." : "")
            """)
    }

    @Test("End to end: kernel → busybox init → i8042 reset, exit status 0", .enabled(if: HardwareVirtualization.bootsStockKernels, HardwareVirtualization.reason))
    func kernelToInit() throws {
        let kernel = try LinuxKernel.images()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bulkhead-initramfs-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: dir + "/bin/busybox")
        try "#!/bin/busybox sh\n/bin/busybox echo bulkhead-init-ran\n/bin/busybox reboot -f\n".write(toFile: dir + "/init", atomically: true, encoding: .utf8)
        chmod(dir + "/init", 0o755)
        try run("/bin/sh", ["-c", "cd '\(dir)' && find . | cpio -o -H newc > ../bulkhead-initramfs-\(getpid()).cpio 2>/dev/null"])
        let initrd = dir + "/../bulkhead-initramfs-\(getpid()).cpio"
        defer { unlink(initrd) }
        let started = Date()
        let result = try BulkheadBinary.run(["vm", "run", "--kernel", kernel.vmlinux, "--initrd", initrd, "--memory", "256",
                                             "--cmdline", "console=ttyS0 reboot=k panic=-1 quiet"], timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("bulkhead-init-ran"))
        print("end to end: kernel → init → reset in \(String(format: "%.0f", Date().timeIntervalSince(started) * 1000)) ms")
    }
}
