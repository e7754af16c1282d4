import ArgumentParser
import LinuxOS
import MicroVMBackend
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead info`: what this host offers Bulkhead, and what Bulkhead chose because of it.
struct Info: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show what this host offers: kernel, cgroup layout, KVM, and the runtime's directories.").verb

    @OptionGroup var globals: GlobalOptions

    @Option(help: "Output format: text or json.")
    var format: LogFormat = .text

    func run() throws {
        let facts = HostFacts.probe()
        let rows: [(String, String)] = [
            ("version", bulkheadVersion),
            ("kernel", facts.kernel),
            ("cgroups", facts.cgroupLayout),
            ("kvm", facts.kvm),
            ("microvm", Self.microVM(globals)),
            ("root", globals.root),
            ("data-root", globals.dataRoot),
        ]
        switch format {
        case .text:
            let width = rows.map(\.0.count).max() ?? 0
            for (key, value) in rows { print(key + String(repeating: " ", count: width - key.count) + "  " + value) }
        case .json:
            print("{" + rows.map { "\(JSONString.quote($0.0)):\(JSONString.quote($0.1))" }.joined(separator: ",") + "}")
        }
    }
}

extension Info {
    /// The microVM tier's hypervisor choice (cached probe) and where its parts are.
    static func microVM(_ globals: GlobalOptions) -> String {
        let probe = HypervisorProbe.load(dataRoot: globals.dataRoot)
        let monitor = (try? MicroVMPaths.monitor()) ?? "bulkhead-vm-monitor missing"
        let kernel = (try? MicroVMPaths.kernelDirectory()) ?? "no guest kernel built"
        return "hypervisor auto → \(probe.autoDriver) driver (\(probe.driverReason ?? probe.reason)); libvirt domain type \(probe.domainType); monitor \(monitor); kernel \(kernel); probe cached in \(HypervisorProbe.cachePath(dataRoot: globals.dataRoot)) (delete it to probe again)"
    }
}

/// Facts about the host, read at run time.
struct HostFacts {
    var kernel: String
    var cgroupLayout: String
    var kvm: String

    static func probe() -> HostFacts {
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: &names.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let layout: String
        if (try? filesystemMagic("/sys/fs/cgroup")) == FilesystemMagic.cgroup2 {
            layout = "v2 (unified at /sys/fs/cgroup)"
        } else if (try? filesystemMagic("/sys/fs/cgroup/unified")) == FilesystemMagic.cgroup2 {
            layout = "hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)"
        } else if access("/sys/fs/cgroup", F_OK) == 0 {
            layout = "v1"
        } else {
            layout = "none mounted"
        }
        let kvm: String
        let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        if fd >= 0 { close(fd); kvm = "/dev/kvm present" } else { kvm = "unavailable (\(String(cString: strerror(errno))))" }
        return HostFacts(kernel: "Linux \(release)", cgroupLayout: layout, kvm: kvm)
    }
}
