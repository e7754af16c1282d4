import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The engine side of `--console-socket` for `bulkhead run -t IMAGE`: receives the container's pty master and
/// copies between it and our own stdin/stdout (stdin in raw mode when it is a terminal) until the program exits.
final class ConsoleRelay {
    let path: String
    let listener: FileDescriptor
    let interactive: Bool

    init(path: String, interactive: Bool) throws {
        self.path = path
        self.interactive = interactive
        let raw = try sys("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        listener = FileDescriptor(adopting: raw)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw SystemError(operation: "bind", path: path, errno: ENAMETOOLONG, hint: "use a shorter --root")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { dst in for (i, b) in bytes.enumerated() { dst[i] = b } }
        unlink(path)
        _ = try withUnsafePointer(to: &address) { ptr in
            try ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                try sys("bind", path) { bind(raw, sa, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
        try sys("listen", path) { listen(raw, 1) }
    }

    /// Relays until `pid` (a child of ours) exits; returns its exit status.
    func relay(untilExitOf pid: Int32) -> Int32 {
        let conn = accept(listener.raw, nil, nil)
        var name = [CChar](repeating: 0, count: 64)
        let master = conn >= 0 ? bh_recv_fd(conn, &name, 63) : -1
        if conn >= 0 { close(conn) }
        var saved = termios()
        let stdinIsTTY = isatty(0) == 1
        if stdinIsTTY && interactive {
            tcgetattr(0, &saved)
            var rawMode = saved
            cfmakeraw(&rawMode)
            tcsetattr(0, TCSANOW, &rawMode)
        }
        defer { if stdinIsTTY && interactive { tcsetattr(0, TCSANOW, &saved) } }
        var buffer = [UInt8](repeating: 0, count: 8192)
        var stdinOpen = interactive
        var status: Int32 = 0
        while true {
            if waitpid(pid, &status, WNOHANG) == pid {
                // Drain what is left on the terminal.
                if master >= 0 { _ = bh_fcntl_int(master, F_SETFL, O_NONBLOCK); copy(master, 1, &buffer) }
                return ChildProcess.exitCode(fromWaitStatus: status)
            }
            var fds = [pollfd(fd: master, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stdinOpen ? 0 : -1, events: Int16(POLLIN), revents: 0)]
            if master < 0 { usleep(20_000); continue }
            let r = poll(&fds, 2, 50)
            if r <= 0 { continue }
            if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let n = read(master, &buffer, buffer.count)
                if n > 0 { writeAll(1, buffer, n) }
            }
            if stdinOpen && fds[1].revents & Int16(POLLIN | POLLHUP) != 0 {
                let n = read(0, &buffer, buffer.count)
                if n > 0 { writeAll(master, buffer, n) } else { stdinOpen = false }
            }
        }
    }

    func copy(_ from: Int32, _ to: Int32, _ buffer: inout [UInt8]) {
        while true {
            let n = read(from, &buffer, buffer.count)
            if n <= 0 { return }
            writeAll(to, buffer, n)
        }
    }

    func writeAll(_ fd: Int32, _ buffer: [UInt8], _ count: Int) {
        var off = 0
        while off < count {
            let n = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + off, count - off) }
            if n <= 0 { if errno == EINTR { continue }; return }
            off += n
        }
    }
}
