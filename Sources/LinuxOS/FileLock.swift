#if canImport(Glibc)
import Glibc
#endif

/// An advisory lock (flock(2)) on a lock file, held until the value goes away.
///
/// Used to serialise concurrent `bulkhead` processes on the image store and on one container's state.
public struct FileLock: ~Copyable {
    public enum Mode { case shared, exclusive }
    private let fd: FileDescriptor
    public let path: String

    /// Opens (creating if needed) `path` and waits for the lock.
    public init(path: String, mode: Mode = .exclusive) throws {
        let opened = try FileDescriptor.open(path, O_RDWR | O_CREAT, mode: 0o600)
        let op = mode == .exclusive ? LOCK_EX : LOCK_SH
        try sys("flock", path) { flock(opened.raw, op) }
        self.fd = opened
        self.path = path
    }

    /// Takes the lock only if nobody holds it; returns nil when it is busy.
    public static func tryLock(path: String, mode: Mode = .exclusive) throws -> FileLock? {
        let fd = try FileDescriptor.open(path, O_RDWR | O_CREAT, mode: 0o600)
        let op = (mode == .exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB
        if flock(fd.raw, op) != 0 {
            if errno == EWOULDBLOCK { return nil }
            throw SystemError(operation: "flock", path: path, errno: errno)
        }
        return FileLock(fd: fd, path: path)
    }

    private init(fd: consuming FileDescriptor, path: String) {
        self.fd = fd
        self.path = path
    }
}
