import ArgumentParser
import CShims
import LinuxOS
import GuestHost
import Logging
import MicroVM
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead vm`: our own VMM, run directly (like `firecracker --no-api`).
struct VMCommand: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "vm",
        abstract: "Run a microVM directly on /dev/kvm with Bulkhead's own VMM.",
        subcommands: [VMRun.self]).verb

    @OptionGroup var globals: GlobalOptions
}

/// `bulkhead vm run`: boots a kernel (ELF vmlinux, bzImage, or a flat 64-bit test guest) and exits when the guest does.
struct VMRun: ParsableCommand, GlobalOptionsCarrier {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a kernel in a microVM and wait for it to end.",
        discussion: """
            The guest's serial console (16550 at 0x3f8) goes to --console. Disks appear as virtio-mmio block \
            devices, announced on the kernel command line. The VM ends when the guest resets (i8042, e.g. Linux \
            with reboot=k) or shuts down: exit status 0. A VMM or KVM failure exits 1; SIGINT/SIGTERM stop the VM \
            with status 130/143.

            Unless --no-jail is given, the VMM confines itself before the guest's first instruction: its own \
            memory cgroup (guest memory + a fixed overhead), a private empty mount namespace, seccomp filters per \
            thread role, and no capabilities.
            """).verb

    @OptionGroup var globals: GlobalOptions

    @Option(help: ArgumentHelp("Kernel: ELF vmlinux, bzImage, or a flat 64-bit binary entered at its first byte.", valueName: "file"))
    var kernel: String

    @Option(help: ArgumentHelp("Initial ramdisk.", valueName: "file"))
    var initrd: String?

    @Option(help: ArgumentHelp("Kernel command line (virtio-mmio devices are appended).", valueName: "text"))
    var cmdline: String = "console=ttyS0 reboot=k panic=-1"

    @Option(name: .customLong("disk"), help: ArgumentHelp("A virtio-blk disk; append :ro for read-only. Repeatable.", valueName: "file[:ro]"))
    var disks: [String] = []

    @Option(help: ArgumentHelp("Guest memory in MiB.", valueName: "MiB"))
    var memory: Int = 128

    @Option(help: ArgumentHelp("Number of vCPUs.", valueName: "n"))
    var vcpus: Int = 1

    @Option(help: ArgumentHelp("Serial console: stdio, or a file to write it to.", valueName: "stdio|file"))
    var console: String = "stdio"

    @Option(name: .customLong("port"), help: ArgumentHelp(
        "A virtio-console port joined to a unix stream socket that is already listening (the VMM connects before it confines itself); the guest sees the port by NAME. Repeatable; the order is the port order.",
        valueName: "name=socket"))
    var ports: [String] = []

    @Flag(name: .customLong("die-with-parent"), help: "End the VM (SIGKILL) when the process that started it exits (for monitors).")
    var dieWithParent = false

    @Flag(name: .customLong("no-jail"), help: "Do not confine the VMM process (for debugging).")
    var noJail = false

    @Flag(help: "Back guest memory with 2 MiB huge pages.")
    var hugePages = false

    func run() throws {
        let log = Logger(label: "bulkhead.vm")
        // Forward stdin to the UART only when it is really there (a closed fd 0 would be reused by our own files).
        var stdinStat = stat()
        let stdinUsable = fstat(0, &stdinStat) == 0 && [S_IFIFO, S_IFSOCK, S_IFCHR].contains(stdinStat.st_mode & S_IFMT)
        if dieWithParent {
            let parent = getppid()
            _ = bh_prctl(1 /* PR_SET_PDEATHSIG, <linux/prctl.h> */, UInt(SIGKILL), 0, 0, 0)
            // The parent may have gone before the request took effect.
            if getppid() != parent { throw ExitCode(137) }
        }
        let parsedDisks = try disks.map(Self.parseDisk)
        let parsedPorts = try ports.map(Self.parsePort)
        var endpoints: [String: Int32] = [:]
        for (name, socket) in parsedPorts {
            do { endpoints[name] = try UnixSocket.connect(socket) } catch {
                throw VMRunError("cannot connect console port \(name) to \(socket): \(error) (the socket must be listening before the VM starts)")
            }
        }
        var consoleFD: Int32 = 1
        if console != "stdio" {
            consoleFD = try FileDescriptor.open(console, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, mode: 0o600).take()
        }
        defer { if consoleFD != 1 { close(consoleFD) } }
        var configuration = VMConfiguration(
            kernel: kernel, initrd: initrd, commandLine: cmdline, disks: parsedDisks, memoryMiB: memory, vcpus: vcpus,
            consoleOutputFD: consoleFD, consoleInputFD: console == "stdio" && stdinUsable ? 0 : nil,
            consolePorts: parsedPorts.map(\.name), hugePages: hugePages)
        configuration.consolePortEndpoints = endpoints

        // Signals: SIGINT/SIGTERM arrive through a signalfd on this thread; threads inherit the blocked mask.
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        sigaddset(&mask, SIGTERM)
        sigaddset(&mask, vcpuKickSignal)
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        sigdelset(&mask, vcpuKickSignal)
        let signals = FileDescriptor(adopting: try sys("signalfd") { signalfd(-1, &mask, Int32(SFD_CLOEXEC)) })

        // The cgroup move runs beside the KVM set-up and completes before guest memory is written.
        let pending = noJail ? nil : try VMJail.begin(guestMemoryBytes: UInt64(max(memory, 0)) << 20)
        var jail: VMJail? = nil
        var singleThreaded = true // until the VM's threads start, and again once they are joined
        defer { jail?.leave(singleThreaded: singleThreaded) } // also when set-up fails: no cgroup is left behind
        func joinCgroup() throws {
            guard let pending, jail == nil else { return }
            do { jail = try pending.finish() } catch {
                throw VMRunError("cannot move the VMM into its cgroup: \(error) (run as root, or pass --no-jail to debug)")
            }
        }
        let machine: VirtualMachine
        do {
            machine = try VirtualMachine(configuration, beforeGuestMemoryIsWritten: joinCgroup) { message in log.warning("\(message)") }
        } catch {
            try? joinCgroup()
            if let e = error as? VMRunError { throw e }
            throw VMRunError("cannot start the VM: \(error)")
        }
        log.debug("kernel \(machine.kernel.format.rawValue) entry 0x\(String(machine.kernel.entry, radix: 16)); cmdline \(machine.commandLine)")

        var seccomp: SeccompPolicy? = nil
        if let jail {
            do {
                try jail.confineMounts()
                try jail.dropCapabilities()
                seccomp = try SeccompPolicy.filters(for: jail)
            } catch {
                throw VMRunError("cannot confine the VMM: \(error) (run as root, or pass --no-jail to debug)")
            }
            log.debug("jail: cgroup \(jail.cgroupPath ?? "none"), limit \(jail.memoryLimit) bytes")
        }
        let filters = seccomp
        // For bench/vmm.sh: BULKHEAD_TRACE_T0_NS (CLOCK_MONOTONIC just before the bench exec'd us) makes vCPU 0
        // report on stderr how long after that it first entered the guest (clock_gettime and write are allowed to
        // every VMM thread by its seccomp filter).
        var hook: (@Sendable () -> Void)? = nil
        if let t0 = getenv("BULKHEAD_TRACE_T0_NS").flatMap({ UInt64(String(cString: $0)) }) {
            hook = { VMRun.traceFirstEntry(since: t0) }
        }
        singleThreaded = false
        try machine.start(prepareThread: { role in try filters?.install(role) }, beforeFirstEntry: hook)
        try filters?.install(.main)

        var pollfds = [pollfd(fd: machine.exitEventFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: signals.raw, events: Int16(POLLIN), revents: 0)]
        var signalled: Int32 = 0
        while machine.exit == nil {
            let n = poll(&pollfds, nfds_t(pollfds.count), -1)
            if n < 0 { continue }
            if pollfds[1].revents != 0 {
                var info = signalfd_siginfo()
                _ = read(signals.raw, &info, MemoryLayout<signalfd_siginfo>.size)
                signalled = Int32(info.ssi_signo)
                machine.stop()
            }
            if pollfds[0].revents != 0 { break }
        }
        let exit = machine.wait()
        singleThreaded = true
        switch exit {
        case .reset, .shutdown:
            log.info("vm: \(exit)")
        case .stopped:
            log.info("vm: stopped by signal \(signalled)")
            log.debug("vm: vCPU instruction pointers: \(machine.instructionPointers().map { $0.map { "0x" + String($0, radix: 16) } ?? "?" })")
            throw ExitCode(128 + (signalled == 0 ? SIGTERM : signalled))
        case .failed(let why):
            throw VMRunError("the VM failed: \(why)")
        }
    }

    static func traceFirstEntry(since t0: UInt64) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let ns = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        let line = Array("bulkhead-trace: first guest entry \(Double(ns &- t0) / 1e6) ms after exec\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    static func parsePort(_ spec: String) throws -> (name: String, socket: String) {
        guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex, spec.index(after: eq) != spec.endIndex else {
            throw VMRunError("--port needs NAME=SOCKET, e.g. --port bulkhead.control=/run/vm/ctl.sock (not '\(spec)')")
        }
        return (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
    }

    static func parseDisk(_ spec: String) throws -> VMDisk {
        if spec.hasSuffix(":ro") { return VMDisk(path: String(spec.dropLast(3)), readOnly: true) }
        if spec.hasSuffix(":rw") { return VMDisk(path: String(spec.dropLast(3)), readOnly: false) }
        guard !spec.isEmpty else { throw VMRunError("--disk needs a file name, e.g. --disk rootfs.img:ro") }
        return VMDisk(path: spec, readOnly: false)
    }
}

struct VMRunError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
