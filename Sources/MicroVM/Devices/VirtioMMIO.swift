import CKVM
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A virtio device model behind a transport. All calls come with the transport's lock held, so a device
/// needs no locking of its own for queue work.
public protocol VirtioDevice: AnyObject, Sendable {
    var deviceType: UInt32 { get }
    var name: String { get }
    /// Feature bits offered (VIRTIO_F_VERSION_1 is added by the transport).
    var deviceFeatures: UInt64 { get }
    var queueCount: Int { get }
    func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func writeConfig(offset: UInt64, data: UnsafeRawBufferPointer)
    /// Processes queue `index`; returns whether the driver should be interrupted. A thrown `.badRing` kills the
    /// device until reset.
    func process(queue index: Int, queues: inout [Virtqueue], memory: GuestMemory, report: (String) -> Void) throws(VirtioError) -> Bool
    /// Host-side input arrived (e.g. a console port); deliver what can be delivered.
    func hostEvent(token: Int, queues: inout [Virtqueue], memory: GuestMemory, report: (String) -> Void) throws(VirtioError) -> Bool
    /// The driver reset the device.
    func reset()
}

extension VirtioDevice {
    public func writeConfig(offset: UInt64, data: UnsafeRawBufferPointer) {}
    public func hostEvent(token: Int, queues: inout [Virtqueue], memory: GuestMemory, report: (String) -> Void) throws(VirtioError) -> Bool { false }
}

/// The virtio-mmio transport (version 2) for one device: registers, feature negotiation, queue set-up, and
/// interrupts through an irqfd. Notifications arrive through one ioeventfd per queue.
public final class VirtioMMIO: MMIODevice, @unchecked Sendable {
    public static let magic: UInt32 = 0x7472_6976 // "virt"
    public static let versionOne: UInt64 = 1 << 32
    public static let maxQueueSize: UInt16 = 256
    public static let statusAcknowledge: UInt32 = 1, statusDriver: UInt32 = 2, statusDriverOK: UInt32 = 4
    public static let statusFeaturesOK: UInt32 = 8, statusNeedsReset: UInt32 = 0x40, statusFailed: UInt32 = 0x80

    struct QueueConfig {
        var size: UInt16 = 0
        var ready = false
        var descriptor: UInt64 = 0, driver: UInt64 = 0, device: UInt64 = 0
    }

    struct State {
        var status: UInt32 = 0
        var deviceFeatureSelect: UInt32 = 0
        var driverFeatureSelect: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var queueSelect: UInt32 = 0
        var configs: [QueueConfig]
        var queues: [Virtqueue] = []
        var interruptStatus: UInt32 = 0
        var configGeneration: UInt32 = 0
        var dead: String? = nil
    }

    public let device: any VirtioDevice
    public let base: UInt64
    public let irq: UInt32
    let memory: GuestMemory
    let interruptFD: Int32
    /// One eventfd per queue: the kernel signals it on a QueueNotify write (ioeventfd), and so do we when the
    /// write reaches us instead.
    public let notifyFDs: [Int32]
    private let state: Mutex<State>
    private let reporter: @Sendable (String) -> Void
    private let reports = Atomic<Int>(0)

    public init(device: any VirtioDevice, base: UInt64, irq: UInt32, memory: GuestMemory,
                report: @escaping @Sendable (String) -> Void) throws {
        self.device = device
        self.base = base
        self.irq = irq
        self.memory = memory
        self.reporter = report
        interruptFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        var fds: [Int32] = []
        for _ in 0..<device.queueCount { fds.append(eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))) }
        notifyFDs = fds
        guard interruptFD >= 0, !fds.contains(-1) else { throw KVMError("eventfd for \(device.name) failed") }
        state = Mutex(State(configs: Array(repeating: QueueConfig(), count: device.queueCount)))
    }

    deinit {
        close(interruptFD)
        for fd in notifyFDs { close(fd) }
    }

    /// The kernel command-line fragment that announces this device to Linux.
    public var commandLineDevice: String { "virtio_mmio.device=4K@\(hex(base)):\(irq)" }

    /// Wires the irqfd and the ioeventfds into the VM.
    public func attach(to vm: KVMVirtualMachineFD) throws {
        try vm.registerIRQFD(interruptFD, gsi: irq)
        for (i, fd) in notifyFDs.enumerated() { try vm.registerIOEventFD(fd, mmioAddress: base + 0x50, datamatch: UInt32(i)) }
    }

    func report(_ message: String) {
        let n = reports.add(1, ordering: .relaxed).newValue
        if n <= 32 { reporter("\(device.name) at \(hex(base)): \(message)") }
        else if n == 33 { reporter("\(device.name) at \(hex(base)): further reports suppressed") }
    }

    /// How many problems the device reported (for tests and the exit summary).
    public var reportCount: Int { reports.load(ordering: .relaxed) }

    private func raiseInterrupt(_ bits: UInt32, in s: inout State) {
        s.interruptStatus |= bits
        var one: UInt64 = 1
        _ = Glibc.write(interruptFD, &one, 8)
    }

    private func kill(_ why: String, in s: inout State) {
        guard s.dead == nil else { return }
        s.dead = why
        s.status |= Self.statusNeedsReset
        report("\(why); device stopped until the driver resets it")
        raiseInterrupt(2, in: &s) // configuration change
    }

    // MARK: IO thread

    /// Called on the IO thread when queue `index` was notified.
    public func queueNotified(_ index: Int) {
        var counter: UInt64 = 0
        _ = Glibc.read(notifyFDs[index], &counter, 8)
        state.withLock { s in
            guard s.dead == nil, s.status & Self.statusDriverOK != 0, index < s.queues.count else { return }
            guard s.configs[index].ready else {
                report("queue \(index) notified before it was made ready")
                return
            }
            do {
                if try device.process(queue: index, queues: &s.queues, memory: memory, report: { report($0) }) {
                    raiseInterrupt(1, in: &s)
                }
            } catch { kill("\(error)", in: &s) }
        }
    }

    /// Called on the IO thread when host-side input for this device is ready.
    public func hostEvent(_ token: Int) {
        state.withLock { s in
            guard s.dead == nil, s.status & Self.statusDriverOK != 0, !s.queues.isEmpty else { return }
            do {
                if try device.hostEvent(token: token, queues: &s.queues, memory: memory, report: { report($0) }) {
                    raiseInterrupt(1, in: &s)
                }
            } catch { kill("\(error)", in: &s) }
        }
    }

    // MARK: MMIO registers (vCPU threads)

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        if offset >= 0x100 {
            device.readConfig(offset: offset - 0x100, into: data)
            return
        }
        guard data.count == 4, offset % 4 == 0 else { fill(data, with: 0); return }
        let value: UInt32 = state.withLock { s in
            let q = Int(s.queueSelect)
            let features = device.deviceFeatures | Self.versionOne
            switch offset {
            case 0x000: return Self.magic
            case 0x004: return 2
            case 0x008: return device.deviceType
            case 0x00C: return 0x4248_4B42 // "BKHB"
            case 0x010: return s.deviceFeatureSelect == 0 ? UInt32(truncatingIfNeeded: features)
                : s.deviceFeatureSelect == 1 ? UInt32(truncatingIfNeeded: features >> 32) : 0
            case 0x034: return q < s.configs.count ? UInt32(Self.maxQueueSize) : 0
            case 0x044: return q < s.configs.count && s.configs[q].ready ? 1 : 0
            case 0x060: return s.interruptStatus
            case 0x070: return s.status
            case 0x0FC: return s.configGeneration
            default: return 0
            }
        }
        fill(data, with: UInt64(value))
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        if offset >= 0x100 {
            device.writeConfig(offset: offset - 0x100, data: data)
            return
        }
        guard data.count == 4, offset % 4 == 0 else {
            report("ignored a \(data.count)-byte register write at offset \(hex(offset))")
            return
        }
        let value = UInt32(truncatingIfNeeded: accessValue(data))
        if offset == 0x050 { // QueueNotify reached us (no ioeventfd matched): hand it to the IO thread.
            if Int(value) < notifyFDs.count {
                var one: UInt64 = 1
                _ = Glibc.write(notifyFDs[Int(value)], &one, 8)
            } else {
                report("notify for queue \(value), which does not exist")
            }
            return
        }
        state.withLock { s in
            let q = Int(s.queueSelect)
            let queueWritable = q < s.configs.count && !s.configs[q].ready && s.status & Self.statusDriverOK == 0
            func setQueue(_ body: (inout QueueConfig) -> Void) {
                if queueWritable { body(&s.configs[q]) } else { report("queue register \(hex(offset)) written for queue \(q) while not allowed") }
            }
            switch offset {
            case 0x014: s.deviceFeatureSelect = value
            case 0x020:
                if s.driverFeatureSelect < 2 {
                    let shift = UInt64(s.driverFeatureSelect) * 32
                    s.driverFeatures = (s.driverFeatures & ~(0xFFFF_FFFF << shift)) | (UInt64(value) << shift)
                }
            case 0x024: s.driverFeatureSelect = value
            case 0x030: s.queueSelect = value
            case 0x038: setQueue { $0.size = UInt16(truncatingIfNeeded: value) }
            case 0x044:
                guard q < s.configs.count else { report("QueueReady for queue \(q), which does not exist"); return }
                if value == 0 { s.configs[q].ready = false; return }
                guard queueWritable else { return }
                s.configs[q].ready = true
            case 0x064: s.interruptStatus &= ~value
            case 0x070: writeStatus(value, in: &s)
            case 0x080: setQueue { $0.descriptor = ($0.descriptor & ~0xFFFF_FFFF) | UInt64(value) }
            case 0x084: setQueue { $0.descriptor = ($0.descriptor & 0xFFFF_FFFF) | UInt64(value) << 32 }
            case 0x090: setQueue { $0.driver = ($0.driver & ~0xFFFF_FFFF) | UInt64(value) }
            case 0x094: setQueue { $0.driver = ($0.driver & 0xFFFF_FFFF) | UInt64(value) << 32 }
            case 0x0A0: setQueue { $0.device = ($0.device & ~0xFFFF_FFFF) | UInt64(value) }
            case 0x0A4: setQueue { $0.device = ($0.device & 0xFFFF_FFFF) | UInt64(value) << 32 }
            default: report("write to read-only or unknown register \(hex(offset))")
            }
        }
    }

    private func writeStatus(_ value: UInt32, in s: inout State) {
        if value == 0 { // reset
            s = State(configs: Array(repeating: QueueConfig(), count: device.queueCount))
            device.reset()
            return
        }
        let added = value & ~s.status
        if added & Self.statusFeaturesOK != 0 {
            let offered = device.deviceFeatures | Self.versionOne
            guard s.driverFeatures & ~offered == 0, s.driverFeatures & Self.versionOne != 0 else {
                report("driver accepted features \(hex(s.driverFeatures)) beyond those offered or without VERSION_1")
                s.status = value & ~Self.statusFeaturesOK
                return
            }
        }
        if added & Self.statusDriverOK != 0 {
            var queues: [Virtqueue] = []
            for (i, c) in s.configs.enumerated() {
                if !c.ready {
                    // An unused queue: give it a harmless one-entry ring that is never processed.
                    queues.append(try! Virtqueue(size: 1, maxSize: 1, descriptorTable: 0, availableRing: 0, usedRing: 0, memory: memory))
                    continue
                }
                do {
                    queues.append(try Virtqueue(size: c.size, maxSize: Self.maxQueueSize, descriptorTable: c.descriptor,
                                                availableRing: c.driver, usedRing: c.device, memory: memory))
                } catch {
                    s.status = value
                    kill("queue \(i): \(error.description)", in: &s)
                    return
                }
            }
            s.queues = queues
        }
        s.status = value | (s.status & Self.statusNeedsReset)
    }
}
