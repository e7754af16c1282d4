import Testing
@testable import Cgroups

/// The generated device programs, run by a small eBPF interpreter (the opcodes the generator emits), against the
/// rules' meaning: newest rule first, the first that matches decides, nothing matching denies; an allow rule matches
/// when it grants every access asked for, a deny rule when it covers any of them.
@Suite struct DeviceProgramTests {
    /// Runs `program` on the context (access_type = access << 16 | type, major, minor); returns R0.
    static func run(_ program: [DeviceFilter.Instruction], type: UInt32, access: UInt32, major: UInt32, minor: UInt32) -> UInt64 {
        let ctx: [UInt32] = [access << 16 | type, major, minor]
        var r = [UInt64](repeating: 0, count: 11)
        r[1] = 0xC0DE_0000   // the context pointer: only loads at offsets from it are allowed
        var pc = 0
        var steps = 0
        while true {
            steps += 1
            precondition(steps < 100_000 && pc < program.count, "ran off the program")
            let i = program[pc]
            let d = Int(i.dst), s = Int(i.src)
            let imm32 = UInt32(bitPattern: i.imm), imm64 = UInt64(bitPattern: Int64(i.imm))
            pc += 1
            switch i.code {
            case 0x61:   // ldxw dst, [src + off]
                precondition(r[s] == 0xC0DE_0000 && i.offset >= 0 && i.offset % 4 == 0 && i.offset < 12, "load outside the context")
                r[d] = UInt64(ctx[Int(i.offset) / 4])
            case 0x54: r[d] = UInt64(UInt32(truncatingIfNeeded: r[d]) & imm32)
            case 0x74: r[d] = UInt64(UInt32(truncatingIfNeeded: r[d]) >> imm32)
            case 0xbc: r[d] = UInt64(UInt32(truncatingIfNeeded: r[s]))
            case 0xbf: r[d] = r[s]
            case 0xb4: r[d] = UInt64(imm32)
            case 0x55: if r[d] != imm64 { pc += Int(i.offset) }
            case 0x15: if r[d] == imm64 { pc += Int(i.offset) }
            case 0x95: return r[0]
            default: preconditionFailure("opcode \(i.code) not interpreted")
            }
        }
    }

    /// What the rules mean, straight from their text.
    static func reference(_ rules: [DeviceAccessRule], type: UInt32, access: UInt32, major: UInt32, minor: UInt32) -> UInt64 {
        for rule in rules.reversed() {
            if rule.kind == .block && type != 1 || rule.kind == .char && type != 2 { continue }
            if let m = rule.major, m != major { continue }
            if let m = rule.minor, m != minor { continue }
            let granted = rule.access.reduce(UInt32(0)) { $0 | ($1 == "m" ? 1 : $1 == "r" ? 2 : 4) }
            if rule.allow ? access & ~granted != 0 : access & granted == 0 { continue }
            return rule.allow ? 1 : 0
        }
        return 0
    }

    static func check(_ rules: [DeviceAccessRule], requests: [(UInt32, UInt32, UInt32, UInt32)]) {
        let program = DeviceFilter.program(for: rules)
        for (type, access, major, minor) in requests {
            let got = run(program, type: type, access: access, major: major, minor: minor)
            let want = reference(rules, type: type, access: access, major: major, minor: minor)
            #expect(got == want, "rules \(rules.map(\.v1String)) request type \(type) access \(access) \(major):\(minor)")
        }
    }

    static func everyRequest(majors: [UInt32], minors: [UInt32]) -> [(UInt32, UInt32, UInt32, UInt32)] {
        var out: [(UInt32, UInt32, UInt32, UInt32)] = []
        for type: UInt32 in [1, 2] { for access: UInt32 in 1...7 { for major in majors { for minor in minors { out.append((type, access, major, minor)) } } } }
        return out
    }

    @Test func theStandardRulesMeanWhatTheySay() throws {
        let rules = try DeviceAccessRule.effective([.init(allow: false, access: "rwm")])
        Self.check(rules, requests: Self.everyRequest(majors: [0, 1, 5, 10, 136, 200], minors: [0, 1, 2, 3, 5, 7, 8, 9, 200, 229]))
        Self.check(DeviceAccessRule.defaults, requests: Self.everyRequest(majors: [1, 5, 136], minors: [0, 2, 3, 4]))
    }

    @Test func randomRuleListsMeanWhatTheySay() {
        var rng = SystemRandomNumberGenerator()
        let values: [UInt32] = [0, 1, 3, 7]
        let requests = Self.everyRequest(majors: values, minors: values)
        for _ in 0..<300 {
            var rules: [DeviceAccessRule] = []
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                let kind: DeviceAccessRule.Kind = [.all, .char, .block].randomElement(using: &rng)!
                var access = ""
                for c in "rwm" where Bool.random(using: &rng) { access.append(c) }
                if access.isEmpty { access = "r" }
                rules.append(DeviceAccessRule(allow: Bool.random(using: &rng), kind: kind,
                                              major: Bool.random(using: &rng) ? values.randomElement(using: &rng) : nil,
                                              minor: Bool.random(using: &rng) ? values.randomElement(using: &rng) : nil,
                                              access: access))
            }
            Self.check(rules, requests: requests)
        }
    }
}
