import FoundationEssentials
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// What this host's microVM tier runs on, decided once and cached under the data root (so every container of a
/// host agrees), shown by `bulkhead info`; delete the file to probe again.
/// - ``domainType``: the libvirt domain type, `kvm` when the host can run a stock guest kernel under KVM, else
///   `qemu` (TCG emulation).
/// - ``driver``: what the policy's `hypervisor: auto` picks: `kvm` (Bulkhead's own VMM) where the host has hardware
///   virtualization and Bulkhead's guest kernel really boots under that VMM (a boot to the kernel's panic for want
///   of a root, timed out after a few seconds), `libvirt` otherwise.
public struct HypervisorProbe: Codable, Sendable, Equatable {
    public var domainType: String
    public var reason: String
    /// `kvm` or `libvirt`; absent in caches written by older builds (then libvirt).
    public var driver: String?
    public var driverReason: String?

    public init(domainType: String, reason: String, driver: String? = nil, driverReason: String? = nil) {
        self.domainType = domainType; self.reason = reason; self.driver = driver; self.driverReason = driverReason
    }

    /// What `hypervisor: auto` uses.
    public var autoDriver: String { driver ?? "libvirt" }

    public static func cachePath(dataRoot: String) -> String { dataRoot + "/microvm/hypervisor-probe.json" }

    /// The cached result, probing (and caching) when there is none.
    public static func load(dataRoot: String) -> HypervisorProbe {
        let path = cachePath(dataRoot: dataRoot)
        if let fd = try? FileDescriptor.open(path, O_RDONLY), let bytes = try? fd.readAll(limit: 1 << 16),
           let cached = try? JSONDecoder().decode(HypervisorProbe.self, from: Data(bytes)), cached.driver != nil {
            return cached
        }
        let result = probe(bootCheck: { kernelBootProblem() })
        if let bytes = try? JSONEncoder().encode(result) {
            try? HostPath.makeDirectories(dataRoot + "/microvm", mode: 0o700)
            if let fd = try? FileDescriptor.open(path + ".tmp", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644) {
                try? fd.writeAll(Array(bytes), path: path)
                _ = rename(path + ".tmp", path)
            }
        }
        return result
    }

    /// Reads /dev/kvm and the loaded KVM module. kvm_pvm (a paravirtual nested KVM) runs small 64-bit guests but
    /// not a stock Linux kernel (DESIGN.md §3), so it counts as "no usable KVM" for both drivers. Where KVM is
    /// hardware-backed, `bootCheck` (nil: the guest kernel boots under Bulkhead's VMM; else why not) decides
    /// between the kvm and libvirt drivers.
    public static func probe(sysModule: String = "/sys/module", kvmDevice: String = "/dev/kvm",
                             bootCheck: () -> String? = { nil }) -> HypervisorProbe {
        let fd = open(kvmDevice, O_RDWR | O_CLOEXEC)
        if fd < 0 {
            let why = "\(kvmDevice) cannot be opened (\(String(cString: strerror(errno))))"
            return HypervisorProbe(domainType: "qemu", reason: "\(why): TCG emulation",
                                   driver: "libvirt", driverReason: "\(why): libvirt with QEMU's TCG")
        }
        close(fd)
        if access(sysModule + "/kvm_pvm", F_OK) == 0 {
            let why = "\(kvmDevice) is kvm_pvm (paravirtual nested KVM), which does not boot a stock Linux guest kernel"
            return HypervisorProbe(domainType: "qemu", reason: "\(why): TCG emulation",
                                   driver: "libvirt", driverReason: "\(why): libvirt with QEMU's TCG")
        }
        for module in ["kvm_intel", "kvm_amd"] where access(sysModule + "/" + module, F_OK) == 0 {
            let hardware = "\(kvmDevice) is provided by \(module) (hardware virtualization)"
            if let problem = bootCheck() {
                return HypervisorProbe(domainType: "kvm", reason: hardware, driver: "libvirt",
                                       driverReason: "\(hardware), but Bulkhead's VMM could not boot the guest kernel (\(problem)): libvirt with KVM")
            }
            return HypervisorProbe(domainType: "kvm", reason: hardware, driver: "kvm",
                                   driverReason: "\(hardware) and the guest kernel boots under Bulkhead's VMM: kvm")
        }
        let why = "\(kvmDevice) exists but neither kvm_intel nor kvm_amd is loaded (unknown KVM provider)"
        return HypervisorProbe(domainType: "qemu", reason: "\(why): TCG emulation",
                               driver: "libvirt", driverReason: "\(why): libvirt with QEMU's TCG")
    }

    /// Boots Bulkhead's guest kernel under Bulkhead's own VMM (`bulkhead vm run`, jailed as containers are) with
    /// no initramfs and a root that does not exist: a kernel that works panics for want of a root and, with
    /// `panic=-1 reboot=k`, resets the VM at once. nil when that happened within `timeoutMs`, else what went wrong.
    public static func kernelBootProblem(vmm: String? = nil, kernel: String? = nil, timeoutMs: Int64 = 10_000) -> String? {
        let executable = vmm ?? MicroVMPaths.selfExecutable()
        let image: String
        if let kernel { image = kernel } else {
            guard let dir = try? MicroVMPaths.kernelDirectory() else { return "no guest kernel built yet (kernels/build)" }
            image = MicroVMPaths.ownVMMKernel(directory: dir)
        }
        // The console log goes to a fresh private directory (mkdtemp, mode 0700): a predictable name in /tmp could be
        // a symlink planted by another user, and the VMM (root) would truncate whatever it points at.
        var template = Array("/tmp/bulkhead-boot-probe-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            return "cannot make a directory for the probe's console log: \(String(cString: strerror(errno)))"
        }
        let directory = String(cString: made)
        let console = directory + "/console.log"
        defer { unlink(console); rmdir(directory) }
        let arguments = ["bulkhead", "vm", "run", "--kernel", image, "--memory", "128", "--console", console,
                         "--cmdline", "console=ttyS0 reboot=k panic=-1 root=/dev/bulkhead-boot-probe rdinit=/bulkhead-boot-probe",
                         "--die-with-parent"]
        guard let null = try? FileDescriptor.open("/dev/null", O_RDWR),
              let pid = try? ChildProcess.spawn(executable, arguments: arguments, environment: [], fds: [(null.raw, 0), (null.raw, 1), (null.raw, 2)])
        else { return "cannot start \(executable) vm run" }
        let deadline = MicroVMBackend.nowMs() + timeoutMs
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return "waitpid: \(String(cString: strerror(errno)))" }
            if MicroVMBackend.nowMs() >= deadline {
                _ = kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                return "the kernel did not reach its root-mount panic within \(timeoutMs / 1000) s"
            }
            usleep(10_000)
        }
        let log = (try? FileDescriptor.open(console, O_RDONLY).readAll(limit: 1 << 20)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        guard (status & 0x7f) == 0, (status >> 8) & 0xff == 0 else { return "the VMM ended with wait status \(status)" }
        guard log.contains("Kernel panic") else { return "the VM reset without the kernel's root-mount panic on its console" }
        return nil
    }
}

/// Where the microVM tier finds its parts and keeps its files.
public enum MicroVMPaths {
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

    /// The running executable (`bulkhead`: its `vm run` is the kvm driver's VMM).
    public static func selfExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "/usr/local/bin/bulkhead" }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The kernel the kvm driver boots from a kernel directory: the ELF vmlinux (entered directly in long mode,
    /// no decompression) where it is there, else the bzImage.
    public static func ownVMMKernel(directory: String) -> String {
        access(directory + "/vmlinux", R_OK) == 0 ? directory + "/vmlinux" : directory + "/bzImage"
    }

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
