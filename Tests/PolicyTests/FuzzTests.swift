import Testing
import Foundation
@testable import Policy

/// Bad input: arbitrary and mutated bytes as a policy never crash the loader, and it always answers with either
/// a policy or at least one error located inside the input.
///
/// Deterministic (seeded). Seeds: the example policies, the built-in policy and the recorded corpus in
/// Tests/PolicyTests/Corpus (hand-written edge cases and inputs that once found bugs).
@Suite struct FuzzTests {
    static let mutatedRuns = 20_000
    static let randomRuns = 5_000

    static func seeds() throws -> [[UInt8]] {
        var seeds: [[UInt8]] = [Array(Policy.builtInText.utf8)]
        for name in ["default", "saas-multitenant", "dev-laptop"] {
            seeds.append(Array(try Data(contentsOf: URL(fileURLWithPath: "\(repoRoot)/policies/\(name).yaml"))))
            seeds.append(Array(try Data(contentsOf: URL(fileURLWithPath: "\(repoRoot)/policies/\(name).cases.yaml"))))
        }
        let corpus = "\(repoRoot)/Tests/PolicyTests/Corpus"
        for file in try FileManager.default.contentsOfDirectory(atPath: corpus).sorted() {
            seeds.append(Array(try Data(contentsOf: URL(fileURLWithPath: "\(corpus)/\(file)"))))
        }
        return seeds
    }

    static let tokens: [[UInt8]] = [
        ":", ": ", "- ", "\n", "\n  ", "\t", "{", "}", "[", "]", ",", "&a ", "*a", "!!str ", "? ", "|", ">", "'", "\"",
        "#", "---\n", "...\n", "~", "null", "true", "false", "0x1F", "1e309", "-1", "99999999999999999999", "\\",
        "\u{feff}", "\u{0}", "é", "**", "*", "version: 1\n", "rules:\n", "  - name: x\n    decide: deny\n", "match: {}",
        "%YAML 1.1\n", "%TAG ! tag:x:\n", "<<: *a\n", "\r\n", "\u{85}", "\u{2028}",
    ].map { Array($0.utf8) }

    static func mutate(_ input: [UInt8], _ seeds: [[UInt8]], _ rng: inout SplitMix64) -> [UInt8] {
        var b = input
        for _ in 0..<Int.random(in: 1...6, using: &rng) {
            let pos = b.isEmpty ? 0 : Int.random(in: 0...b.count, using: &rng)
            switch Int.random(in: 0..<7, using: &rng) {
            case 0 where !b.isEmpty: b[min(pos, b.count - 1)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1: b.insert(contentsOf: tokens.randomElement(using: &rng)!, at: pos)
            case 2 where !b.isEmpty:
                let end = min(b.count, pos + Int.random(in: 1...40, using: &rng))
                if pos < end { b.removeSubrange(pos..<end) }
            case 3 where !b.isEmpty:   // duplicate a chunk
                let end = min(b.count, pos + Int.random(in: 1...80, using: &rng))
                if pos < end { b.insert(contentsOf: Array(b[pos..<end]), at: pos) }
            case 4:   // splice in part of another seed
                let other = seeds.randomElement(using: &rng)!
                if !other.isEmpty {
                    let s = Int.random(in: 0..<other.count, using: &rng)
                    let e = min(other.count, s + Int.random(in: 1...200, using: &rng))
                    b.insert(contentsOf: other[s..<e], at: pos)
                }
            case 5: b.insert(UInt8.random(in: 0...255, using: &rng), at: pos)
            default:   // truncate
                if pos < b.count { b.removeSubrange(pos...) }
            }
        }
        return b
    }

    /// The invariant: a policy with only warnings, or errors located within the input.
    @discardableResult
    static func checkOne(_ bytes: [UInt8]) -> Bool {
        let (policy, diagnostics) = Policy.check(bytes, source: "fuzz.yaml")
        // Line breaks as YAML counts them (at most): LF, CR, NEL (C2 85), LS and PS (E2 80 A8/A9).
        var lines = 1
        for i in bytes.indices {
            switch bytes[i] {
            case 0x0a, 0x0d: lines += 1
            case 0x85 where i > 0 && bytes[i - 1] == 0xc2: lines += 1
            case 0xa8 where i > 1 && bytes[i - 1] == 0x80 && bytes[i - 2] == 0xe2: lines += 1
            case 0xa9 where i > 1 && bytes[i - 1] == 0x80 && bytes[i - 2] == 0xe2: lines += 1
            default: break
            }
        }
        for d in diagnostics {
            #expect(d.location.file == "fuzz.yaml")
            #expect(d.location.line >= 1 && d.location.line <= lines + 1, "\(d) outside the input (\(lines) lines)")
            #expect(d.location.column >= 1)
        }
        if let policy {
            #expect(!diagnostics.contains { $0.severity == .error })
            #expect(policy.rules.last?.isCatchAll == true)
            // A loaded policy always decides.
            _ = policy.decide(DeploymentRequest(tenant: "t", image: "x"), explain: true)
            return true
        } else {
            #expect(diagnostics.contains { $0.severity == .error }, "no policy and no error for \(bytes.prefix(200))")
            return false
        }
    }

    @Test func mutatedPoliciesNeverCrashAndAlwaysAnswer() throws {
        let seeds = try Self.seeds()
        var rng = SplitMix64(seed: 0x5EED_B0C5)
        var loaded = 0
        for _ in 0..<Self.mutatedRuns {
            let input = Self.mutate(seeds.randomElement(using: &rng)!, seeds, &rng)
            if Self.checkOne(input) { loaded += 1 }
        }
        print("fuzz: \(Self.mutatedRuns) mutated inputs from \(seeds.count) seeds, \(loaded) of them valid policies")
        // The mutator must keep some inputs valid, or it only ever tests the syntax-error path.
        #expect(loaded > 100, "only \(loaded) mutated inputs were valid policies")
    }

    @Test func randomBytesNeverCrash() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<Self.randomRuns {
            let n = Int.random(in: 0...512, using: &rng)
            let printable = Bool.random(using: &rng)
            let input = (0..<n).map { _ in printable ? UInt8.random(in: 0x09...0x7e, using: &rng) : UInt8.random(in: 0...255, using: &rng) }
            Self.checkOne(input)
        }
    }

    @Test func pathologicalShapes() {
        Self.checkOne(Array((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8))
        Self.checkOne(Array((String(repeating: "- ", count: 10_000) + "x").utf8))
        Self.checkOne(Array(String(repeating: "a: ", count: 20_000).utf8))
        Self.checkOne(Array(("version: 1\nrules:\n" + String(repeating: "  - name: x\n    decide: deny\n", count: 3)).utf8))
        Self.checkOne([UInt8](repeating: 0, count: 4096))
        Self.checkOne(Array("version: 1\nrules: []\n".utf8))
        Self.checkOne(Array(("version: 1\nrules:\n  - name: g\n    match: {tenant: \"" + String(repeating: "*a", count: 500) + "\"}\n    decide: deny\n  - name: d\n    decide: deny\n").utf8))
        let tooBig = [UInt8](repeating: 0x20, count: YAMLReader.maxBytes + 1)
        #expect(Policy.check(tooBig, source: "fuzz.yaml").1.first?.message.contains("at most") == true)
    }
}
