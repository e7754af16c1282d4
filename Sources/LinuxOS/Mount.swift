import CShims
#if canImport(Glibc)
import Glibc
#endif

/// mount(2) and umount2(2) through the syscall helper.
public enum Mount {
    public static func mount(source: String?, target: String, type: String?, flags: UInt = 0, data: String? = nil) throws {
        try sys(type.map { "mount \($0)" } ?? "mount", target) {
            Glibc.mount(source, target, type, flags, data)
        }
    }

    public static func unmount(_ target: String, flags: Int32 = 0) throws {
        try sys("umount", target) { umount2(target, flags) }
    }

    /// The mount points below (and at) `prefix`, deepest first, as /proc/self/mountinfo lists them.
    public static func mountPoints(under prefix: String) throws -> [String] {
        let fd = try FileDescriptor.open("/proc/self/mountinfo", O_RDONLY)
        let text = String(decoding: try fd.readAll(path: "/proc/self/mountinfo"), as: UTF8.self)
        var points: [String] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { continue }
            let point = unescapeMountinfo(String(fields[4]))
            if point == prefix || point.hasPrefix(prefix.hasSuffix("/") ? prefix : prefix + "/") { points.append(point) }
        }
        return points.sorted { $0.count > $1.count }
    }

    /// Whether `path` is a mount point in this process's view (false in a chroot onto a plain directory, where
    /// tools that remount `/`, such as podman's storage layer, fail).
    public static func isMountPoint(_ path: String) -> Bool {
        (try? mountPoints(under: path).contains(path)) ?? false
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescapeMountinfo(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var bytes: [UInt8] = []
        let utf8 = Array(s.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == 0x5c, i + 3 < utf8.count, let v = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(v); i += 4
            } else { bytes.append(utf8[i]); i += 1 }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Mount {
    /// Exposed for tests.
    public static func unescapeMountinfoForTesting(_ s: String) -> String { unescapeMountinfo(s) }
}
