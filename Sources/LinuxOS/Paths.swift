#if canImport(Glibc)
import Glibc
#endif

/// Whole-path operations on host paths (for paths the host owner controls, such as configuration files;
/// paths inside a rootfs go through `*at()` calls on a directory fd instead).
public enum HostPath {
    /// The canonical absolute path, every symlink resolved (realpath(3)).
    public static func resolve(_ path: String) throws -> String {
        let p = try sysPointer("realpath", path) { realpath(path, nil) }
        defer { free(p) }
        return String(cString: p)
    }

    /// mkdir -p: every missing directory of `path` is made with `mode`; those that exist are left as they are.
    /// Works on the C string one "/" at a time, with no String splitting (it runs in every container start, where
    /// the generic code of splitting and `String + Substring` paid run-time type lookups).
    public static func makeDirectories(_ path: String, mode: mode_t) throws {
        var c = Array(path.utf8CString)
        let slash = CChar(UInt8(ascii: "/"))
        func make(_ end: Int) throws {
            if c.withUnsafeBufferPointer({ mkdir($0.baseAddress!, mode) }) != 0 && errno != EEXIST {
                throw SystemError(operation: "mkdir", path: String(decoding: c[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self), errno: errno)
            }
        }
        for k in 1..<max(c.count - 1, 1) where c[k] == slash && c[k - 1] != slash {
            c[k] = 0
            try make(k)
            c[k] = slash
        }
        if c.count > 1 { try make(c.count - 1) }
    }

    /// lstat(2) or stat(2) of a path.
    public static func stat(_ path: String, followSymlinks: Bool = true) throws -> Glibc.stat {
        var st = Glibc.stat()
        if followSymlinks {
            try sys("stat", path) { fstatat(AT_FDCWD, path, &st, 0) }
        } else {
            try sys("lstat", path) { lstat(path, &st) }
        }
        return st
    }

    /// The directories from `/` down to the one holding `path` (which must be absolute and canonical).
    public static func ancestors(of path: String) -> [String] {
        var out = ["/"]
        var current = ""
        let parts = path.split(separator: "/")
        for part in parts.dropLast() {
            current += "/" + part
            out.append(current)
        }
        return out
    }
}
