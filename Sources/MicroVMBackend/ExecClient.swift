import CShims
import GuestHost
import GuestProtocol
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead-vm-monitor exec STATE-DIR PROCESS-JSON [CONSOLE-SOCKET]`: the host-side stand-in for one process
/// exec'd in a microVM (its pid is the one `bulkhead exec` waits for, writes to --pid-file, and that engines
/// signal). It asks the container's monitor (its command socket) to run the process in the guest, then relays:
/// its stdin (or the terminal it handed to CONSOLE-SOCKET) to the guest process, the process's output to its
/// stdout/stderr (or the terminal), signals it receives to the process, and exits with the process's status
/// (128+N for signal N). fd 3 is a sync pipe: one line, `started <guest-pid>` or `error <text>`.
public enum ExecClient {
    static let syncFD: Int32 = 3

    static func report(_ line: String) {
        let bytes = Array((line.split(separator: "\n").joined(separator: " | ") + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(syncFD, $0.baseAddress, $0.count) }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0); _ = poll(&p, 1, 100); continue }
                return false
            }
            offset += n
        }
        return true
    }

    /// Sends one command line to the monitor and reads its one-line reply (the connection stays open).
    static func command(_ fd: Int32, _ line: String) throws -> String {
        guard writeAll(fd, Array((line + "\n").utf8)) else { throw SystemError(operation: "write", path: "monitor socket", errno: errno) }
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        while reply.count < 4096 {
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 || byte == 10 { break }
            reply.append(byte)
        }
        return String(decoding: reply, as: UTF8.self)
    }

    public static func main(_ arguments: [String]) -> Never {
        guard arguments.count >= 4 else {
            _ = writeAll(2, Array("usage: bulkhead-vm-monitor exec STATE-DIR PROCESS-JSON [CONSOLE-SOCKET] (started by bulkhead exec)\n".utf8))
            exit(2)
        }
        let stateDirectory = arguments[2], processPath = arguments[3]
        let consoleSocket = arguments.count > 4 && !arguments[4].isEmpty ? arguments[4] : nil
        var all = sigset_t()
        sigfillset(&all)
        sigprocmask(SIG_BLOCK, &all, nil)
        let signals = signalfd(-1, &all, Int32(SFD_CLOEXEC | SFD_NONBLOCK))

        let monitor: Int32
        let terminal: HostTerminal?
        do {
            let spec = try FileDescriptor.open(processPath, O_RDONLY).readAll(limit: GuestProtocolLimits.default.maxDocument, path: processPath)
            unlink(processPath)
            if let consoleSocket {
                // A session of our own whose controlling terminal is the pty: resizes arrive as SIGWINCH.
                _ = setsid()
                terminal = try HostTerminal(consoleSocket: consoleSocket, controlling: true)
            } else {
                terminal = nil
            }
            monitor = try UnixSocket.connect(stateDirectory + "/" + MonitorConfig.commandSocket)
            let reply = try command(monitor, "exec")
            guard reply == "ok" else { throw MicroVMError("the microVM monitor refused exec: \(reply)") }
            guard writeAll(monitor, try FrameEncoder().encode(.exec(process: 0, spec: spec))) else {
                throw MicroVMError("the microVM monitor closed the connection")
            }
        } catch {
            report("error \(error)")
            exit(255)
        }
        let input: Int32 = terminal?.slave ?? 0
        let encoder = FrameEncoder()
        var decoder = FrameDecoder()
        var started = false
        var stdinOpen = true
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        // Frames to the monitor are queued and written as the socket takes them, so this loop always goes on
        // reading the monitor's output frames (two blocking writers facing each other would deadlock).
        _ = fcntl(monitor, F_SETFL, fcntl(monitor, F_GETFL) | O_NONBLOCK)
        var outgoing: [UInt8] = []
        var outgoingOffset = 0
        let outgoingLimit = 1 << 20
        func send(_ message: Message) {
            if let frame = try? encoder.encode(message) { outgoing += frame }
        }
        func flush() {
            while outgoingOffset < outgoing.count {
                let n = outgoing.withUnsafeBytes { write(monitor, $0.baseAddress! + outgoingOffset, $0.count - outgoingOffset) }
                if n < 0 { if errno == EINTR { continue }; return }
                outgoingOffset += n
            }
            outgoing.removeAll(keepingCapacity: true)
            outgoingOffset = 0
        }
        while true {
            let pending = outgoing.count - outgoingOffset
            var fds = [pollfd(fd: monitor, events: Int16(POLLIN | (pending > 0 ? POLLOUT : 0)), revents: 0),
                       pollfd(fd: signals, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: started && stdinOpen && pending < outgoingLimit ? input : -1, events: Int16(POLLIN), revents: 0)]
            let r = poll(&fds, 3, 1000)
            if r < 0 { if errno == EINTR { continue }; break }
            if fds[0].revents & Int16(POLLOUT) != 0 { flush() }
            if fds[1].revents != 0 {
                var info = signalfd_siginfo()
                while read(signals, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                    let sig = Int32(info.ssi_signo)
                    if sig == SIGWINCH {
                        if let size = terminal?.size { send(.windowSize(process: 0, rows: size.rows, columns: size.columns)) }
                        continue
                    }
                    if sig == SIGCHLD || sig == SIGPIPE || sig == SIGURG { continue }
                    if started { send(.signal(process: 0, signal: sig)) } else { report("error interrupted by signal \(sig)"); exit(128 + sig) }
                }
                flush()
            }
            if fds[2].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                if n > 0 {
                    send(.stdin(process: 0, data: Array(buffer[0..<n])))
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    // A terminal's EIO means the engine closed the master: nothing more will be typed.
                    stdinOpen = false
                    if terminal == nil { send(.closeStdin(process: 0)) }
                }
                flush()
            }
            if fds[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(monitor, $0.baseAddress, $0.count) }
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                if n <= 0 {
                    // The monitor went away: the VM ended (or was killed) under the process.
                    if !started { report("error the microVM monitor ended before the process started") ; exit(255) }
                    exit(137)
                }
                decoder.append(buffer[0..<n])
                do {
                    while let message = try decoder.next() {
                        switch message {
                        case let .started(_, pid):
                            if !started {
                                started = true
                                report("started \(pid)")
                                close(syncFD)
                                if let size = terminal?.size { send(.windowSize(process: 0, rows: size.rows, columns: size.columns)); flush() }
                            }
                        case let .output(_, stream, data):
                            if !data.isEmpty { _ = writeAll(terminal?.slave ?? (stream == .stdout ? 1 : 2), data) }
                        case let .exited(_, status):
                            exit(status.shellCode)
                        case let .error(_, text):
                            if !started { report("error \(text)"); exit(255) }
                            _ = writeAll(2, Array("bulkhead exec: \(text)\n".utf8))
                        default:
                            break
                        }
                    }
                } catch {
                    if !started { report("error \(error)") }
                    exit(255)
                }
            }
        }
        exit(255)
    }
}
