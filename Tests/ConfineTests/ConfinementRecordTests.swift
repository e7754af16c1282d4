import Testing
import Foundation
import OCIRuntime
@testable import Confine

/// The confinement kept for `exec` is written by hand; it must be what JSONEncoder with sorted keys wrote, byte for
/// byte, and read back to the same record.
@Suite struct ConfinementRecordTests {
    static func reference(_ r: ConfinementRecord) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(r), as: UTF8.self)
    }

    @Test func handWrittenEqualsJSONEncoderAndRoundTrips() throws {
        var spec = Spec.defaultSpec()
        var records = [ConfinementRecord(spec: spec)]
        spec.process?.capabilities = Spec.Capabilities(bounding: ["CAP_KILL", "CAP_\"ODD\\"], effective: [], inheritable: nil, permitted: ["CAP_KILL"], ambient: nil)
        spec.process?.noNewPrivileges = false
        var filter = Spec.Seccomp(defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 38, architectures: ["SCMP_ARCH_X86_64"], flags: [],
                                  syscalls: [Spec.Seccomp.Syscall(names: ["read", "write"], action: "SCMP_ACT_ALLOW"),
                                             Spec.Seccomp.Syscall(names: ["personality"], action: "SCMP_ACT_ALLOW", errnoRet: 1,
                                                                  args: [Spec.Seccomp.Arg(index: 0, value: UInt64.max, valueTwo: 7, op: "SCMP_CMP_EQ"),
                                                                         Spec.Seccomp.Arg(index: 1, value: 0, op: "SCMP_CMP_NE")])])
        filter.listenerPath = "/run/notify.sock"
        filter.listenerMetadata = "meta\ndata"
        spec.linux = spec.linux ?? Spec.Linux()
        spec.linux?.seccomp = filter
        records.append(ConfinementRecord(spec: spec))
        spec.process = nil
        spec.linux?.seccomp?.syscalls = nil
        records.append(ConfinementRecord(spec: spec))
        records.append(ConfinementRecord(spec: Spec()))
        for r in records {
            #expect(r.encoded == (try Self.reference(r)))
            #expect(try ConfinementRecord.from([ConfinementRecord.key: r.encoded]) == r)
        }
    }
}
