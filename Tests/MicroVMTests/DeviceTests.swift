import Foundation
import Testing
@testable import MicroVM

@Suite("Guest memory and virtqueue validation")
struct DeviceTests {
    @Test func guestMemoryRefusesEveryRangeOutsideRAM() throws {
        let memory = try GuestMemory(size: 64 << 20)
        #expect(throws: Never.self) { _ = try memory.pointer(0, count: 64 << 20) }
        #expect(throws: GuestMemoryError.self) { _ = try memory.pointer((64 << 20) - 1, count: 2) }
        #expect(throws: GuestMemoryError.self) { _ = try memory.pointer(UInt64.max, count: 2) }
        #expect(throws: GuestMemoryError.self) { _ = try memory.pointer(8, count: UInt64.max) }
        #expect(throws: GuestMemoryError.self) { _ = try memory.pointer(0xD000_0000, count: 1) }
        let layout = GuestMemory.layout(size: 0xE000_0000)
        #expect(layout == [.init(guestAddress: 0, size: 0xC000_0000, hostOffset: 0),
                           .init(guestAddress: 0x1_0000_0000, size: 0x2000_0000, hostOffset: 0xC000_0000)])
        #expect(throws: KVMError.self) { _ = try GuestMemory(size: 1 << 20) }
    }

    /// A queue of 8 at 0x10000 (descriptors), 0x11000 (available), 0x12000 (used).
    func queue(_ memory: GuestMemory) throws -> Virtqueue {
        try Virtqueue(size: 8, maxSize: 256, descriptorTable: 0x10000, availableRing: 0x11000, usedRing: 0x12000, memory: memory)
    }

    func descriptor(_ memory: GuestMemory, _ i: UInt64, address: UInt64, length: UInt32, flags: UInt16, next: UInt16) throws {
        try memory.store(address, at: 0x10000 + 16 * i)
        try memory.store(length, at: 0x10000 + 16 * i + 8)
        try memory.store(flags, at: 0x10000 + 16 * i + 12)
        try memory.store(next, at: 0x10000 + 16 * i + 14)
    }

    func offer(_ memory: GuestMemory, head: UInt16, index: UInt16) throws {
        try memory.store(head, at: 0x11000 + 4 + 2 * UInt64((index - 1) % 8))
        try memory.store(index, at: 0x11002)
    }

    @Test func chainsAreWalkedAndChecked() throws {
        let memory = try GuestMemory(size: 32 << 20)
        var q = try queue(memory)
        #expect(try q.pop(memory) == nil)
        try descriptor(memory, 0, address: 0x20000, length: 16, flags: 1, next: 1)
        try descriptor(memory, 1, address: 0x21000, length: 512, flags: 2, next: 0)
        try offer(memory, head: 0, index: 1)
        let chain = try #require(try q.pop(memory)).get()
        #expect(chain.buffers == [VirtioBuffer(address: 0x20000, length: 16, writable: false),
                                  VirtioBuffer(address: 0x21000, length: 512, writable: true)])
        try q.push(memory, head: chain.head, written: 512)
        #expect(try memory.load(UInt16.self, at: 0x12002) == 1)
        #expect(try memory.load(UInt32.self, at: 0x12008) == 512)

        // A loop: 2 → 3 → 2.
        try descriptor(memory, 2, address: 0x20000, length: 16, flags: 1, next: 3)
        try descriptor(memory, 3, address: 0x20000, length: 16, flags: 1, next: 2)
        try offer(memory, head: 2, index: 2)
        guard case .failure(let loop)? = try q.pop(memory) else { Issue.record("loop accepted"); return }
        #expect(loop.head == 2 && loop.reason.contains("loops"))

        // next beyond the queue, and an address beyond RAM.
        try descriptor(memory, 4, address: 0x20000, length: 16, flags: 1, next: 9)
        try offer(memory, head: 4, index: 3)
        guard case .failure(let beyond)? = try q.pop(memory) else { Issue.record("bad next accepted"); return }
        #expect(beyond.reason.contains("beyond the queue"))
        try descriptor(memory, 5, address: 0x1_0000_0000, length: 16, flags: 0, next: 0)
        try offer(memory, head: 5, index: 4)
        guard case .failure(let outside)? = try q.pop(memory) else { Issue.record("bad address accepted"); return }
        #expect(outside.reason.contains("not guest RAM"))

        // The available index jumping past the queue size breaks the ring.
        try memory.store(UInt16(200), at: 0x11002)
        #expect(throws: VirtioError.self) { _ = try q.pop(memory) }
    }

    @Test func ringGeometryIsChecked() throws {
        let memory = try GuestMemory(size: 32 << 20)
        #expect(throws: VirtioError.self) { _ = try Virtqueue(size: 3, maxSize: 256, descriptorTable: 0, availableRing: 0, usedRing: 0, memory: memory) }
        #expect(throws: VirtioError.self) { _ = try Virtqueue(size: 512, maxSize: 256, descriptorTable: 0, availableRing: 0, usedRing: 0, memory: memory) }
        #expect(throws: VirtioError.self) { _ = try Virtqueue(size: 8, maxSize: 256, descriptorTable: 8, availableRing: 0, usedRing: 0, memory: memory) }
        #expect(throws: VirtioError.self) {
            _ = try Virtqueue(size: 8, maxSize: 256, descriptorTable: (32 << 20) - 64, availableRing: 0, usedRing: 0, memory: memory)
        }
    }

    @Test func virtioMMIORegistersAndFeatureNegotiation() throws {
        let memory = try GuestMemory(size: 32 << 20)
        let disk = try temporaryFile([UInt8](repeating: 7, count: 4096))
        defer { unlink(disk) }
        let reports = ReportLog()
        let transport = try VirtioMMIO(device: try VirtioBlock(path: disk, readOnly: true, serial: "t"), base: 0xD000_0000, irq: 5,
                                       memory: memory, report: { reports.add($0) })
        func read(_ offset: UInt64) -> UInt32 {
            var v: UInt32 = 0
            withUnsafeMutableBytes(of: &v) { transport.read(offset: offset, into: $0) }
            return v
        }
        func write(_ offset: UInt64, _ value: UInt32) { withUnsafeBytes(of: value) { transport.write(offset: offset, data: $0) } }
        #expect(read(0) == 0x7472_6976 && read(4) == 2 && read(8) == 2)
        #expect(read(0x100) == 8) // capacity: 8 sectors
        write(0x14, 0); #expect(read(0x10) & (1 << 5) != 0) // read-only
        write(0x14, 1); #expect(read(0x10) == 1)            // VERSION_1
        write(0x70, 1 | 2)
        write(0x24, 0); write(0x20, 1 << 12)                // a feature not offered
        write(0x24, 1); write(0x20, 1)
        write(0x70, 1 | 2 | 8)
        #expect(read(0x70) & 8 == 0)
        #expect(reports.messages.contains { $0.contains("beyond those offered") })
        #expect(transport.commandLineDevice == "virtio_mmio.device=4K@0xd0000000:5")
    }

    @Test func serialTransmitsAndHonoursDLAB() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let serial = Serial(outputFD: fds[1]) { _ in }
        func out(_ offset: UInt16, _ v: UInt8) { withUnsafeBytes(of: v) { serial.write(offset: offset, data: $0) } }
        func inp(_ offset: UInt16) -> UInt8 { var v: UInt8 = 0; withUnsafeMutableBytes(of: &v) { serial.read(offset: offset, into: $0) }; return v }
        #expect(inp(5) & 0x60 == 0x60)
        out(3, 0x80); out(0, 0x01); out(1, 0x00); out(3, 0x03) // divisor 1 through DLAB, then 8N1
        out(0, UInt8(ascii: "h")); out(0, UInt8(ascii: "i"))
        var buffer = [UInt8](repeating: 0, count: 2)
        #expect(read(fds[0], &buffer, 2) == 2)
        #expect(buffer == Array("hi".utf8))
        serial.enqueue([0x41])
        #expect(inp(5) & 1 == 1 && inp(0) == 0x41 && inp(5) & 1 == 0)
    }
}

final class ReportLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
    var messages: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
