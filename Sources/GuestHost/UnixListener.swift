import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// A listening unix stream socket a hypervisor's chardev connects to (one per guest port).
public final class UnixListener {
    public let fd: Int32
    public let path: String

    public init(path: String, backlog: Int32 = 1) throws {
        let bytes = Array(path.utf8)
        var addr = sockaddr_un()
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw GuestChannel.Failure("socket path \(path) is longer than \(MemoryLayout.size(ofValue: addr.sun_path) - 1) bytes; use a shorter state directory")
        }
        self.path = path
        fd = try sys("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let size = socklen_t(MemoryLayout<sockaddr_un>.size)
        do {
            try sys("bind", path) { withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } } }
            try sys("listen", path) { listen(fd, backlog) }
        } catch {
            close(fd)
            throw error
        }
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Accepts one connection (close-on-exec), waiting at most `timeoutMs`.
    public func accept(timeoutMs: Int32) throws -> Int32 {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = try sys("poll", path) { poll(&p, 1, timeoutMs) }
        guard ready == 1 else { throw GuestChannel.Failure("nothing connected to \(path) within \(timeoutMs) ms (did the hypervisor start?)") }
        let connection = try sys("accept", path) { Glibc.accept(fd, nil, nil) }
        _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
        return connection
    }
}

/// Client side of a unix stream socket.
public enum UnixSocket {
    /// Connects to `path`; the fd is close-on-exec and owned by the caller.
    public static func connect(_ path: String) throws -> Int32 {
        let bytes = Array(path.utf8)
        var addr = sockaddr_un()
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw GuestChannel.Failure("socket path \(path) is longer than \(MemoryLayout.size(ofValue: addr.sun_path) - 1) bytes; use a shorter --root")
        }
        let fd = try sys("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        do {
            try sys("connect", path) {
                withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }
}
