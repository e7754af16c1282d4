import FoundationEssentials
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// Which libvirt domain type this host gets: `kvm` when it can run a stock guest kernel under KVM, else `qemu`
/// (TCG emulation). The probe reads the host's KVM provider; its result is cached under the data root (so every
/// container of a host agrees) and shown by `bulkhead info`. Delete the file to probe again.
public struct HypervisorProbe: Codable, Sendable, Equatable {
    public var domainType: String
    public var reason: String

    public init(domainType: String, reason: String) { self.domainType = domainType; self.reason = reason }

    public static func cachePath(dataRoot: String) -> String { dataRoot + "/microvm/hypervisor-probe.json" }

    /// The cached result, probing (and caching) when there is none.
    public static func load(dataRoot: String) -> HypervisorProbe {
        let path = cachePath(dataRoot: dataRoot)
        if let fd = try? FileDescriptor.open(path, O_RDONLY), let bytes = try? fd.readAll(limit: 1 << 16),
           let cached = try? JSONDecoder().decode(HypervisorProbe.self, from: Data(bytes)) {
            return cached
        }
        let result = probe()
        if let bytes = try? JSONEncoder().encode(result) {
            try? MicroVMPaths.makeDirectories(dataRoot + "/microvm")
            if let fd = try? FileDescriptor.open(path + ".tmp", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) {
                try? fd.writeAll(Array(bytes), path: path)
                _ = rename(path + ".tmp", path)
            }
        }
        return result
    }

    /// Reads /dev/kvm and the loaded KVM module. kvm_pvm (a paravirtual nested KVM) runs small 64-bit guests but
    /// not a stock Linux kernel (DESIGN.md §3), so it counts as "no usable KVM".
    public static func probe(sysModule: String = "/sys/module", kvmDevice: String = "/dev/kvm") -> HypervisorProbe {
        let fd = open(kvmDevice, O_RDWR | O_CLOEXEC)
        if fd < 0 {
            return HypervisorProbe(domainType: "qemu", reason: "\(kvmDevice) cannot be opened (\(String(cString: strerror(errno)))): TCG emulation")
        }
        close(fd)
        if access(sysModule + "/kvm_pvm", F_OK) == 0 {
            return HypervisorProbe(domainType: "qemu", reason: "\(kvmDevice) is kvm_pvm (paravirtual nested KVM), which does not boot a stock Linux guest kernel: TCG emulation")
        }
        for module in ["kvm_intel", "kvm_amd"] where access(sysModule + "/" + module, F_OK) == 0 {
            return HypervisorProbe(domainType: "kvm", reason: "\(kvmDevice) is provided by \(module) (hardware virtualization)")
        }
        return HypervisorProbe(domainType: "qemu", reason: "\(kvmDevice) exists but neither kvm_intel nor kvm_amd is loaded (unknown KVM provider): TCG emulation")
    }
}

/// Where the microVM tier finds its parts and keeps its files.
public enum MicroVMPaths {
    public static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws {
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, mode) != 0 && errno != EEXIST { throw SystemError(operation: "mkdir", path: prefix, errno: errno) }
        }
    }

    /// The directory of the running executable (helpers are installed next to `bulkhead`).
    public static func executableDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "/usr/local/bin" }
        let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    }

    static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

    /// `bulkhead-vm-monitor`: `$BULKHEAD_LIBEXEC/`, else next to the running binary.
    public static func monitor() throws -> String {
        let dirs = [environment("BULKHEAD_LIBEXEC"), executableDirectory()].compactMap { $0 }
        for d in dirs where isExecutable(d + "/bulkhead-vm-monitor") { return d + "/bulkhead-vm-monitor" }
        throw MicroVMError("bulkhead-vm-monitor was not found in \(dirs.joined(separator: " or ")); install it next to bulkhead (scripts/setup does) or set BULKHEAD_LIBEXEC")
    }

    /// Whether an ELF file asks for a program interpreter (is dynamically linked).
    static func isDynamicELF(_ path: String) -> Bool {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return true }
        var buffer = [UInt8](repeating: 0, count: 8192)
        let n = buffer.withUnsafeMutableBytes { (try? fd.read(into: $0)) ?? 0 }
        let head = Array(buffer[0..<n])
        let needle = Array("/lib64/ld-linux".utf8)
        guard head.count >= needle.count else { return true }
        for i in 0...(head.count - needle.count) where head[i] == needle[0] && Array(head[i..<i + needle.count]) == needle { return true }
        return false
    }

    /// The static guest agent: `$BULKHEAD_AGENT`, else a static `bulkhead-agent` next to the binary or in the
    /// release build beside a debug one.
    public static func agent() throws -> String {
        if let a = environment("BULKHEAD_AGENT") { return a }
        let dir = executableDirectory()
        let candidates = [environment("BULKHEAD_LIBEXEC").map { $0 + "/bulkhead-agent" }, dir + "/bulkhead-agent",
                          dir + "/../release/bulkhead-agent"].compactMap { $0 }
        for c in candidates where isExecutable(c) && !isDynamicELF(c) { return c }
        throw MicroVMError("no statically linked bulkhead-agent in \(candidates.joined(separator: ", ")); build it with swift build -c release --product bulkhead-agent -Xswiftc -static-executable (scripts/setup does) or set BULKHEAD_AGENT")
    }

    /// The guest kernel directory (bzImage): `$BULKHEAD_KERNEL_DIR`, else the newest build in the kernel cache.
    public static func kernelDirectory() throws -> String {
        if let d = environment("BULKHEAD_KERNEL_DIR") { return d }
        let cache = environment("BULKHEAD_KERNEL_CACHE") ?? "/var/cache/bulkhead/kernels"
        var best: (String, Int) = ("", -1)
        if let dir = try? FileDescriptor.open(cache, O_RDONLY | O_DIRECTORY), let names = try? dir.entries() {
            for n in names {
                var st = stat()
                if stat(cache + "/" + n + "/bzImage", &st) == 0, Int(st.st_mtim.tv_sec) > best.1 { best = (cache + "/" + n, Int(st.st_mtim.tv_sec)) }
            }
        }
        guard best.1 >= 0 else {
            throw MicroVMError("no guest kernel in \(cache): run kernels/build (scripts/setup does; minutes, once per machine) or set BULKHEAD_KERNEL_DIR")
        }
        return best.0
    }
}

public struct MicroVMError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
