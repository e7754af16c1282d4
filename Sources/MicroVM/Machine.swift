import CKVM
import LinuxOS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a VM ended.
public enum VMExit: Sendable, Equatable, CustomStringConvertible {
    /// The guest asked for a reset (i8042 0xFE, or KVM's reset event): the normal end of a microVM.
    case reset
    /// The guest shut down (powered off, triple-faulted or halted for good).
    case shutdown(String)
    /// The host stopped it (``VirtualMachine/stop()``).
    case stopped
    /// The VMM or KVM could not go on.
    case failed(String)

    public var description: String {
        switch self {
        case .reset: return "guest requested a reset"
        case .shutdown(let why): return "guest shut down: \(why)"
        case .stopped: return "stopped by the host"
        case .failed(let why): return "failed: \(why)"
        }
    }
}

/// A disk for virtio-blk.
public struct VMDisk: Sendable, Equatable {
    public var path: String
    public var readOnly: Bool
    public init(path: String, readOnly: Bool) {
        self.path = path
        self.readOnly = readOnly
    }
}

/// Everything needed to boot a microVM.
public struct VMConfiguration: Sendable {
    public var kernel: String
    public var initrd: String?
    public var commandLine: String
    public var disks: [VMDisk]
    public var memoryMiB: Int
    public var vcpus: Int
    /// Where the UART's output goes (not closed by the VM).
    public var consoleOutputFD: Int32
    /// Where the UART's input comes from (e.g. stdin), if anywhere.
    public var consoleInputFD: Int32?
    /// virtio-console port names (e.g. ["stdio", "control"]); none: no virtio-console device.
    public var consolePorts: [String]
    /// Ports joined to an already connected stream socket (name → fd, owned by the VM from then on) instead of a
    /// fresh socket pair; e.g. the agent's ports connected to a monitor's unix sockets.
    public var consolePortEndpoints: [String: Int32] = [:]
    public var hugePages: Bool
    /// Append the virtio-mmio device announcements to the command line (what Linux needs).
    public var announceDevices: Bool

    public init(kernel: String, initrd: String? = nil, commandLine: String = "console=ttyS0 reboot=k panic=-1",
                disks: [VMDisk] = [], memoryMiB: Int = 128, vcpus: Int = 1, consoleOutputFD: Int32 = 1,
                consoleInputFD: Int32? = nil, consolePorts: [String] = [], hugePages: Bool = false,
                announceDevices: Bool = true) {
        self.kernel = kernel
        self.initrd = initrd
        self.commandLine = commandLine
        self.disks = disks
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        self.consoleOutputFD = consoleOutputFD
        self.consoleInputFD = consoleInputFD
        self.consolePorts = consolePorts
        self.hugePages = hugePages
        self.announceDevices = announceDevices
    }
}

/// A microVM on /dev/kvm: the API the `kvm` hypervisor driver and `bulkhead vm run` use.
///
/// `init` does all set-up that needs files or privileges (opens the kernel, disks and /dev/kvm, maps memory,
/// loads the kernel, creates devices), so the caller can confine the process before ``start(prepareThread:)``.
public final class VirtualMachine: @unchecked Sendable {
    public let configuration: VMConfiguration
    public let memory: GuestMemory
    public let kernel: LoadedKernel
    /// The command line the guest sees (the configured one plus device announcements).
    public let commandLine: String
    public let e820: [E820Entry]
    public let transports: [VirtioMMIO]
    public let serial: Serial
    /// virtio-console device, if ports were configured.
    public let console: VirtioConsole?
    /// The host's ends of the console ports (stream sockets), in the order configured; closed with the VM. -1 for
    /// a port joined to one of ``VMConfiguration/consolePortEndpoints``.
    public let consolePortFDs: [Int32]

    let system: KVMSystem
    let vm: KVMVirtualMachineFD
    let vcpus: [VCPU]
    let bus = Bus()
    let report: @Sendable (String) -> Void
    final class ExitState: Sendable { let value = Mutex<VMExit?>(nil) }
    private let exitState = ExitState()
    private let exitFD: Int32
    private let stopIOFD: Int32
    private var threads: [pthread_t] = []

    /// Builds the VM (no guest code runs yet). `report` receives device complaints about the guest.
    /// `beforeGuestMemoryIsWritten` runs after KVM set-up and before the kernel is loaded into guest RAM (the jail
    /// uses it to finish moving the process into its memory cgroup, so every guest page is charged there).
    public init(_ configuration: VMConfiguration, kvmPath: String = "/dev/kvm",
                beforeGuestMemoryIsWritten: () throws -> Void = {},
                report: @escaping @Sendable (String) -> Void) throws {
        guard (1...64).contains(configuration.vcpus) else { throw KVMError("--vcpus must be 1…64, not \(configuration.vcpus)") }
        guard (32...(1 << 20)).contains(configuration.memoryMiB) else {
            throw KVMError("--memory must be 32…1048576 MiB, not \(configuration.memoryMiB)")
        }
        self.configuration = configuration
        self.report = report
        exitFD = eventfd(0, Int32(EFD_CLOEXEC))
        stopIOFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))

        // Files first: a missing kernel is the most likely mistake and needs no KVM to report.
        let kernelSource = try FileSource(path: configuration.kernel)
        let initrdSource = try configuration.initrd.map { try FileSource(path: $0) }

        system = try KVMSystem(path: kvmPath)
        vm = try system.createVM()
        memory = try GuestMemory(size: UInt64(configuration.memoryMiB) << 20, hugePages: configuration.hugePages)
        for (slot, region) in memory.regions.enumerated() {
            try vm.setUserMemoryRegion(slot: UInt32(slot), guestAddress: region.guestAddress, size: region.size,
                                       host: memory.hostAddress(of: region))
        }
        try vm.setIdentityMapAddress(BootLayout.identityMapAddress)
        try vm.setTSSAddress(BootLayout.tssAddress)
        try vm.createIRQChip()
        try vm.createPIT()

        // Devices.
        let vmFD = vm
        serial = Serial(outputFD: configuration.consoleOutputFD) { level in
            try? vmFD.setIRQLine(BootLayout.serialIRQ, level: level)
        }
        bus.add(serial, ports: 0x3F8, count: 8)
        let exits = exitState, exitEvent = exitFD
        let resetHandler: @Sendable () -> Void = { VirtualMachine.finish(.reset, state: exits, fd: exitEvent) }
        bus.add(I8042(onReset: resetHandler), ports: 0x60, count: 5)

        var devices: [any VirtioDevice] = []
        for (i, disk) in configuration.disks.enumerated() {
            devices.append(try VirtioBlock(path: disk.path, readOnly: disk.readOnly, serial: "bulkhead-disk\(i)"))
        }
        if !configuration.consolePorts.isEmpty {
            let (device, ends) = try VirtioConsole.make(portNames: configuration.consolePorts, endpoints: configuration.consolePortEndpoints)
            console = device
            consolePortFDs = ends
            devices.append(device)
        } else {
            console = nil
            consolePortFDs = []
        }
        var transports: [VirtioMMIO] = []
        for (i, device) in devices.enumerated() {
            let transport = try VirtioMMIO(device: device, base: BootLayout.virtioMMIOBase + UInt64(i) * BootLayout.virtioMMIOStride,
                                           irq: BootLayout.virtioFirstIRQ + UInt32(i), memory: memory, report: report)
            try transport.attach(to: vm)
            bus.add(transport, at: transport.base, size: BootLayout.virtioMMIOStride)
            transports.append(transport)
        }
        self.transports = transports

        // Boot structures.
        try beforeGuestMemoryIsWritten()
        kernel = try KernelLoader.load(kernelSource, into: memory)
        var line = configuration.commandLine
        if configuration.announceDevices { for t in transports { line += (line.isEmpty ? "" : " ") + t.commandLineDevice } }
        commandLine = line
        e820 = E820Entry.map(for: memory.regions)
        var zeroPage = ZeroPage(kernel: kernel)
        let limit = kernel.setupHeader.map { Int(u32($0, 0x238 - 0x1F1)) }.flatMap { $0 > 0 ? $0 : nil } ?? BootLayout.defaultCommandLineMax
        guard line.utf8.count < limit else {
            throw BootError("the command line is \(line.utf8.count) bytes; this kernel takes at most \(limit - 1)")
        }
        try memory.write(Array(line.utf8) + [0], at: BootLayout.commandLineAddress)
        zeroPage.setCommandLine(address: BootLayout.commandLineAddress, length: line.utf8.count + 1)
        try zeroPage.setE820(e820)
        if let initrdSource {
            let maxAddress = kernel.setupHeader.map { UInt64(u32($0, 0x22C - 0x1F1)) }.flatMap { $0 > 0 ? $0 : nil } ?? 0x37FF_FFFF
            let address = try KernelLoader.placeInitrd(size: initrdSource.size, kernelEnd: kernel.end, memory: memory, maxAddress: maxAddress)
            try initrdSource.read(into: try memory.buffer(address, count: initrdSource.size), at: 0)
            zeroPage.setInitrd(address: address, size: initrdSource.size)
        }
        try memory.write(zeroPage.bytes, at: BootLayout.zeroPageAddress)
        try memory.write(BootGDT.bytes, at: BootLayout.gdtAddress)
        try memory.write([UInt8](repeating: 0, count: 8), at: BootLayout.idtAddress)
        try memory.write(PageTables.bytes, at: BootLayout.pml4Address)

        // vCPUs.
        let mapSize = try system.vcpuMapSize()
        let cpuid = try system.supportedCPUID()
        var made: [VCPU] = []
        for i in 0..<configuration.vcpus {
            let vcpu = try VCPU(index: i, vm: vm, mapSize: mapSize)
            try vcpu.setCPUID(CPUSetup.filterCPUID(cpuid, vcpu: UInt32(i), of: UInt32(configuration.vcpus)))
            let setCount = try vcpu.setMSRs(CPUSetup.bootMSRs)
            if setCount < CPUSetup.bootMSRs.count { report("vcpu \(i): KVM accepted only \(setCount) of \(CPUSetup.bootMSRs.count) boot MSRs") }
            try vcpu.setBootLAPIC()
            if i == 0 {
                try vcpu.setSregs(CPUSetup.longModeSregs(from: try vcpu.sregs()))
                try vcpu.setRegs(CPUSetup.entryRegs(entry: kernel.entry))
                try vcpu.setBootFPU()
            }
            made.append(vcpu)
        }
        vcpus = made
        if bh_install_kick_handler(vcpuKickSignal) != 0 { throw SystemError(operation: "sigaction", path: "SIGUSR1", errno: errno) }
    }

    deinit {
        close(exitFD)
        close(stopIOFD)
        for fd in consolePortFDs where fd >= 0 { close(fd) }
    }

    static func finish(_ exit: VMExit, state: ExitState, fd: Int32) {
        let first = state.value.withLock { current -> Bool in
            guard current == nil else { return false }
            current = exit
            return true
        }
        if first {
            var one: UInt64 = 1
            _ = Glibc.write(fd, &one, 8)
        }
    }

    /// Ends the VM with `exit` (the first reason given wins) and kicks every vCPU out of KVM_RUN.
    func finish(_ exit: VMExit) {
        Self.finish(exit, state: exitState, fd: exitFD)
        var one: UInt64 = 1
        _ = Glibc.write(stopIOFD, &one, 8)
        for vcpu in vcpus { vcpu.kick() }
    }

    /// Readable once the VM has ended (for poll loops that also watch signals or stdin).
    public var exitEventFD: Int32 { exitFD }

    /// The exit reason, once there is one.
    public var exit: VMExit? { exitState.value.withLock { $0 } }

    /// Starts the device I/O thread and one thread per vCPU. Each thread first calls `prepareThread(role)` (where
    /// the jail installs that role's seccomp filter); no vCPU enters KVM_RUN before every thread of the VMM has
    /// done so, so no guest instruction runs while any thread is still unconfined.
    ///
    /// `beforeFirstEntry` runs on vCPU 0's thread right before its first KVM_RUN (the bench's "first guest
    /// instruction" timestamp).
    public func start(prepareThread: @escaping @Sendable (ThreadRole) throws -> Void = { _ in },
                      beforeFirstEntry: (@Sendable () -> Void)? = nil) throws {
        let prepared = ThreadGate()   // one signal per thread, set-up done (or failed)
        let go = ThreadGate()         // one signal per vCPU, once every thread is prepared
        let io = try spawnThread { [self] in
            do { try prepareThread(.io) } catch {
                finish(.failed("io thread set-up: \(error)"))
                prepared.signal()
                return
            }
            prepared.signal()
            ioLoop()
        }
        threads.append(io)
        for vcpu in vcpus {
            let t = try spawnThread { [self] in
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, vcpuKickSignal)
                pthread_sigmask(SIG_UNBLOCK, &set, nil)
                do { try prepareThread(.vcpu) } catch {
                    finish(.failed("vcpu thread set-up: \(error)"))
                    prepared.signal()
                    return
                }
                prepared.signal()
                go.wait()
                if vcpu.index == 0 { beforeFirstEntry?() }
                let exit = vcpu.runLoop(bus: bus) { self.exit != nil }
                finish(exit)
            }
            vcpu.thread = t
            threads.append(t)
        }
        for _ in 0..<(1 + vcpus.count) { prepared.wait() }
        for _ in vcpus { go.signal() }
        // A stop requested before a thread existed must still reach it.
        if exit != nil { for vcpu in vcpus { vcpu.kick() } }
    }

    /// Asks the VM to stop; ``wait()`` then returns ``VMExit/stopped`` (unless it had already ended).
    public func stop() { finish(.stopped) }

    /// Blocks until the VM ends, joins its threads, and returns how it ended.
    public func wait() -> VMExit {
        var value: UInt64 = 0
        while exit == nil { _ = Glibc.read(exitFD, &value, 8) }
        finish(exit!) // make sure every thread was told
        for t in threads { pthread_join(t, nil) }
        threads.removeAll()
        return exit!
    }

    /// Where each vCPU is (instruction pointer), for diagnostics after the VM stopped.
    public func instructionPointers() -> [UInt64?] { vcpus.map { try? $0.regs().rip } }

    /// Device I/O: virtqueue notifications, console port input, serial input, and the stop signal.
    func ioLoop() {
        let epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { finish(.failed("epoll_create1: \(String(cString: strerror(errno)))")); return }
        defer { close(epfd) }
        func watch(_ fd: Int32, _ token: UInt64, _ events: UInt32 = EPOLLIN.rawValue) {
            var event = epoll_event(events: events, data: epoll_data_t(u64: token))
            if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) != 0 && errno == EEXIST { _ = epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event) }
        }
        let stopToken: UInt64 = 1 << 40, serialToken: UInt64 = 1 << 41, portFlag: UInt64 = 1 << 32
        watch(stopIOFD, stopToken)
        if let input = configuration.consoleInputFD { watch(input, serialToken) }
        for (d, t) in transports.enumerated() {
            for (q, fd) in t.notifyFDs.enumerated() { watch(fd, UInt64(d) << 16 | UInt64(q)) }
        }
        let consoleIndex = transports.firstIndex { $0.device === console }
        if let console, let consoleIndex {
            for (p, fd) in console.portFDs.enumerated() { watch(fd, portFlag | UInt64(consoleIndex) << 16 | UInt64(p)) }
        }
        var events = [epoll_event](repeating: epoll_event(), count: 32)
        while exit == nil {
            let n = epoll_wait(epfd, &events, Int32(events.count), -1)
            if n < 0 { if errno == EINTR { continue }; finish(.failed("epoll_wait: \(String(cString: strerror(errno)))")); return }
            for event in events.prefix(Int(n)) {
                let token = event.data.u64
                if token == stopToken { return }
                if token == serialToken {
                    var buffer = [UInt8](repeating: 0, count: 256)
                    let got = buffer.withUnsafeMutableBytes { Glibc.read(configuration.consoleInputFD!, $0.baseAddress, $0.count) }
                    if got > 0 { serial.enqueue(Array(buffer[0..<got])) }
                    else { _ = epoll_ctl(epfd, EPOLL_CTL_DEL, configuration.consoleInputFD!, nil) }
                    continue
                }
                let device = Int((token >> 16) & 0xFFFF), index = Int(token & 0xFFFF)
                guard device < transports.count else { continue }
                if token & portFlag != 0 { transports[device].hostEvent(index) } else { transports[device].queueNotified(index) }
            }
            // Stop watching console ports whose backlog is full (level-triggered epoll would spin), resume after.
            if let console, let consoleIndex {
                for (p, fd) in console.portFDs.enumerated() {
                    let wanted = console.wantsHostInput(p) ? EPOLLIN.rawValue : 0
                    var event = epoll_event(events: wanted, data: epoll_data_t(u64: portFlag | UInt64(consoleIndex) << 16 | UInt64(p)))
                    _ = epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event)
                }
            }
        }
    }
}
