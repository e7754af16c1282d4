import CShims
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call: which operation, on what, the errno, and what the user can do next.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The operation, e.g. `"openat2"` or `"mount overlay"`.
    public let operation: String
    /// The path (or other subject) the operation was applied to, if any.
    public let path: String?
    /// The raw errno value.
    public let errno: Int32
    /// A hint telling the user what to do next; derived from the errno when not given.
    public let hint: String?

    public init(operation: String, path: String? = nil, errno: Int32, hint: String? = nil) {
        self.operation = operation
        self.path = path
        self.errno = errno
        self.hint = hint
    }

    /// The errno's text, as strerror(3) gives it.
    public var reason: String { String(cString: strerror(errno)) }

    public var description: String {
        var text = operation
        if let path { text += " \(path)" }
        text += ": \(reason)"
        if let next = hint ?? Self.defaultHint(errno) { text += " (\(next))" }
        return text
    }

    static func defaultHint(_ errno: Int32) -> String? {
        switch errno {
        case EPERM, EACCES: return "run as root, or check the permissions on the path"
        case ENOENT: return "check that the path exists"
        case ENOSPC: return "free some disk space and try again"
        case EMFILE, ENFILE: return "raise the open-file limit (ulimit -n)"
        case ENOSYS: return "this kernel does not offer the call; a newer kernel is needed"
        default: return nil
        }
    }
}

/// Runs one system call, retrying while it fails with EINTR, and turns a failure into a
/// ``SystemError`` that names the operation and the path.
///
/// `body` must return -1 and set errno on failure (the libc convention).
@inlinable
@discardableResult
public func sys<T: BinaryInteger>(_ operation: @autoclosure () -> String, _ path: @autoclosure () -> String? = nil,
                                  hint: @autoclosure () -> String? = nil, _ body: () -> T) throws -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = bh_errno()
        if code == EINTR { continue }
        throw SystemError(operation: operation(), path: path(), errno: code, hint: hint())
    }
}

/// Like ``sys(_:_:hint:_:)`` for calls that return a pointer and signal failure with `nil`.
@inlinable
public func sysPointer<T>(_ operation: @autoclosure () -> String, _ path: @autoclosure () -> String? = nil,
                          _ body: () -> T?) throws -> T {
    while true {
        if let result = body() { return result }
        let code = bh_errno()
        if code == EINTR { continue }
        throw SystemError(operation: operation(), path: path(), errno: code)
    }
}

/// openat2(2) resolve flags, re-exported for callers that do not import CShims.
public let BH_RESOLVE_IN_ROOT_VALUE: UInt64 = BH_RESOLVE_IN_ROOT
public let BH_RESOLVE_BENEATH_VALUE: UInt64 = BH_RESOLVE_BENEATH
public let BH_RESOLVE_NO_SYMLINKS_VALUE: UInt64 = BH_RESOLVE_NO_SYMLINKS
public let BH_RESOLVE_NO_MAGICLINKS_VALUE: UInt64 = BH_RESOLVE_NO_MAGICLINKS
