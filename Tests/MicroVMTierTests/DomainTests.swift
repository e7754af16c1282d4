import Foundation
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

    @Test func probeRefusesKVMPVMAndMissingKVM() throws {
        let dir = "/tmp/bulkhead-probe-\(UInt32.random(in: 0...UInt32.max))"
        try MicroVMPaths.makeDirectories(dir + "/kvm_pvm")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: dir + "2") }
        let missing = HypervisorProbe.probe(sysModule: dir, kvmDevice: dir + "/no-such-kvm")
        #expect(missing.domainType == "qemu")
        #expect(missing.reason.contains("cannot be opened"))
        // /dev/null stands in for an openable /dev/kvm.
        let pvm = HypervisorProbe.probe(sysModule: dir, kvmDevice: "/dev/null")
        #expect(pvm.domainType == "qemu")
        #expect(pvm.reason.contains("kvm_pvm"))
        try MicroVMPaths.makeDirectories(dir + "2/kvm_intel")
        let intel = HypervisorProbe.probe(sysModule: dir + "2", kvmDevice: "/dev/null")
        #expect(intel.domainType == "kvm")
    }
}
