import CShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The engine's side of `--console-socket`: listens on a unix socket, receives the pty master (SCM_RIGHTS) and
/// reads everything the container writes to its terminal.
final class ConsoleSocketServer: @unchecked Sendable {
    let listener: Int32
    private var output = ""
    private let done = DispatchSemaphore(value: 0)

    init(path: String) throws {
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { dst in
            for (i, b) in path.utf8.enumerated() { dst[i] = b }
        }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0, listen(listener, 1) == 0 else { throw POSIXError(.EADDRINUSE) }
        Thread.detachNewThread { [self] in self.serve() }
    }

    private func serve() {
        defer { done.signal() }
        let conn = accept(listener, nil, nil)
        guard conn >= 0 else { return }
        var name = [CChar](repeating: 0, count: 256)
        let master = bh_recv_fd(conn, &name, 255)
        close(conn)
        guard master >= 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(master, &buffer, buffer.count)
            if n <= 0 { break }   // EIO once the last slave fd closes
            output += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        close(master)
    }

    func receiveAndRead(timeout: Double = 20) -> String {
        _ = done.wait(timeout: .now() + timeout)
        close(listener)
        return output
    }
}
