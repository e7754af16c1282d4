import Testing
@testable import BulkheadCommands
import OCIRuntime
import Policy

/// The policy's resource ceilings on a spec: added where missing, lowered where above, kept where below.
@Suite struct CeilingTests {
    func number(_ v: JSONValue?, _ key: String) -> Double? {
        if case .object(let f)? = v, case .number(let n)? = f[key] { return n }
        return nil
    }

    @Test func missingLimitsAreAdded() {
        var spec = Spec()
        PolicyAdmission.applyCeilings(ResourceCeilings(memory: 512 << 20, milliCPUs: 1500, pids: 100), to: &spec)
        let r = spec.linux?.resources
        #expect(number(r?.memory, "limit") == Double(512 << 20))
        #expect(number(r?.cpu, "period") == 100_000 && number(r?.cpu, "quota") == 150_000)
        #expect(number(r?.pids, "limit") == 100)
    }

    @Test func limitsAboveAreLoweredAndBelowAreKept() {
        var spec = Spec()
        spec.linux = Spec.Linux()
        var res = Spec.Resources()
        res.memory = .object(["limit": .number(Double(2 << 30)), "swap": .number(-1), "reservation": .number(Double(1 << 30))])
        res.cpu = .object(["quota": .number(20_000), "period": .number(50_000)])
        res.pids = .object(["limit": .number(-1)])
        spec.linux!.resources = res
        PolicyAdmission.applyCeilings(ResourceCeilings(memory: 256 << 20, milliCPUs: 1000, pids: 64), to: &spec)
        let r = spec.linux?.resources
        #expect(number(r?.memory, "limit") == Double(256 << 20))
        #expect(number(r?.memory, "swap") == Double(256 << 20), "unlimited swap is capped at the ceiling")
        #expect(number(r?.memory, "reservation") == Double(256 << 20))
        #expect(number(r?.cpu, "quota") == 20_000 && number(r?.cpu, "period") == 50_000, "0.4 CPU is under 1 CPU: kept")
        #expect(number(r?.pids, "limit") == 64, "unlimited (-1) becomes the ceiling")
    }

    @Test func noCeilingsLeaveTheSpecAlone() {
        var spec = Spec()
        PolicyAdmission.applyCeilings(ResourceCeilings(), to: &spec)
        #expect(spec.linux == nil)
    }
}
