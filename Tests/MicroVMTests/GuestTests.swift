import Foundation
import Testing
import LinuxOS
@testable import MicroVM

/// Reads from `fd` until `marker` appears (or `seconds` pass); returns what was read.
func readUntil(_ fd: Int32, _ marker: String, seconds: Double = 20) -> String {
    var text = ""
    let deadline = Date().addingTimeInterval(seconds)
    var buffer = [UInt8](repeating: 0, count: 4096)
    while !text.contains(marker) && Date() < deadline {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 100) > 0 else { continue }
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        text += String(decoding: buffer[0..<n], as: UTF8.self)
    }
    return text
}

@Suite("Test guests on /dev/kvm", .enabled(if: Host.canRunGuests, Host.kvmReason))
struct GuestTests {
    @Test("UART hello, then the host stops the halted guest", arguments: [1, 2])
    func helloAndStop(vcpus: Int) throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let vm = try VirtualMachine(VMConfiguration(kernel: try Guests.elf("hello"), memoryMiB: 64, vcpus: vcpus, consoleOutputFD: fds[1])) { _ in }
        #expect(vm.kernel.format == .elf && vm.kernel.entry == 0x100_0000)
        let pvh = try #require(vm.kernel.pvhEntry)
        #expect(UInt64(pvh) > vm.kernel.entry && UInt64(pvh) < vm.kernel.end)
        try vm.start()
        let text = readUntil(fds[0], "\n")
        #expect(text == "Hello from the Bulkhead test guest\n")
        usleep(20_000)
        #expect(vm.exit == nil) // halted, still alive until stopped
        vm.stop()
        #expect(vm.wait() == .stopped)
    }

    @Test("A flat binary is loaded at 16 MiB and entered at its first byte")
    func flatBinary() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let vm = try VirtualMachine(VMConfiguration(kernel: try Guests.flat("reset"), memoryMiB: 64, consoleOutputFD: fds[1])) { _ in }
        #expect(vm.kernel.format == .flat)
        try vm.start()
        #expect(vm.wait() == .reset)
        #expect(readUntil(fds[0], "\n", seconds: 2) == "resetting through the i8042\n")
    }

    @Test("i8042 reset ends `bulkhead vm run` with status 0 (jailed)")
    func resetThroughCLI() throws {
        let result = try BulkheadBinary.run(["vm", "run", "--kernel", try Guests.elf("reset"), "--memory", "64"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "resetting through the i8042\n")
        #expect(result.stderr.contains("guest requested a reset"))
    }

    @Test("virtio-blk: the guest's checksum of every sector equals the host's; writes land; read-only is enforced")
    func blockReader() throws {
        var bytes = [UInt8](repeating: 0, count: 96 * 1024 + 512)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        let ro = try temporaryFile(bytes), rw = try temporaryFile([UInt8](repeating: 0, count: 8192))
        defer { unlink(ro); unlink(rw) }
        let result = try BulkheadBinary.run(["vm", "run", "--kernel", try Guests.elf("blk"), "--memory", "64",
                                             "--disk", "\(ro):ro", "--disk", rw])
        #expect(result.status == 0, "\(result.stderr)")
        let expected = String(fnv1a64(bytes), radix: 16)
        let padded = String(repeating: "0", count: 16 - expected.count) + expected
        #expect(result.stdout.contains("sectors=\(bytes.count / 512) fnv1a64=\(padded)\n"), "\(result.stdout)")
        #expect(result.stdout.contains("write-to-first-disk status=1\n"))
        #expect(result.stdout.contains("write status=0\nflush status=0\n"))
        #expect(result.stderr.contains("write to a read-only disk"))
        let written = try [UInt8](Data(contentsOf: URL(fileURLWithPath: rw)))
        #expect(String(decoding: written[512..<529], as: UTF8.self) == "bulkhead-was-here")
        #expect(written[0..<512].allSatisfy { $0 == 0 } && written[1024...].allSatisfy { $0 == 0 })
    }

    @Test("virtio-console multiport: names, open, and a message each way")
    func consoleExchange() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let reports = ReportLog()
        let vm = try VirtualMachine(VMConfiguration(kernel: try Guests.elf("console"), memoryMiB: 64, consoleOutputFD: fds[1],
                                                    consolePorts: ["stdio", "control"])) { reports.add($0) }
        try vm.start()
        let control = vm.consolePortFDs[1], stdio = vm.consolePortFDs[0]
        let fromGuest = readUntil(control, "\n")
        #expect(fromGuest == "hello over the control port\n")
        #expect(readUntil(stdio, "\n") == "stdio says hi\n")
        let reply = Array("reply from the host\n".utf8)
        #expect(write(control, reply, reply.count) == reply.count)
        #expect(vm.wait() == .reset)
        let uart = readUntil(fds[0], "received: reply from the host\n", seconds: 2)
        #expect(uart.contains("max ports=2\n"))
        #expect(uart.contains("port 0 name stdio\n") && uart.contains("port 1 name control\n"))
        #expect(uart.contains("received: reply from the host\n"), "\(uart)")
        #expect(reports.messages.isEmpty, "\(reports.messages)")
    }

    @Test("A malicious virtio-console driver: hostile control messages and buffers are refused and reported; the ports still work")
    func maliciousConsoleDriver() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let reports = ReportLog()
        let vm = try VirtualMachine(VMConfiguration(kernel: try Guests.elf("evilconsole"), memoryMiB: 64, consoleOutputFD: fds[1],
                                                    consolePorts: ["stdio", "control"])) { reports.add($0) }
        try vm.start()
        let control = vm.consolePortFDs[1]
        #expect(readUntil(control, "\n") == "still here\n")
        let reply = Array("reply\n".utf8)
        #expect(write(control, reply, reply.count) == reply.count)
        let uart = readUntil(fds[0], "received: reply\n", seconds: 20)
        // More bytes for the receive buffer the guest then puts in the MMIO hole.
        let more = Array("more\n".utf8)
        #expect(write(control, more, more.count) == more.count)
        #expect(vm.wait() == .reset)
        let rest = uart + readUntil(fds[0], "malicious console done\n", seconds: 5)
        for step in ["control-beyond-ram", "control-short", "port-ready-unknown-port", "control-unknown-event",
                     "device-ready-failure", "port-open-unknown-port", "ports-open"] {
            #expect(rest.contains(step + "\n"), "\(step): \(rest)")
        }
        for attack in ["tx-device-writable", "tx-in-mmio-hole", "tx-beyond-ram", "tx-huge-length", "tx-looping-chain",
                       "tx-next-beyond-queue", "tx-good", "rx-in-mmio-hole"] {
            #expect(rest.contains(attack + ": len=0\n"), "\(attack): \(rest)")
        }
        #expect(rest.contains("received: reply\n") && rest.contains("malicious console done\n"), "\(rest)")
        let messages = reports.messages.joined(separator: "\n")
        for report in ["control message rejected", "PORT_READY for port 999", "control event 42", "device failure",
                       "PORT_OPEN for port 77", "transmit buffer is device-writable", "transmit rejected", "receive buffer rejected"] {
            #expect(messages.contains(report), "\(report): \(messages)")
        }
    }

    @Test("A malicious virtio-blk driver: the VMM survives, reports, and the device recovers after reset (jailed)")
    func maliciousGuest() throws {
        let disk = try temporaryFile([UInt8](repeating: 0x5A, count: 64 * 1024))
        defer { unlink(disk) }
        let result = try BulkheadBinary.run(["vm", "run", "--kernel", try Guests.elf("evil"), "--memory", "64", "--disk", "\(disk):ro"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout
        for attack in ["data-beyond-ram", "data-in-mmio-hole", "huge-length", "looping-chain", "next-beyond-queue",
                       "status-read-only", "short-header", "indirect", "header-beyond-ram"] {
            #expect(lines.contains("\(attack): len=0 status=ff\n"), "\(attack): \(lines)")
        }
        for attack in ["sector-out-of-range", "sector-overflow", "partial-sector", "write-with-writable-data"] {
            #expect(lines.contains("\(attack): len=1 status=01\n"), "\(attack): \(lines)")
        }
        #expect(lines.contains("unknown-type: len=1 status=02\n"))
        #expect(lines.contains("needs-reset=1\n") && lines.contains("bad-ring-needs-reset=1\n"))
        #expect(lines.contains("recovered: len=513 status=00\nmalicious done\n"))
        for report in ["descriptor chain loops", "beyond the disk's 128", "is not guest RAM", "device stopped until the driver resets it",
                       "notify for queue 7"] {
            #expect(result.stderr.contains(report), "\(report): \(result.stderr)")
        }
    }

    @Test("Jail: own memory cgroup, empty mount namespace, no capabilities, seccomp on every thread; SIGTERM → 143")
    func jail() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BulkheadBinary.path)
        // A 6 MiB initrd of random bytes: loading it into guest RAM must be charged to the VMM's own cgroup.
        let initrd = try temporaryFile((0..<(6 << 20)).map { _ in UInt8.random(in: 0...255) }, suffix: ".initrd")
        defer { unlink(initrd) }
        process.arguments = ["vm", "run", "--kernel", try Guests.elf("hello"), "--initrd", initrd, "--memory", "64", "--vcpus", "2"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        _ = readUntil(out.fileHandleForReading.fileDescriptor, "\n")
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        #expect(status.contains("CapEff:\t0000000000000000") && status.contains("CapBnd:\t0000000000000000"))
        #expect(status.contains("NoNewPrivs:\t1"))
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        #expect(tasks.count >= 4) // main, io, two vCPUs
        for task in tasks {
            let s = try String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)
            #expect(s.contains("Seccomp:\t2"), "thread \(task) has no seccomp filter")
        }
        let cgroup = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
        let memoryRoot = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/cgroup.procs") ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup"
        #expect(cgroup.contains("/bulkhead/vm-\(pid)"), "\(cgroup)")
        let limitFile = memoryRoot == "/sys/fs/cgroup" ? "memory.max" : "memory.limit_in_bytes"
        let limit = try String(contentsOfFile: "\(memoryRoot)/bulkhead/vm-\(pid)/\(limitFile)", encoding: .utf8)
        #expect(UInt64(limit.trimmingCharacters(in: .whitespacesAndNewlines)) == (64 << 20) + VMJail.overheadBytes)
        let usageFile = memoryRoot == "/sys/fs/cgroup" ? "memory.current" : "memory.usage_in_bytes"
        let usage = UInt64((try String(contentsOfFile: "\(memoryRoot)/bulkhead/vm-\(pid)/\(usageFile)", encoding: .utf8))
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(usage >= 6 << 20, "the guest RAM the VMM filled is charged to its cgroup: \(usage) bytes")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/mnt")
                != FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt"))
        let mounts = try String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8).split(separator: "\n")
        if LinuxOS.Mount.isMountPoint("/") {
            #expect(mounts.count == 1 && mounts[0].contains(" / / ro,") && mounts[0].contains("tmpfs"), "\(mounts)")
        } else {
            // A chroot (fresh-machine's): the VMM's root is a tmpfs never attached to any mount namespace, so no
            // mount is visible from it at all.
            #expect(mounts.isEmpty, "\(mounts)")
        }
        // Either way the root it sees is empty.
        #expect(try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root").isEmpty)
        kill(pid, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 143)
        #expect(!FileManager.default.fileExists(atPath: "\(memoryRoot)/bulkhead/vm-\(pid)"))
    }

    @Test("Serial input from stdin reaches the guest (jailed: the I/O thread may raise IRQ 4)")
    func serialInput() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BulkheadBinary.path)
        process.arguments = ["vm", "run", "--kernel", try Guests.elf("echo"), "--memory", "64"]
        let input = Pipe(), out = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        #expect(readUntil(out.fileHandleForReading.fileDescriptor, "ready\n") == "ready\n")
        input.fileHandleForWriting.write(Data("typed on the host\n".utf8))
        let echoed = readUntil(out.fileHandleForReading.fileDescriptor, "\n")
        process.waitUntilExit()
        #expect(echoed == "got: typed on the host\n")
        #expect(process.terminationStatus == 0)
    }

    @Test("Errors name the input and exit 1")
    func errors() throws {
        let missing = try BulkheadBinary.run(["vm", "run", "--kernel", "/nonexistent/vmlinux"])
        #expect(missing.status == 1 && missing.stderr.contains("/nonexistent/vmlinux"))
        let tooBig = try BulkheadBinary.run(["vm", "run", "--kernel", try Guests.elf("hello"), "--memory", "64",
                                             "--cmdline", String(repeating: "x", count: 5000)])
        #expect(tooBig.status == 1 && tooBig.stderr.contains("command line"), "\(tooBig.stderr)")
        let badDisk = try BulkheadBinary.run(["vm", "run", "--kernel", try Guests.elf("hello"), "--disk", "/nonexistent.img:ro"])
        #expect(badDisk.status == 1 && badDisk.stderr.contains("/nonexistent.img"))
    }
}
