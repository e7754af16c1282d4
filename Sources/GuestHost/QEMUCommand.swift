/// The command line for plain `qemu-system-x86_64` booting a Bulkhead guest directly (kernel + initramfs,
/// no firmware disk): the read-only rootfs image as the first virtio disk, the agent's two ports on one
/// virtio-serial device connected to host unix sockets (QEMU connects as client), the serial console to a
/// file, no NIC, and `-no-reboot` so the agent's i8042 reset (`reboot=k`) ends QEMU.
///
/// Used by the end-to-end tests and bench/microvm-boot.sh; the libvirt driver produces the same devices.
public struct QEMUCommand: Sendable {
    public var qemu = "/usr/bin/qemu-system-x86_64"
    /// `tcg` works everywhere; `kvm` where the host runs a stock guest kernel under KVM.
    public var accelerator = "tcg"
    public var machine = "pc"
    public var memoryMiB = 256
    public var cpus = 1
    /// An ELF vmlinux boots through PVH (faster under TCG); a bzImage through the boot protocol.
    public var kernel: String
    public var initramfs: String
    /// Read-only image disk (erofs or ext4); nil boots without one (a plain /init).
    public var rootfsImage: String?
    /// A writable disk for the upper layer (else the agent uses a tmpfs).
    public var scratchDisk: String?
    /// Where the serial console goes: a file path, or "-" for QEMU's stdout.
    public var consoleLog: String
    /// Unix socket paths QEMU connects the control and stdio ports to; nil leaves them out.
    public var controlSocket: String?
    public var stdioSocket: String?
    public var extraKernelArguments: [String] = []

    public init(kernel: String, initramfs: String, consoleLog: String) {
        self.kernel = kernel
        self.initramfs = initramfs
        self.consoleLog = consoleLog
    }

    public var kernelCommandLine: String {
        // no_timer_check: under TCG on a loaded host the IO-APIC timer check can miss its window and
        // panic ("IO-APIC + timer doesn't work!"); virtual machines skip it.
        var words = ["console=ttyS0", "reboot=k", "panic=-1", "quiet", "no_timer_check"]
        if rootfsImage != nil { words.append("bulkhead.rootfs=/dev/vda") }
        if scratchDisk != nil { words.append("bulkhead.scratch=/dev/vdb") }
        return (words + extraKernelArguments).joined(separator: " ")
    }

    public var arguments: [String] {
        var a = ["-accel", accelerator, "-M", machine, "-m", String(memoryMiB), "-smp", String(cpus),
                 "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-monitor", "none",
                 "-kernel", kernel, "-initrd", initramfs, "-append", kernelCommandLine,
                 "-serial", consoleLog == "-" ? "stdio" : "file:\(consoleLog)"]
        if let rootfsImage {
            a += ["-drive", "file=\(rootfsImage),format=raw,if=none,id=rootfs,readonly=on", "-device", "virtio-blk-pci,drive=rootfs"]
        }
        if let scratchDisk {
            a += ["-drive", "file=\(scratchDisk),format=raw,if=none,id=scratch", "-device", "virtio-blk-pci,drive=scratch"]
        }
        if let controlSocket, let stdioSocket {
            a += ["-device", "virtio-serial-pci,id=vser",
                  "-chardev", "socket,id=ctl,path=\(controlSocket)", "-device", "virtserialport,bus=vser.0,chardev=ctl,name=bulkhead.control",
                  "-chardev", "socket,id=io,path=\(stdioSocket)", "-device", "virtserialport,bus=vser.0,chardev=io,name=bulkhead.stdio"]
        }
        return a
    }
}
