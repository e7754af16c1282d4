import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A 16550A UART at COM1 (0x3F8, IRQ 4): transmit to a host fd, receive from host input, interrupts for
/// "data ready" and "transmitter empty" when the guest enables them.
public final class Serial: PortDevice, @unchecked Sendable {
    struct State {
        var ier: UInt8 = 0, lcr: UInt8 = 0, mcr: UInt8 = 0x08, scr: UInt8 = 0
        var dll: UInt8 = 0x0C, dlm: UInt8 = 0
        var input: [UInt8] = []
        var thrEmptyPending = false
    }
    private let state = Mutex(State())
    private let outputFD: Int32
    private let interrupt: @Sendable (Bool) -> Void
    /// Set when the first byte reached the host (for start-up measurements in logs).
    public let bytesWritten = Atomic<Int>(0)

    /// `outputFD` receives what the guest transmits; `interrupt(level)` drives IRQ 4.
    public init(outputFD: Int32, interrupt: @escaping @Sendable (Bool) -> Void) {
        self.outputFD = outputFD
        self.interrupt = interrupt
    }

    /// Host input for the guest (e.g. from stdin).
    public func enqueue(_ bytes: [UInt8]) {
        let raise = state.withLock { s -> Bool in
            s.input.append(contentsOf: bytes.prefix(max(0, 4096 - s.input.count)))
            return s.ier & 0x01 != 0
        }
        if raise { pulse() }
    }

    private func pulse() { interrupt(true); interrupt(false) }

    public func read(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        guard data.count >= 1 else { return }
        let value: UInt8 = state.withLock { s in
            let dlab = s.lcr & 0x80 != 0
            switch offset {
            case 0:
                if dlab { return s.dll }
                return s.input.isEmpty ? 0 : s.input.removeFirst()
            case 1: return dlab ? s.dlm : s.ier
            case 2: // IIR: FIFOs enabled; data ready before transmitter empty
                if s.ier & 0x01 != 0 && !s.input.isEmpty { return 0xC4 }
                if s.ier & 0x02 != 0 && s.thrEmptyPending { s.thrEmptyPending = false; return 0xC2 }
                return 0xC1
            case 3: return s.lcr
            case 4: return s.mcr
            case 5: return 0x60 | (s.input.isEmpty ? 0 : 0x01) // THR empty, transmitter empty, data ready
            case 6: return 0xB0 // DCD, DSR, CTS
            default: return s.scr
            }
        }
        data[0] = value
        for i in 1..<data.count { data[i] = 0 }
    }

    public func write(offset: UInt16, data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        var transmit = false, raise = false
        state.withLock { s in
            let dlab = s.lcr & 0x80 != 0
            switch offset {
            case 0:
                if dlab { s.dll = value } else {
                    transmit = true
                    if s.ier & 0x02 != 0 { s.thrEmptyPending = true; raise = true }
                }
            case 1:
                if dlab { s.dlm = value } else {
                    let enablingTHRE = value & 0x02 != 0 && s.ier & 0x02 == 0
                    s.ier = value & 0x0F
                    if enablingTHRE { s.thrEmptyPending = true; raise = true }
                }
            case 3: s.lcr = value
            case 4: s.mcr = value
            case 7: s.scr = value
            default: break
            }
        }
        if transmit {
            var byte = value
            _ = Glibc.write(outputFD, &byte, 1) // a full or closed console must not stop the guest
            bytesWritten.add(1, ordering: .relaxed)
        }
        if raise { pulse() }
    }
}

/// The i8042 keyboard controller, reduced to what a guest uses to reboot: command 0xFE on port 0x64 pulses
/// the CPU reset line, which ends the VM.
public final class I8042: PortDevice, @unchecked Sendable {
    private let onReset: @Sendable () -> Void
    public init(onReset: @escaping @Sendable () -> Void) { self.onReset = onReset }

    public func read(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0) // status: output buffer empty, input buffer empty
    }

    public func write(offset: UInt16, data: UnsafeRawBufferPointer) {
        if offset == 4, data.first == 0xFE { onReset() }
    }
}
