import Foundation
import GuestHost
import GuestImage
import GuestProtocol
import Testing

/// What the end-to-end test needs, and why it would be skipped.
enum GuestFixture {
    static let qemu = "/usr/bin/qemu-system-x86_64"
    static let agent = repoRoot + "/.build/release/bulkhead-agent"

    /// The cached kernel directory from `kernels/build --cached` (no build from inside a test).
    static let kernelDirectory: String? = {
        guard let (status, out) = try? run("/bin/bash", [repoRoot + "/kernels/build", "--cached"]), status == 0 else { return nil }
        let dir = out.split(separator: "\n").last.map(String.init) ?? ""
        return FileManager.default.fileExists(atPath: dir + "/vmlinux") ? dir : nil
    }()

    static var missing: String? {
        if !FileManager.default.isExecutableFile(atPath: qemu) { return "qemu-system-x86_64 is not installed (scripts/setup installs qemu-system-x86)" }
        if kernelDirectory == nil { return "the guest kernel is not built yet: run kernels/build (scripts/setup does; about 7+ minutes once per machine)" }
        if !FileManager.default.isExecutableFile(atPath: agent) {
            return "the static agent is not built: swift build -c release --product bulkhead-agent -Xswiftc -static-executable (scripts/setup does)"
        }
        if !commandExists("mkfs.erofs") { return "mkfs.erofs is missing (erofs-utils)" }
        return nil
    }
    static var ready: Bool { missing == nil }
}

/// One QEMU (TCG) microVM booting our kernel + agent initramfs + a busybox rootfs image.
final class TestVM {
    let dir: TempDir
    let process = Process()
    let channel: GuestChannel
    var console: String { (try? String(contentsOfFile: dir.path + "/console.log", encoding: .utf8)) ?? "" }

    init(tag: String) throws {
        dir = try TempDir("vm-\(tag)")
        let p = dir.path
        // The rootfs: busybox-static and the applets the test uses, as a shared read-only erofs image.
        try sh("""
            mkdir -p \(p)/tree/bin \(p)/tree/etc \(p)/tree/tmp && cp /bin/busybox \(p)/tree/bin/busybox
            for a in sh cat uname echo ls ps sleep true wc head stty; do ln -s busybox \(p)/tree/bin/$a; done
            echo 'root:x:0:0:root:/:/bin/sh' > \(p)/tree/etc/passwd
            """)
        let image = try RootfsImageStore(directory: p + "/cache").image(digest: "sha256:" + String(repeating: "e", count: 64), source: p + "/tree")
        try Initramfs.build(agent: GuestFixture.agent, output: p + "/initramfs.cpio")
        let control = try UnixListener(path: p + "/control.sock"), stdio = try UnixListener(path: p + "/stdio.sock")
        var command = QEMUCommand(kernel: GuestFixture.kernelDirectory! + "/vmlinux", initramfs: p + "/initramfs.cpio", consoleLog: p + "/console.log")
        command.rootfsImage = image.path
        command.controlSocket = control.path
        command.stdioSocket = stdio.path
        process.executableURL = URL(fileURLWithPath: command.qemu)
        process.arguments = command.arguments
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        let qemuErr = p + "/qemu.err"
        _ = FileManager.default.createFile(atPath: qemuErr, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: qemuErr)
        try process.run()
        let c = try control.accept(timeoutMs: 30_000), s = try stdio.accept(timeoutMs: 30_000)
        channel = GuestChannel(control: c, stdio: s)
    }

    /// Waits for QEMU to exit; true when it did within the time.
    func waitForExit(timeoutMs: Int) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeoutMs) / 1000)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return !process.isRunning
    }

    deinit {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
    }
}

func specJSON(_ args: [String], terminal: Bool = false) -> [UInt8] {
    let quoted = args.map { "\"\($0)\"" }.joined(separator: ",")
    return Array(#"{"ociVersion":"1.0.2","hostname":"guest","root":{"path":"rootfs","readonly":true},"process":{"terminal":\#(terminal),"args":[\#(quoted)],"env":["PATH=/bin","HOME=/"],"cwd":"/"}}"#.utf8)
}

func processJSON(_ args: [String], terminal: Bool = false) -> [UInt8] {
    let quoted = args.map { "\"\($0.replacingOccurrences(of: "\"", with: "\\\""))\"" }.joined(separator: ",")
    let tty = terminal ? #","terminal":true,"consoleSize":{"height":33,"width":101}"# : ""
    return Array(#"{"args":[\#(quoted)],"env":["PATH=/bin"],"cwd":"/"\#(tty)}"#.utf8)
}

@Suite(.serialized) struct MicroVMEndToEnd {
    /// Boots a real VM (QEMU TCG), runs `cat` as the container's process with exec'd `uname -r` and
    /// `sh -c 'exit 3'` beside it, pipes 10 MiB through cat, and checks the VM powers itself off after.
    @Test(.enabled(if: GuestFixture.ready, "\(GuestFixture.missing ?? "")"), .timeLimit(.minutes(5)))
    func runsProcessesInTheGuestAndPowersOff() throws {
        let vm = try TestVM(tag: "e2e")
        let ch = vm.channel
        do {
            try ch.handshake(timeoutMs: 90_000)
            #expect(ch.agentSoftware?.contains("bulkhead-agent") == true)
            try ch.create(containerID: "e2e", spec: specJSON(["cat"]), timeoutMs: 30_000)
            try ch.send(.start)
            try ch.send(.exec(process: 1, spec: processJSON(["uname", "-r"])))
            try ch.send(.exec(process: 2, spec: processJSON(["sh", "-c", "echo to-stderr >&2; exit 3"])))
            try ch.send(.exec(process: 3, spec: processJSON(["/bin/nonexistent"])))
            let execs = try ch.collect([1, 2, 3], timeoutMs: 60_000)
            let release = try String(contentsOfFile: GuestFixture.kernelDirectory! + "/release", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(String(decoding: execs[1]!.stdout, as: UTF8.self) == release + "\n")
            #expect(release.hasSuffix("-bulkhead"))
            #expect(execs[1]!.status == .exited(0))
            #expect(execs[2]!.status == .exited(3))
            #expect(String(decoding: execs[2]!.stderr, as: UTF8.self) == "to-stderr\n")
            #expect(execs[3]!.error?.contains("No such file or directory") == true)
            // Signals reach the workload; a terminal process gets a pty with the asked size and resizes.
            try ch.send(.exec(process: 4, spec: processJSON(["sleep", "100"])))
            _ = try ch.wait(timeoutMs: 30_000, for: "started 4") { if case .started(4, _) = $0 { return true } else { return nil } }
            try ch.send(.signal(process: 4, signal: 15))
            try ch.send(.exec(process: 5, spec: processJSON(["sh", "-c", "stty size; read line; stty size; exit 7"], terminal: true)))
            // The first `stty size` shows the spec's consoleSize; then resize, and the second shows the new size.
            var early: [UInt8] = []
            var sleeper: GuestExitStatus?
            _ = try ch.wait(timeoutMs: 30_000, for: "the terminal's first line", other: { message in
                if case let .exited(4, status) = message { sleeper = status }
            }) { message -> Bool? in
                if case let .output(5, .stdout, data) = message { early += data }
                return String(decoding: early, as: UTF8.self).contains("\n") ? true : nil
            }
            try ch.send(.windowSize(process: 5, rows: 40, columns: 120))
            try ch.queueStdin(process: 5, Array("go\n".utf8))
            let more = try ch.collect(sleeper == nil ? [4, 5] : [5], timeoutMs: 60_000)
            #expect((sleeper ?? more[4]?.status) == .signaled(15))
            #expect(more[5]!.status == .exited(7))
            let tty = String(decoding: early + more[5]!.stdout, as: UTF8.self)
            #expect(tty.hasPrefix("33 101\r\n") && tty.hasSuffix("40 120\r\n"), "terminal output: \(tty.debugDescription)")
            // The guest sees its own processes only: the agent as PID 1 and the container's.
            try ch.send(.exec(process: 6, spec: processJSON(["sh", "-c", "cat /proc/1/comm; ls /proc | grep -c '^[0-9]'"])))
            let ps = try ch.collect([6], timeoutMs: 30_000)
            let lines = String(decoding: ps[6]!.stdout, as: UTF8.self).split(separator: "\n")
            #expect(lines.first == "init")
            #expect((lines.last.flatMap { Int($0) } ?? 999) < 100)
            // root.readonly: the container's root cannot be written; its tmpfs mounts (/dev/shm) can.
            try ch.send(.exec(process: 7, spec: processJSON(["sh", "-c", "echo x > /newfile"])))
            try ch.send(.exec(process: 8, spec: processJSON(["sh", "-c", "echo x > /dev/shm/f && cat /dev/shm/f"])))
            let ro = try ch.collect([7, 8], timeoutMs: 30_000)
            #expect(ro[7]!.status != .exited(0))
            #expect(String(decoding: ro[7]!.stderr, as: UTF8.self).contains("Read-only file system"))
            #expect(ro[8]!.status == .exited(0) && ro[8]!.stdout == Array("x\n".utf8))
            // 10 MiB through stdin → cat → stdout, byte for byte.
            var payload = [UInt8](repeating: 0, count: 10 << 20)
            for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 7) }
            try ch.queueStdin(process: 0, payload)
            try ch.send(.closeStdin(process: 0))
            let cat = try ch.collect([0], timeoutMs: 120_000)
            #expect(cat[0]!.status == .exited(0))
            #expect(cat[0]!.stdout.count == payload.count)
            #expect(cat[0]!.stdout == payload)
            // The container ended: the agent announces the power-off and the VM goes away by itself.
            if !ch.shutdownAnnounced {
                _ = try ch.wait(timeoutMs: 10_000, for: "shutdown") { if case .shutdown = $0 { return true } else { return nil } }
            }
            try? ch.send(.shutdown)
            #expect(vm.waitForExit(timeoutMs: 20_000), "QEMU still runs after the container ended")
            #expect(vm.process.terminationStatus == 0)
        } catch {
            Issue.record("\(error)\n--- console ---\n\(vm.console.suffix(3000))")
        }
    }
}
