// bulkhead-guest-bench: time to first workload output of Bulkhead's guest path (kernel + agent initramfs +
// rootfs image + GuestProtocol over virtio-console) against plain QEMU booting the same kernel with a
// trivial busybox /init, side by side in one run. Driven by bench/microvm-boot.sh; prints medians and ratios.
import Foundation
import GuestHost
import GuestImage
import GuestProtocol

func fail(_ text: String) -> Never {
    FileHandle.standardError.write(Data("bulkhead-guest-bench: \(text)\n".utf8))
    exit(1)
}

let args = CommandLine.arguments
guard args.count >= 4, let rounds = Int(args[3]) else {
    fail("usage: bulkhead-guest-bench KERNEL_DIR AGENT ROUNDS [WORKDIR]")
}
let kernelDir = args[1], agent = args[2]
let work = args.count > 4 ? args[4] : "/tmp/bulkhead-guest-bench"
try? FileManager.default.removeItem(atPath: work)
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)

func shell(_ command: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    try! p.run()
    p.waitUntilExit()
    if p.terminationStatus != 0 { fail("`\(command)` failed") }
}

func nowMs() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }

// Inputs, built once (outside the timed part): busybox rootfs image, agent initramfs, plain initramfs.
shell("mkdir -p \(work)/tree/bin && cp /bin/busybox \(work)/tree/bin/ && ln -sf busybox \(work)/tree/bin/sh && ln -sf busybox \(work)/tree/bin/echo")
let image = try RootfsImageStore(directory: work + "/cache").image(digest: "sha256:" + String(repeating: "0", count: 64), source: work + "/tree")
try Initramfs.build(agent: agent, output: work + "/agent.cpio")
let busybox = try Array(Data(contentsOf: URL(fileURLWithPath: "/bin/busybox")))
let initScript = "#!/bin/busybox sh\n/bin/busybox echo BULKHEAD-FIRST-OUTPUT\n/bin/busybox reboot -f\n"
try Initramfs.write([.directory("dev"), .characterDevice("dev/console", major: 5, minor: 1), .directory("bin"),
                     .file("bin/busybox", mode: 0o755, contents: busybox), .file("init", mode: 0o755, contents: Array(initScript.utf8))],
                    to: work + "/plain.cpio")

struct Sample { var firstOutput: Double; var exit: Double }

/// Plain QEMU: same kernel, trivial /init echoing a token on the serial console, then reboot -f.
func plainRound(kernel: String) -> Sample {
    var command = QEMUCommand(kernel: kernel, initramfs: work + "/plain.cpio", consoleLog: "-")
    command.extraKernelArguments = []
    let p = Process()
    p.executableURL = URL(fileURLWithPath: command.qemu)
    p.arguments = command.arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle(forWritingAtPath: "/dev/null")
    let start = nowMs()
    try! p.run()
    var seen = Data()
    var first = -1.0
    while first < 0 {
        let chunk = out.fileHandleForReading.availableData
        if chunk.isEmpty { break }
        seen += chunk
        if String(decoding: seen, as: UTF8.self).contains("BULKHEAD-FIRST-OUTPUT") { first = nowMs() - start }
    }
    _ = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    if first < 0 { fail("plain QEMU never printed its token; console:\n\(String(decoding: seen, as: UTF8.self))") }
    return Sample(firstOutput: first, exit: nowMs() - start)
}

/// Our path: QEMU + agent; the host handshakes, creates the container and starts `echo`; first output
/// is the first stdout frame back from the guest.
func agentRound(kernel: String, round: Int) -> Sample {
    let dir = "\(work)/r\(round)"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let control = try! UnixListener(path: dir + "/c.sock"), stdio = try! UnixListener(path: dir + "/s.sock")
    var command = QEMUCommand(kernel: kernel, initramfs: work + "/agent.cpio", consoleLog: dir + "/console.log")
    command.rootfsImage = image.path
    command.controlSocket = control.path
    command.stdioSocket = stdio.path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: command.qemu)
    p.arguments = command.arguments
    p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
    p.standardError = FileHandle(forWritingAtPath: "/dev/null")
    let start = nowMs()
    try! p.run()
    do {
        let channel = GuestChannel(control: try control.accept(timeoutMs: 30_000), stdio: try stdio.accept(timeoutMs: 30_000))
        try channel.handshake(timeoutMs: 60_000)
        let spec = #"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["echo","BULKHEAD-FIRST-OUTPUT"],"env":["PATH=/bin"],"cwd":"/"}}"#
        try channel.create(containerID: "bench", spec: Array(spec.utf8), timeoutMs: 30_000)
        try channel.send(.start)
        let first = try channel.wait(timeoutMs: 30_000, for: "output") { m -> Double? in
            if case let .output(_, _, data) = m, !data.isEmpty { return nowMs() - start }
            return nil
        }
        _ = try channel.collect([0], timeoutMs: 30_000)
        // The agent announces its power-off and waits for the host's go-ahead (the backend's behaviour).
        try? channel.send(.shutdown)
        p.waitUntilExit()
        return Sample(firstOutput: first, exit: nowMs() - start)
    } catch {
        p.terminate()
        fail("agent round \(round): \(error)\nconsole:\n\((try? String(contentsOfFile: dir + "/console.log", encoding: .utf8)) ?? "")")
    }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

for kernelFile in ["vmlinux", "bzImage"] {
    let kernel = "\(kernelDir)/\(kernelFile)"
    var plain: [Sample] = [], ours: [Sample] = []
    for round in 0..<rounds {
        // Interleaved so both see the same machine load.
        plain.append(plainRound(kernel: kernel))
        ours.append(agentRound(kernel: kernel, round: round))
    }
    let pf = median(plain.map(\.firstOutput)), of = median(ours.map(\.firstOutput))
    let pe = median(plain.map(\.exit)), oe = median(ours.map(\.exit))
    print("kernel \(kernelFile) (QEMU TCG, \(rounds) rounds each, interleaved; medians)")
    print(String(format: "  %-44@ %10@ %10@", "" as NSString, "plain" as NSString, "bulkhead" as NSString))
    print(String(format: "  %-44@ %8.0f ms %8.0f ms   ratio %.2f", "exec QEMU -> first workload output" as NSString, pf, of, of / pf))
    print(String(format: "  %-44@ %8.0f ms %8.0f ms   ratio %.2f", "exec QEMU -> QEMU exited (VM ended)" as NSString, pe, oe, oe / pe))
    print(String(format: "  %-44@ %+8.0f ms", "agent path overhead at first output" as NSString, of - pf))
}
print("initramfs sizes: plain \(try FileManager.default.attributesOfItem(atPath: work + "/plain.cpio")[.size]!) bytes, agent \(try FileManager.default.attributesOfItem(atPath: work + "/agent.cpio")[.size]!) bytes; rootfs image \(image.size) bytes (\(image.format))")
