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
