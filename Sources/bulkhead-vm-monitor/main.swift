// bulkhead-vm-monitor <state-directory>: one per microVM container, started by `bulkhead create` with the
// caller's stdio and a sync pipe as fd 3. It defines and starts a transient libvirt domain (monitor.json in the
// state directory says which), creates the container in the guest, reports "created" on fd 3, then waits for
// `start` on its command socket, relays stdin/stdout/stderr and signals between the caller and the guest agent,
// and exits with the workload's status (128+N for signal N) after destroying the domain.
import CShims
import CVirt
import FoundationEssentials
import GuestHost
import GuestProtocol
import LinuxOS
import MicroVMBackend
#if canImport(Glibc)
import Glibc
#endif

let syncFD: Int32 = 3

func report(_ line: String) {
    let bytes = Array((line.split(separator: "\n").joined(separator: " | ") + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(syncFD, $0.baseAddress, $0.count) }
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 { if errno == EINTR { continue }; return }
        offset += n
    }
}

func nowMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

func readFile(_ path: String, limit: Int = 16 << 20) throws -> [UInt8] {
    try FileDescriptor.open(path, O_RDONLY).readAll(limit: limit, path: path)
}

func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode).writeAll(bytes, path: path)
}

/// Copies the regular files of one directory into another (the QEMU capability cache, a few small XML files).
func copyFiles(from source: String, to target: String) {
    guard let dir = try? FileDescriptor.open(source, O_RDONLY | O_DIRECTORY), let names = try? dir.entries() else { return }
    try? HostPath.makeDirectories(target, mode: 0o700)
    for name in names {
        if let bytes = try? readFile(source + "/" + name) { try? writeFile(target + "/" + name + ".tmp", bytes); rename(target + "/" + name + ".tmp", target + "/" + name) }
    }
}

func lastVirtError() -> String {
    guard let message = virGetLastErrorMessage() else { return "unknown libvirt error" }
    return String(cString: message)
}

struct MonitorFailure: Error, CustomStringConvertible { let description: String }

/// The embedded driver's root: its qemu.conf (QEMU as root, no relabelling, stdio to files) and a seeded
/// capability cache (probing QEMU costs seconds per new root).
func prepareEmbedRoot(_ root: String, sharedCache: String?) throws {
    try HostPath.makeDirectories(root + "/etc", mode: 0o700)
    let conf = """
        # Written by bulkhead-vm-monitor: QEMU runs as root, without relabelling, stdio to files.
        user = "root"
        group = "root"
        stdio_handler = "file"
        security_driver = "none"
        dynamic_ownership = 0
        remember_owner = 0

        """
    // libvirt gives QEMU a private mount namespace (its own /dev), which needs `/` to be a mount point; in a chroot
    // onto a plain directory it fails ("Failed disable mount propagation out of the root filesystem"). There QEMU
    // runs without it, and monitor.log says so.
    var text = conf
    if !Mount.isMountPoint("/") {
        text += "namespaces = [ ]\n"
        logLine("warning: / is not a mount point (a chroot?): QEMU runs without libvirt's private mount namespace")
    }
    try writeFile(root + "/etc/qemu.conf", Array(text.utf8))
    if let sharedCache { copyFiles(from: sharedCache, to: root + "/cache/qemu/capabilities") }
}

func qemuPid(config: MonitorConfig) -> Int32? {
    let name = config.domain.name
    let candidates = [config.embedRoot.map { "\($0)/run/qemu/\(name).pid" }, "/run/libvirt/qemu/\(name).pid"].compactMap { $0 }
    for path in candidates {
        if let bytes = try? readFile(path, limit: 64), let pid = Int32(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) {
            return pid
        }
    }
    return nil
}

extension String {
    func trimmingCharacters(in _: Whitespace) -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" { s.removeLast() }
        return String(s)
    }
}
struct Whitespace { static let whitespacesAndNewlines = Whitespace() }

/// libvirt's event loop thread (libvirt needs one registered before a connection opens). Top-level functions,
/// not closures: a closure written in main.swift's top-level code is main-actor isolated and would trap when
/// libvirt calls it on another thread.
func runVirtEventLoop(_: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    while true { _ = virEventRunDefaultImpl() }
}

/// Errors are reported by the monitor itself (and logged to monitor.log), not printed by libvirt to stderr.
func ignoreVirtError(_: UnsafeMutableRawPointer?, _: virErrorPtr?) {}

// MARK: main

if CommandLine.arguments.count >= 2 && CommandLine.arguments[1] == "exec" {
    ExecClient.main(CommandLine.arguments)
}
guard CommandLine.arguments.count == 2 else {
    writeAll(2, Array("usage: bulkhead-vm-monitor STATE-DIRECTORY (started by bulkhead create; not a command to call)\n".utf8))
    exit(2)
}
let stateDirectory = CommandLine.arguments[1]
_ = setsid()

// Every signal is blocked in every thread (libvirt's included) and read from a signalfd in the main loop.
var allSignals = sigset_t()
sigfillset(&allSignals)
pthread_sigmask(SIG_BLOCK, &allSignals, nil)
let signalFD = signalfd(-1, &allSignals, Int32(SFD_CLOEXEC | SFD_NONBLOCK))

let config: MonitorConfig
do {
    config = try JSONDecoder().decode(MonitorConfig.self, from: Data(readFile(stateDirectory + "/" + MonitorConfig.fileName)))
} catch {
    report("error cannot read \(stateDirectory)/\(MonitorConfig.fileName): \(error)")
    exit(1)
}

let driver: any VMDriver
do {
    if config.usesOwnVMM {
        guard let launch = config.vmm else { throw MonitorFailure(description: "monitor.json asks for the kvm driver but describes no VM (vmm)") }
        driver = OwnVMMDriver(launch: launch, domain: config.domain, stateDirectory: stateDirectory)
    } else {
        driver = try LibvirtDriver(config: config, stateDirectory: stateDirectory)
    }
} catch {
    report("error \(error)")
    exit(1)
}

@MainActor func finish(_ code: Int32) -> Never {
    driver.destroy()
    exit(code)
}

let channel: GuestChannel
let commands: UnixListener
var terminal: HostTerminal? = nil
do {
    let control = try UnixListener(path: config.domain.controlSocket)
    let stdio = try UnixListener(path: config.domain.stdioSocket)
    commands = try UnixListener(path: stateDirectory + "/" + MonitorConfig.commandSocket, backlog: 16)
    // runc hands the engine the container's terminal during create; so do we (a host pty relayed to the guest's).
    if let socket = config.consoleSocket { terminal = try HostTerminal(consoleSocket: socket, controlling: true) }
    if let pid = try driver.start() {
        // The hypervisor process (QEMU or Bulkhead's VMM): `kill -9` and `delete` reach it through its pid.
        report("qemu \(pid)")
        try? writeFile(stateDirectory + "/" + MonitorConfig.qemuPidFile, Array("\(pid)\n".utf8))
    }
    let controlFD = try driver.accept(control, timeoutMs: 60_000)
    let stdioFD = try driver.accept(stdio, timeoutMs: 60_000)
    channel = GuestChannel(control: controlFD, stdio: stdioFD)
    do {
        try channel.handshake(timeoutMs: 300_000)
        try channel.create(containerID: config.containerID, spec: readFile(config.specPath), timeoutMs: 120_000)
    } catch {
        if let why = driver.explainEnd(waitMs: 2_000) { throw MonitorFailure(description: "\(error) (\(why))") }
        throw error
    }
    report("created")
    close(syncFD)
} catch {
    report("error \(error)")
    finish(1)
}

// MARK: relay

var started = false
var stdinOpen = true
var status: GuestExitStatus? = nil
var stdoutClosed = false, stderrClosed = false
var vmGone = false
var input = [UInt8](repeating: 0, count: 1 << 16)
let inputFD: Int32 = terminal?.slave ?? 0
let clientEncoder = FrameEncoder()
/// Most stdin bytes queued for the guest before the monitor stops reading its inputs (back-pressure).
let stdinQueueLimit = 1 << 20

/// One `bulkhead-vm-monitor exec` connected to the command socket: its process in the guest and its framed stream.
/// Frames to the client are queued and written as its socket accepts them (non-blocking): a client that stops
/// reading stalls neither the workload's stdio nor other execs. One that falls ``execBacklogLimit`` behind is cut off.
final class ExecConnection {
    let fd: Int32
    var decoder = FrameDecoder()
    var process: UInt32?
    var running = false
    var exited = false
    var outgoing: [UInt8] = []
    var offset = 0
    /// Close once the queue is written (the process ended).
    var closeWhenFlushed = false
    init(fd: Int32) { self.fd = fd }
    var pending: Int { outgoing.count - offset }
}
let execBacklogLimit = 64 << 20
var execConnections: [Int32: ExecConnection] = [:]
var nextProcess: UInt32 = 1
/// Command connections waiting for the guest's answer to ps / stats, in order.
var waitingForProcessList: [Int32] = []
var waitingForStats: [Int32] = []

@MainActor func reply(_ fd: Int32, _ text: String) {
    writeAll(fd, Array((text + "\n").utf8))
    close(fd)
}

@MainActor func jsonLine<T: Encodable>(_ value: T) -> String {
    (try? JSONEncoder().encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "error cannot encode the answer"
}

@MainActor func dropExec(_ c: ExecConnection) {
    // The host side went away while its process runs: the process has nobody to report to, end it.
    if !c.exited, let p = c.process { try? channel.send(.signal(process: p, signal: SIGKILL)) }
    close(c.fd)
    execConnections[c.fd] = nil
}

/// Writes what the client's socket takes now; closes the connection once an ended process's queue is out.
@MainActor func flushExec(_ c: ExecConnection) {
    while c.pending > 0 {
        let n = c.outgoing.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.offset, $0.count - c.offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if n > 0 { c.offset += n; continue }
        if n < 0 && errno == EINTR { continue }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
        // The client is gone.
        c.outgoing.removeAll(); c.offset = 0
        dropExec(c)
        return
    }
    if c.pending == 0 {
        c.outgoing.removeAll(keepingCapacity: true); c.offset = 0
        if c.closeWhenFlushed {
            close(c.fd)
            execConnections[c.fd] = nil
        }
    }
}

@MainActor func toExec(_ process: UInt32, _ message: Message) {
    guard let c = execConnections.values.first(where: { $0.process == process }) else { return }
    if let frame = try? clientEncoder.encode(message) { c.outgoing += frame }
    switch message {
    case .started:
        c.running = true
    case .exited:
        c.exited = true
        c.closeWhenFlushed = true
    case .error where !c.running:
        // The process never ran: nothing more will come for it.
        c.exited = true
        c.closeWhenFlushed = true
    default: break
    }
    if c.pending > execBacklogLimit {
        logLine("exec client of process \(process) is \(c.pending) bytes behind; cutting it off (its process is killed)")
        dropExec(c)
        return
    }
    flushExec(c)
}

@MainActor func handle(_ message: Message) {
    switch message {
    case let .output(0, stream, data):
        if data.isEmpty {
            if stream == .stdout { stdoutClosed = true } else { stderrClosed = true }
        } else {
            writeAll(terminal?.slave ?? (stream == .stdout ? 1 : 2), data)
        }
    case let .exited(0, s): status = s
    case let .error(0, text):
        writeAll(2, Array("bulkhead: the container's process failed in the guest: \(text)\n".utf8))
        if status == nil { status = .exited(127) }
        stdoutClosed = true; stderrClosed = true
    case let .started(p, _) where p != 0: toExec(p, message)
    case let .output(p, _, _) where p != 0: toExec(p, message)
    case let .exited(p, _) where p != 0: toExec(p, message)
    case let .error(p, _) where p != 0 && p != Message.noProcess: toExec(p, message)
    case let .processList(list):
        if !waitingForProcessList.isEmpty { reply(waitingForProcessList.removeFirst(), jsonLine(list)) }
    case let .stats(s):
        if !waitingForStats.isEmpty { reply(waitingForStats.removeFirst(), jsonLine(s)) }
    case let .error(_, text):
        // A request without a process failed (ps or stats on an old agent, …): answer whoever waits.
        if !waitingForProcessList.isEmpty { reply(waitingForProcessList.removeFirst(), "error \(text)") }
        else if !waitingForStats.isEmpty { reply(waitingForStats.removeFirst(), "error \(text)") }
    default: break
    }
}

/// Reads frames from an exec connection and forwards them to the guest as that connection's process.
@MainActor func serveExec(_ c: ExecConnection) {
    let n = input.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
    if n < 0 && (errno == EINTR || errno == EAGAIN) { return }
    if n <= 0 { dropExec(c); return }
    c.decoder.append(input[0..<n])
    do {
        while let message = try c.decoder.next() {
            switch (message, c.process) {
            case let (.exec(_, spec), nil):
                let p = nextProcess
                nextProcess += 1
                c.process = p
                try channel.send(.exec(process: p, spec: spec))
            case let (.stdin(_, data), p?): try channel.queueStdin(process: p, data)
            case let (.closeStdin, p?): try channel.send(.closeStdin(process: p))
            case let (.signal(_, sig), p?): try channel.send(.signal(process: p, signal: sig))
            case let (.windowSize(_, rows, columns), p?): try channel.send(.windowSize(process: p, rows: rows, columns: columns))
            default:
                throw MonitorFailure(description: "unexpected \(message.type) from an exec client")
            }
        }
    } catch {
        if let frame = try? clientEncoder.encode(.error(process: 0, message: "\(error)")) { writeAll(c.fd, frame) }
        dropExec(c)
    }
}

@MainActor func serveCommand() {
    guard let fd = try? commands.accept(timeoutMs: 0) else { return }
    var line: [UInt8] = []
    var byte: UInt8 = 0
    while line.count < 256 {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 1000) == 1 else { break }
        let n = read(fd, &byte, 1)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 || byte == 10 { break }
        line.append(byte)
    }
    let command = String(decoding: line, as: UTF8.self)
    switch command {
    case "start":
        if started { reply(fd, "error already started"); return }
        do {
            try channel.send(.start)
            started = true
            if let size = terminal?.size { try? channel.send(.windowSize(process: 0, rows: size.rows, columns: size.columns)) }
            reply(fd, "ok")
        } catch { reply(fd, "error \(error)") }
    case "exec":
        guard started, status == nil else { reply(fd, "error the container is not running"); return }
        guard access(stateDirectory + "/" + MonitorConfig.pausedMarker, F_OK) != 0 else { reply(fd, "error the container is paused"); return }
        writeAll(fd, Array("ok\n".utf8))
        execConnections[fd] = ExecConnection(fd: fd)
    case "pause":
        if let problem = driver.pause() { reply(fd, "error \(problem)"); return }
        try? writeFile(stateDirectory + "/" + MonitorConfig.pausedMarker, [])
        reply(fd, "ok")
    case "resume":
        guard access(stateDirectory + "/" + MonitorConfig.pausedMarker, F_OK) == 0 else { reply(fd, "error the container is not paused"); return }
        if let problem = driver.resume() { reply(fd, "error \(problem)"); return }
        unlink(stateDirectory + "/" + MonitorConfig.pausedMarker)
        reply(fd, "ok")
    case let line where line.hasPrefix("signal-all "):
        guard let sig = Int32(line.dropFirst(11)), sig > 0, sig < 65 else { reply(fd, "error bad signal in '\(line.prefix(40))'"); return }
        guard started else { reply(fd, "error the container has not started"); return }
        do {
            // The exec'd processes first: when the workload ends, the guest powers off.
            for c in execConnections.values where c.running && !c.exited {
                if let p = c.process { try channel.send(.signal(process: p, signal: sig)) }
            }
            if status == nil { try channel.send(.signal(process: 0, signal: sig)) }
            reply(fd, "ok")
        } catch { reply(fd, "error \(error)") }
    case "ps", "stats":
        guard access(stateDirectory + "/" + MonitorConfig.pausedMarker, F_OK) != 0 else { reply(fd, "error the container is paused (its guest cannot answer)"); return }
        do {
            try channel.send(command == "ps" ? .listProcesses : .statsRequest)
            if command == "ps" { waitingForProcessList.append(fd) } else { waitingForStats.append(fd) }
        } catch { reply(fd, "error \(error)") }
    default:
        reply(fd, "error unknown command '\(command.prefix(40))'")
    }
}

while !(status != nil && stdoutClosed && stderrClosed) && !vmGone {
    let backlogged = channel.queuedStdinBytes >= stdinQueueLimit
    let wantStdin = started && stdinOpen && !backlogged
    var fds = [pollfd(fd: commands.fd, events: Int16(POLLIN), revents: 0),
               pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0),
               pollfd(fd: channel.control, events: Int16(POLLIN), revents: 0),
               pollfd(fd: channel.stdio, events: Int16(POLLIN | (channel.hasQueuedStdin ? POLLOUT : 0)), revents: 0),
               pollfd(fd: wantStdin ? inputFD : -1, events: Int16(POLLIN), revents: 0)]
    let execs = Array(execConnections.values)
    for c in execs {
        // Reading from a client is held back while the guest's stdin queue is full; writing to it never is.
        let events = (backlogged || c.closeWhenFlushed ? 0 : POLLIN) | (c.pending > 0 ? POLLOUT : 0)
        fds.append(pollfd(fd: c.fd, events: Int16(events), revents: 0))
    }
    let r = poll(&fds, nfds_t(fds.count), 1000)
    if r < 0 { if errno == EINTR { continue }; break }
    if fds[0].revents != 0 { serveCommand() }
    if fds[1].revents != 0 {
        var info = signalfd_siginfo()
        while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            let sig = Int32(info.ssi_signo)
            if sig == SIGWINCH {
                if started, let size = terminal?.size { try? channel.send(.windowSize(process: 0, rows: size.rows, columns: size.columns)) }
                continue
            }
            if sig == SIGCHLD { _ = driver.reap(); continue }
            if sig == SIGPIPE || sig == SIGURG { continue }
            if started {
                try? channel.send(.signal(process: 0, signal: sig))
            } else if sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT {
                // Not started: the process never ran; the signal ends the container.
                finish(128 + sig)
            }
        }
    }
    if fds[4].revents != 0 {
        let n = input.withUnsafeMutableBytes { read(inputFD, $0.baseAddress, $0.count) }
        if n > 0 {
            try? channel.queueStdin(process: 0, Array(input[0..<n]))
        } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
            // A terminal's EIO means the engine closed its master: nothing more will be typed (no EOF to send).
            stdinOpen = false
            if terminal == nil { try? channel.send(.closeStdin(process: 0)) }
        }
    }
    for (i, c) in execs.enumerated() where fds[5 + i].revents != 0 && execConnections[c.fd] != nil {
        if fds[5 + i].revents & Int16(POLLOUT) != 0 { flushExec(c) }
        if execConnections[c.fd] != nil && fds[5 + i].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && !c.closeWhenFlushed { serveExec(c) }
    }
    if fds[2].revents != 0 || fds[3].revents != 0 {
        do {
            while let message = try channel.receive(deadlineMs: nowMs() + 1) { handle(message) }
        } catch {
            vmGone = true
        }
    }
}

// What the exec'd processes wrote last still goes to their clients (a little patience for slow readers).
let flushDeadline = nowMs() + 2_000
while nowMs() < flushDeadline, let c = execConnections.values.first(where: { $0.pending > 0 }) {
    var p = pollfd(fd: c.fd, events: Int16(POLLOUT), revents: 0)
    if poll(&p, 1, 100) > 0 { flushExec(c) }
}
for c in execConnections.values { close(c.fd) }
for fd in waitingForProcessList + waitingForStats { reply(fd, "error the container ended") }
unlink(stateDirectory + "/" + MonitorConfig.pausedMarker)
if let status { finish(status.shellCode) }
// The VM ended without reporting the process's exit (killed with SIGKILL, or it crashed).
finish(137)
