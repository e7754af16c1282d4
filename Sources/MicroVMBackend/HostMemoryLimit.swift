import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The memory limit of the QEMU process's host cgroup (libvirt places each domain in one of its own, e.g.
/// `/machine/qemu-embed-…-bulkhead-ID.libvirt-qemu`): guest RAM plus QEMU's overhead, so a QEMU that grows past
/// that is stopped by the host instead of taking memory from its neighbours.
public enum HostMemoryLimit {
    /// The cgroup of `pid` that holds its memory controller: (file to write, cgroup path). v1 `memory` first,
    /// else the v2 hierarchy. Reads /proc/PID/cgroup (`procRoot` and `cgroupRoot` are for tests).
    public static func limitFile(of pid: Int32, procRoot: String = "/proc", cgroupRoot: String = "/sys/fs/cgroup") -> (file: String, cgroup: String)? {
        guard let text = try? FileDescriptor.open("\(procRoot)/\(pid)/cgroup", O_RDONLY).readAll(limit: 65536) else { return nil }
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n")
        for line in lines {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[1].split(separator: ",").contains("memory") else { continue }
            return ("\(cgroupRoot)/memory\(parts[2])/memory.limit_in_bytes", String(parts[2]))
        }
        for line in lines where line.hasPrefix("0::") {
            let path = String(line.dropFirst(3))
            let base = access(cgroupRoot + "/cgroup.controllers", F_OK) == 0 ? cgroupRoot : cgroupRoot + "/unified"
            return ("\(base)\(path)/memory.max", path)
        }
        return nil
    }

    /// Limits the memory of `pid`'s own cgroup to `bytes`. Refuses (returns why) when that cgroup is the root or
    /// the caller's own: a limit there would reach far more than the VM.
    public static func apply(pid: Int32, bytes: Int) -> String? {
        guard let target = limitFile(of: pid) else { return "no memory cgroup found for QEMU (pid \(pid))" }
        let own = limitFile(of: getpid())
        guard target.cgroup != "/", target.cgroup != own?.cgroup else {
            return "QEMU (pid \(pid)) shares the cgroup \(target.cgroup) with others; its memory is not limited on the host"
        }
        do {
            try FileDescriptor.open(target.file, O_WRONLY).writeAll(Array(String(bytes).utf8), path: target.file)
        } catch {
            return "cannot limit QEMU's host memory (\(target.file)): \(error)"
        }
        return nil
    }
}
