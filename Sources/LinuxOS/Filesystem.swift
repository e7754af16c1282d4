import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Filesystem type magics (statfs(2) `f_type`) Bulkhead looks for.
public enum FilesystemMagic {
    public static let cgroup2: Int = 0x6367_7270
    public static let cgroup1: Int = 0x0027_e0eb
    public static let tmpfs: Int = 0x0102_1994
    public static let overlayfs: Int = 0x794c_7630
    public static let proc: Int = 0x9fa0
}

/// The filesystem type magic of the filesystem holding `path`.
public func filesystemMagic(_ path: String) throws -> Int {
    var st = statfs()
    try sys("statfs", path) { statfs(path, &st) }
    return Int(st.f_type)
}
