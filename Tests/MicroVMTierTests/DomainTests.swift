import Foundation
import LinuxOS
import MicroVMBackend
import Testing

/// The pure parts: the domain XML and the hypervisor probe's decision.
struct DomainTests {
    func sample() -> DomainDefinition {
        DomainDefinition(name: "bulkhead-c1", type: "qemu", memoryMiB: 256, vcpus: 2, kernel: "/k/bzImage", initramfs: "/k/initrd",
                         commandLine: "console=ttyS0 reboot=k panic=-1", rootfsImage: "/data/a&b.erofs",
                         consoleLog: "/run/c1/console.log", controlSocket: "/run/c1/ctl.sock", stdioSocket: "/run/c1/io.sock")
    }

    @Test func domainXMLHasTheTiersDevicesAndNoNIC() {
        let xml = sample().xml
        #expect(xml.contains("<domain type='qemu'>"))
        #expect(xml.contains("machine='pc'"))
        #expect(xml.contains("<vcpu>2</vcpu>") && xml.contains("<memory unit='MiB'>256</memory>"))
        #expect(xml.contains("<on_reboot>destroy</on_reboot>"))
        #expect(xml.contains("<source file='/data/a&amp;b.erofs'/>"), "file names are escaped")
        #expect(xml.contains("<readonly/>"))
        #expect(xml.contains("name='bulkhead.control'") && xml.contains("name='bulkhead.stdio'"))
        #expect(!xml.contains("<interface"))
        #expect(!xml.contains("host-passthrough"), "TCG gets no host CPU model")
        var kvm = sample()
        kvm.type = "kvm"
        #expect(kvm.xml.contains("<cpu mode='host-passthrough'/>"))
    }

    @Test func hostMemoryLimitFindsTheV1MemoryControllerElseV2() throws {
        let dir = "/tmp/bulkhead-hostmem-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try HostPath.makeDirectories(dir + "/proc/7", mode: 0o700)
        try HostPath.makeDirectories(dir + "/proc/8", mode: 0o700)
        try "9:name=systemd:/\n4:memory:/machine/qemu-embed-x-1-bulkhead-c1.libvirt-qemu\n0::/machine/q/emulator\n".write(toFile: dir + "/proc/7/cgroup", atomically: true, encoding: .utf8)
        try "0::/machine/q\n".write(toFile: dir + "/proc/8/cgroup", atomically: true, encoding: .utf8)
        let v1 = HostMemoryLimit.limitFile(of: 7, procRoot: dir + "/proc", cgroupRoot: "/cg")
        #expect(v1?.file == "/cg/memory/machine/qemu-embed-x-1-bulkhead-c1.libvirt-qemu/memory.limit_in_bytes")
        let v2 = HostMemoryLimit.limitFile(of: 8, procRoot: dir + "/proc", cgroupRoot: "/cg")
        #expect(v2?.file == "/cg/unified/machine/q/memory.max" && v2?.cgroup == "/machine/q")
        #expect(HostMemoryLimit.limitFile(of: 9, procRoot: dir + "/proc") == nil)
        // The root cgroup and our own are never limited.
        #expect(HostMemoryLimit.apply(pid: getpid(), bytes: 1 << 30) != nil)
    }

    @Test func probeRefusesKVMPVMAndMissingKVM() throws {
        let dir = "/tmp/bulkhead-probe-\(UInt32.random(in: 0...UInt32.max))"
        try HostPath.makeDirectories(dir + "/kvm_pvm", mode: 0o700)
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: dir + "2") }
        let missing = HypervisorProbe.probe(sysModule: dir, kvmDevice: dir + "/no-such-kvm")
        #expect(missing.domainType == "qemu")
        #expect(missing.reason.contains("cannot be opened"))
        // /dev/null stands in for an openable /dev/kvm.
        let pvm = HypervisorProbe.probe(sysModule: dir, kvmDevice: "/dev/null")
        #expect(pvm.domainType == "qemu")
        #expect(pvm.reason.contains("kvm_pvm"))
        try HostPath.makeDirectories(dir + "2/kvm_intel", mode: 0o700)
        let intel = HypervisorProbe.probe(sysModule: dir + "2", kvmDevice: "/dev/null")
        #expect(intel.domainType == "kvm")
    }
}
