import CShims
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The runtime ↔ container-init channel: one end of a SOCK_SEQPACKET socketpair, so every send is one
/// message. Messages are `verb[ payload]` (text) or raw JSON for the configuration.
/// A plain value (no close on deinit): the init never closes it (it is close-on-exec), the runtime closes it
/// with ``close()`` or at exit.
struct SyncSocket {
    let raw: Int32

    init(adopting raw: Int32) { self.raw = raw }

    func close() { _ = Glibc.close(raw) }

    static func pair() throws -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        try sys("socketpair", nil) { socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) }
        return (fds[0], fds[1])
    }

    func send(_ bytes: [UInt8]) throws {
        let n = try bytes.withUnsafeBytes { b in
            try sys("send", "sync socket") { Glibc.send(raw, b.baseAddress, b.count, Int32(MSG_NOSIGNAL)) }
        }
        if n != bytes.count { throw SystemError(operation: "send", path: "sync socket", errno: EMSGSIZE) }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// The next message, or nil when the peer has gone (end of file).
    /// The buffer is left uninitialised: zeroing `limit` bytes for every message (1 MiB by default) cost a page fault
    /// per page in each container start; recv touches only what it writes.
    func receive(limit: Int = 1 << 20) throws -> [UInt8]? {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: limit, alignment: 1)
        defer { buffer.deallocate() }
        let n = try sys("recv", "sync socket") { Glibc.recv(raw, buffer.baseAddress, limit, 0) }
        if n == 0 { return nil }
        return [UInt8](UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
    }

    func receiveText() throws -> String? {
        try receive(limit: 65536).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Waits up to `timeoutMs` for `fd` to become readable; false on timeout.
func waitReadable(_ fd: Int32, timeoutMs: Int32) -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let r = poll(&p, 1, timeoutMs)
        if r < 0 && errno == EINTR { continue }
        return r > 0
    }
}

/// Connects to the unix socket at `path` (the engine's `--console-socket`).
func connectUnixSocket(_ path: String) throws -> FileDescriptor {
    let raw = try sys("socket", path) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
    let fd = FileDescriptor(adopting: raw)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        throw SystemError(operation: "connect", path: path, errno: ENAMETOOLONG, hint: "use a shorter socket path")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { dst in
        for (i, b) in bytes.enumerated() { dst[i] = b }
        dst[bytes.count] = 0
    }
    let len = socklen_t(MemoryLayout<sockaddr_un>.size)
    _ = try withUnsafePointer(to: &address) { ptr in
        try ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            try sys("connect", path) { connect(fd.raw, sa, len) }
        }
    }
    return fd
}
