import FoundationEssentials

/// What `bulkhead create` hands one `bulkhead-vm-monitor` (written as `monitor.json` in the container's state
/// directory): the VM to define and the container to create in it.
public struct MonitorConfig: Codable, Sendable, Equatable {
    public var containerID: String
    /// The container's state directory (sockets, console log, pid files live here).
    public var stateDirectory: String
    /// libvirt connection URI, e.g. `qemu:///embed?root=/var/lib/bulkhead/libvirt/<id>` or `qemu:///system`.
    public var hypervisorURI: String
    /// The embedded driver's root when `hypervisorURI` is an embed URI (the monitor prepares it).
    public var embedRoot: String?
    /// A directory whose `qemu` capability cache seeds each new embed root (probing QEMU costs seconds).
    public var sharedCapabilityCache: String?
    public var domain: DomainDefinition
    /// The OCI spec (config.json bytes) the guest agent applies.
    public var specPath: String
    /// `process.terminal` is true: the monitor hands a pty master to this socket (the engine's
    /// `--console-socket`) and relays the guest's terminal through it instead of its own stdio.
    public var consoleSocket: String?
    /// Which hypervisor driver runs the VM: `libvirt` (the domain above, QEMU) or `kvm` (Bulkhead's own VMM,
    /// `bulkhead vm run`, as described by ``vmm``). Absent in files of older builds: libvirt.
    public var driver: String?
    /// The `kvm` driver's VM.
    public var vmm: VMMLaunch?

    public var usesOwnVMM: Bool { driver == "kvm" }

    public init(containerID: String, stateDirectory: String, hypervisorURI: String, embedRoot: String?,
                sharedCapabilityCache: String?, domain: DomainDefinition, specPath: String) {
        self.containerID = containerID; self.stateDirectory = stateDirectory; self.hypervisorURI = hypervisorURI
        self.embedRoot = embedRoot; self.sharedCapabilityCache = sharedCapabilityCache; self.domain = domain
        self.specPath = specPath
    }

    public static let fileName = "monitor.json"
    /// Files the monitor writes into the state directory.
    public static let controlSocket = "ctl.sock", stdioSocket = "io.sock", commandSocket = "monitor.sock"
    public static let consoleLog = "console.log", qemuPidFile = "qemu.pid"
    /// Present while the domain is suspended (`pause`).
    public static let pausedMarker = "paused"
}

/// A transient libvirt domain for one microVM: direct kernel boot, the shared read-only rootfs image as the
/// first virtio disk, the agent's two virtio-serial ports as unix sockets, no NIC.
public struct DomainDefinition: Codable, Sendable, Equatable {
    public var name: String
    /// `kvm` or `qemu` (TCG), from ``HypervisorProbe``.
    public var type: String
    /// libvirt 9.0 refuses QEMU's `microvm` machine type; `pc` boots our kernel fine.
    public var machine = "pc"
    public var memoryMiB: Int
    /// Host memory QEMU may use beyond the guest's RAM (its own heap, TCG's code buffer, device state) before
    /// the memory limit of the domain's host cgroup stops it (set by the monitor, see ``HostMemoryLimit``; not
    /// libvirt's memtune, whose hard_limit also raises QEMU's RLIMIT_MEMLOCK and needs CAP_SYS_RESOURCE).
    public var overheadMiB = 256
    public var vcpus: Int
    public var emulator = "/usr/bin/qemu-system-x86_64"
    public var kernel: String
    public var initramfs: String
    public var commandLine: String
    public var rootfsImage: String
    public var scratchDisk: String?
    public var consoleLog: String
    public var controlSocket: String
    public var stdioSocket: String

    public init(name: String, type: String, memoryMiB: Int, vcpus: Int, kernel: String, initramfs: String,
                commandLine: String, rootfsImage: String, consoleLog: String, controlSocket: String, stdioSocket: String) {
        self.name = name; self.type = type; self.memoryMiB = memoryMiB; self.vcpus = vcpus; self.kernel = kernel
        self.initramfs = initramfs; self.commandLine = commandLine; self.rootfsImage = rootfsImage
        self.consoleLog = consoleLog; self.controlSocket = controlSocket; self.stdioSocket = stdioSocket
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "'": out += "&apos;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    /// The domain XML. The ports use `mode='connect'`: the monitor listens first, QEMU connects at start.
    public var xml: String {
        let e = Self.escape
        var disks = """
            <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='\(e(rootfsImage))'/>\
            <target dev='vda' bus='virtio'/><readonly/></disk>
            """
        if let scratchDisk {
            disks += """
                <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='\(e(scratchDisk))'/>\
                <target dev='vdb' bus='virtio'/></disk>
                """
        }
        return """
            <domain type='\(e(type))'>
            <name>\(e(name))</name>
            <memory unit='MiB'>\(memoryMiB)</memory>
            <vcpu>\(vcpus)</vcpu>
            <os><type arch='x86_64' machine='\(e(machine))'>hvm</type><kernel>\(e(kernel))</kernel>\
            <initrd>\(e(initramfs))</initrd><cmdline>\(e(commandLine))</cmdline></os>
            \(type == "kvm" ? "<cpu mode='host-passthrough'/>" : "")
            <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
            <devices>
            <emulator>\(e(emulator))</emulator>
            \(disks)
            <serial type='file'><source path='\(e(consoleLog))'/><target port='0'/></serial>
            <channel type='unix'><source mode='connect' path='\(e(controlSocket))'/><target type='virtio' name='bulkhead.control'/></channel>
            <channel type='unix'><source mode='connect' path='\(e(stdioSocket))'/><target type='virtio' name='bulkhead.stdio'/></channel>
            <memballoon model='none'/>
            </devices>
            <seclabel type='none'/>
            </domain>
            """
    }
}

/// The `kvm` driver's VM: `bulkhead vm run` of the very VM the ``DomainDefinition`` describes (kernel, initramfs,
/// command line, rootfs image, memory, vCPUs, console log, the agent's two port sockets), on Bulkhead's own VMM
/// (virtio-mmio devices, jailed). The monitor listens on the two port sockets first; the VMM connects to them
/// before it confines itself.
public struct VMMLaunch: Codable, Sendable, Equatable {
    /// The `bulkhead` executable whose `vm run` is the VMM.
    public var executable: String
    /// Confine the VMM (own memory cgroup, empty mount namespace, no capabilities, seccomp per thread).
    public var jail = true

    public init(executable: String) { self.executable = executable }

    /// The agent's port names, in the order the guest sees them (as the libvirt domain names its channels).
    public static let controlPort = "bulkhead.control", stdioPort = "bulkhead.stdio"

    /// `bulkhead vm run` arguments (argv[0] included) for `domain`.
    public func arguments(for domain: DomainDefinition) -> [String] {
        var a = ["bulkhead", "vm", "run", "--kernel", domain.kernel, "--initrd", domain.initramfs,
                 "--cmdline", domain.commandLine, "--disk", domain.rootfsImage + ":ro",
                 "--memory", String(domain.memoryMiB), "--vcpus", String(domain.vcpus), "--console", domain.consoleLog,
                 "--port", Self.controlPort + "=" + domain.controlSocket, "--port", Self.stdioPort + "=" + domain.stdioSocket,
                 "--die-with-parent"]
        if let scratch = domain.scratchDisk { a += ["--disk", scratch] }
        if !jail { a.append("--no-jail") }
        return a
    }
}
