import Testing
import Foundation
@_spi(Bench) @testable import Policy

/// The YAML fast path against libyaml, the reference parser: on every input the fast path either declines
/// (nil: libyaml parses it) or builds the identical document, node for node and byte for byte. And it does not
/// decline the files it exists for (the shipped policies, a generated 1,000-rule policy), so the speed cannot
/// silently disappear.
@Suite struct FastYAMLTests {
    enum Outcome { case declined, identical, different(String) }

    static func compare(_ bytes: [UInt8]) -> Outcome {
        guard let fast = bytes.withUnsafeBufferPointer({ FastYAML.parse($0, file: "f.yaml") }) else { return .declined }
        let reference: YAMLDocument
        do { reference = try YAMLReader.parse(bytes, file: "f.yaml", forceLibyaml: true) } catch {
            return .different("the fast path accepted what libyaml rejects: \(error)")
        }
        if fast.nodes.count != reference.nodes.count {
            return .different("\(fast.nodes.count) nodes, libyaml \(reference.nodes.count)\(firstDifference(fast, reference))")
        }
        if let d = firstDifference(fast, reference, always: false) { return .different(d) }
        if fast.text.count != reference.text.count || !fast.text.elementsEqual(reference.text) {
            return .different("scalar text buffers differ (\(fast.text.count) vs \(reference.text.count) bytes)")
        }
        return .identical
    }

    static func describe(_ n: YAMLDocument.Node, _ doc: YAMLDocument) -> String {
        var s = "\(n.kind) plain=\(n.plain) at \(n.line):\(n.column) start=\(n.start) count=\(n.count) end=\(n.end)"
        if n.kind == .scalar {
            s += " '\(String(decoding: doc.text[Int(n.start)..<Int(n.start + n.count)], as: UTF8.self))'"
        }
        return s
    }

    static func firstDifference(_ a: YAMLDocument, _ b: YAMLDocument) -> String {
        firstDifference(a, b, always: true) ?? ""
    }

    static func firstDifference(_ a: YAMLDocument, _ b: YAMLDocument, always: Bool) -> String? {
        for k in 0..<min(a.nodes.count, b.nodes.count) {
            let x = a.nodes[k], y = b.nodes[k]
            let same = x.kind == y.kind && x.plain == y.plain && x.line == y.line && x.column == y.column && x.count == y.count
                && x.end == y.end && (x.kind != .scalar || x.start == y.start)
                && (x.kind != .scalar || a.text[Int(x.start)..<Int(x.start + x.count)].elementsEqual(b.text[Int(y.start)..<Int(y.start + y.count)]))
            if !same { return "; node \(k): fast \(describe(x, a)), libyaml \(describe(y, b))" }
        }
        return always ? "" : nil
    }

    /// Compares every input; records each difference with its input. Returns how many took the fast path.
    static func check(_ inputs: [[UInt8]], _ label: String) -> Int {
        var taken = 0, failures = 0
        for bytes in inputs {
            switch compare(bytes) {
            case .declined: break
            case .identical: taken += 1
            case .different(let why):
                failures += 1
                if failures <= 5 {
                    Issue.record("\(label): fast path and libyaml differ: \(why)\n--- input ---\n\(String(decoding: bytes, as: UTF8.self))")
                }
            }
        }
        if failures > 5 { Issue.record("\(label): \(failures) inputs differ in all") }
        print("fast path vs libyaml, \(label): \(inputs.count) inputs, \(taken) took the fast path (identical), \(failures) differed")
        return taken
    }

    // MARK: inputs

    static func shippedPolicies() throws -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = [("built-in", Array(Policy.builtInText.utf8))]
        let dir = "\(repoRoot)/policies"
        for name in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() where name.hasSuffix(".yaml") {
            out.append((name, Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)")))))
        }
        return out
    }

    /// The YAML written inline in the test sources (multi-line string literals), as further fixtures.
    static func inlineFixtures() throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        for dir in ["Tests/PolicyTests", "Tests/CLITests"] {
            let path = "\(repoRoot)/\(dir)"
            guard let files = try? FileManager.default.contentsOfDirectory(atPath: path) else { continue }
            for file in files.sorted() where file.hasSuffix(".swift") {
                let lines = try String(contentsOfFile: "\(path)/\(file)", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
                var k = 0
                while k < lines.count {
                    guard lines[k].hasSuffix("\"\"\"") && lines[k].trimmingCharacters(in: .whitespaces) != "\"\"\"" else { k += 1; continue }
                    var body: [Substring] = []
                    k += 1
                    while k < lines.count && lines[k].trimmingCharacters(in: .whitespaces) != "\"\"\"" && !lines[k].trimmingCharacters(in: .whitespaces).hasPrefix("\"\"\"") {
                        body.append(lines[k]); k += 1
                    }
                    guard k < lines.count else { break }
                    let indent = lines[k].prefix { $0 == " " }.count
                    out.append(Array((body.map { String($0.dropFirst(min(indent, $0.prefix { $0 == " " }.count))) }.joined(separator: "\n") + "\n").utf8))
                    k += 1
                }
            }
        }
        return out
    }

    /// The benchmark's policy (bench/policy-bench): rules × (flow mappings, flow sequences, quoted globs).
    static func generatedPolicy(rules: Int) -> [UInt8] {
        var out = "version: 1\ndescription: generated benchmark policy with \(rules) rules\ndefaults:\n  microvm: {vcpus: 1, memory: 256Mi}\nrules:\n"
        for i in 0..<rules {
            let n = String(repeating: "0", count: max(0, 4 - String(i).count)) + String(i)
            let verdict = ["microvm", "namespace", "deny"][i % 3]
            out += "  - name: rule-\(n)\n    description: generated rule \(n)\n    match:\n      tenant: [\"tenant-\(n)\", \"tenant-\(n)-*\"]\n"
            out += "      image: \"registry.example.com/team-\(n)/**\"\n      privileged: false\n      annotations: {tier: \"gold-*\"}\n    decide: \(verdict)\n"
            if verdict == "microvm" { out += "    microvm: {vcpus: 2, memory: 512Mi}\n" }
            if verdict == "deny" { out += "    reason: rule \(n) says no\n" }
        }
        out += "  - name: default\n    decide: microvm\n"
        return Array(out.utf8)
    }

    /// Random block-style documents over the corners of YAML's plain-scalar and quoting rules.
    struct Generator {
        var rng: SplitMix64

        static let plains = ["a", "key", "name", "x-y", "a b", "a  b", "a:b", "a#b", "http://x/y:1", "-1", "-x", "--", "~", "null",
                             "true", "0x1F", "1e3", "é", "日本", "a,b", "a[b]", "{x}", "a'b", "a\"b", "a: b", "a #c", "a:", "?x",
                             ":x", "@x", "`x", "%x", "&x", "*x", "!x", "|", ">", "---", "...", "- x", "-", "x ", "a\tb", "a\\b"]
        /// Plain scalars the fast path takes (most of the time), so that most documents exercise it.
        static let usual = ["a", "key", "x-y", "a b", "a  b", "a:b", "a#b", "http://x/y:1", "-1", "~", "true", "é", "日本", "a,b",
                            "a[b]", "a'b", "x ", "1.5", "registry.example.com/team/**", "gold-*"]
        static let doubles = ["", "a", "a b", "\\n", "\\t", "\\x41", "\\xe9", "\\u00e9", "\\U0001F600", "\\ud800", "\\q", "\\\\",
                              "\\\"", "a'b", "\\0", "\\N\\_\\L\\P", "\\/", "\\e\\a\\b\\v\\f\\r\\ ", "\\x4", "a  ", "#x", "x: y"]
        static let singles = ["", "a", "it''s", "a\"b", "a  ", "\\n", "x: y", "#", "''", "a'"]

        mutating func pick<T>(_ a: [T]) -> T { a.randomElement(using: &rng)! }
        mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &rng) < percent }

        mutating func scalar(flow: Bool) -> String {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0, 1: return "\"\(pick(Self.doubles))\""
            case 2: return "'\(pick(Self.singles))'"
            default:
                let s = chance(75) ? pick(Self.usual) : pick(Self.plains)
                return flow && chance(50) ? s.replacingOccurrences(of: " ", with: "") : s
            }
        }

        mutating func flow(depth: Int) -> String {
            let mapping = chance(40)
            var items: [String] = []
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                let v = depth < 2 && chance(15) ? flow(depth: depth + 1) : scalar(flow: true)
                items.append(mapping ? "\(scalar(flow: true)): \(v)" : v)
            }
            let sep = chance(15) ? ",\n      " : pick([", ", ",", " , "])
            return (mapping ? "{" : "[") + pick(["", " "]) + items.joined(separator: sep) + (chance(5) ? "," : "") + (mapping ? "}" : "]")
        }

        mutating func comment() -> String { chance(15) ? pick([" # note", " #", "  # a: b", "#x"]) : "" }

        mutating func blankOrComment(_ indent: Int) -> String {
            chance(10) ? pick(["\n", "# c\n", String(repeating: " ", count: indent) + "# c\n", "   \n"]) : ""
        }

        /// A value after `key:` or `- ` (same line) or a nested collection on the next lines.
        mutating func value(_ indent: Int, depth: Int, afterDash: Bool) -> String {
            let r = Int.random(in: 0..<10, using: &rng)
            if depth < 4 && r < 3 {
                let child = indent + pick([2, 2, 4, 1])
                if afterDash && chance(40) {
                    // compact: `- key: v` / `- - x` on the dash's line
                    let body = chance(70) ? mapping(indent + 2, depth: depth + 1) : sequence(indent + 2, depth: depth + 1)
                    return " " + String(body.drop { $0 == " " })
                }
                return comment() + "\n" + (chance(50) ? mapping(child, depth: depth + 1) : sequence(child, depth: depth + 1))
            }
            if !afterDash && depth < 4 && r == 3 && chance(50) {
                return comment() + "\n" + sequence(indent, depth: depth + 1)   // at the key's indentation
            }
            if r == 4 { return comment() + "\n" }   // empty value
            if r == 5 { return " " + flow(depth: 0) + comment() + "\n" }
            if r == 6 && chance(20) { return "\n" + String(repeating: " ", count: indent + 2) + scalar(flow: false) + "\n" }   // continuation
            return " " + scalar(flow: false) + pick(["", "", " ", "  "]) + comment() + "\n"
        }

        mutating func mapping(_ indent: Int, depth: Int) -> String {
            var out = ""
            let pad = String(repeating: " ", count: indent)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                out += blankOrComment(indent)
                let key = chance(85) ? pick(["name", "match", "decide", "tenant", "a", "b", "x-y", "a:b", "é", "-k"]) : scalar(flow: false)
                out += pad + (chance(3) ? " " : "") + key + pick([":", ":", ":", " :"]) + value(indent, depth: depth, afterDash: false)
            }
            return out
        }

        mutating func sequence(_ indent: Int, depth: Int) -> String {
            var out = ""
            let pad = String(repeating: " ", count: indent)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                out += blankOrComment(indent)
                out += pad + pick(["-", "-", "-", "- "]) + value(indent, depth: depth, afterDash: true)
            }
            return out
        }

        mutating func document() -> String {
            var out = chance(10) ? pick(["---\n", "--- # x\n", "# head\n---\n"]) : ""
            out += chance(80) ? mapping(chance(5) ? 2 : 0, depth: 0) : sequence(0, depth: 0)
            if chance(3) { out += pick(["...\n", "---\nx: 1\n", "x", "  y: 2\n"]) }
            return out
        }
    }

    // MARK: tests

    @Test func shippedPoliciesTakeTheFastPathAndMatch() throws {
        var inputs: [[UInt8]] = []
        for (name, bytes) in try Self.shippedPolicies() {
            let outcome = Self.compare(bytes)
            if case .declined = outcome { Issue.record("the fast path declines \(name): it must take the shipped policies") }
            inputs.append(bytes)
        }
        let generated = Self.generatedPolicy(rules: 1000)
        if case .declined = Self.compare(generated) { Issue.record("the fast path declines the generated 1,000-rule policy") }
        inputs.append(generated)
        #expect(Self.check(inputs, "shipped and generated policies") == inputs.count)
    }

    @Test func fixturesMatch() throws {
        var inputs = try FuzzTests.seeds()
        inputs += try Self.inlineFixtures()
        let taken = Self.check(inputs, "fixtures (corpus, policies, YAML in the test sources)")
        #expect(taken > 20, "only \(taken) fixtures took the fast path")
    }

    @Test func mutatedPoliciesMatch() throws {
        let seeds = try FuzzTests.seeds()
        var rng = SplitMix64(seed: 0xFA57_0001)
        let inputs = (0..<20_000).map { _ in FuzzTests.mutate(seeds.randomElement(using: &rng)!, seeds, &rng) }
        let taken = Self.check(inputs, "mutated policies")
        #expect(taken > 1_000, "only \(taken) mutated policies took the fast path")
    }

    @Test func generatedDocumentsMatch() {
        var generator = Generator(rng: SplitMix64(seed: 0xFA57_0002))
        let documents = (0..<10_000).map { _ in Array(generator.document().utf8) }
        let taken = Self.check(documents, "generated block-YAML documents")
        #expect(taken > 1_000, "only \(taken) generated documents took the fast path")

        var rng = SplitMix64(seed: 0xFA57_0003)
        let mutated = (0..<20_000).map { _ in FuzzTests.mutate(documents.randomElement(using: &rng)!, documents, &rng) }
        let mutatedTaken = Self.check(mutated, "mutated generated documents")
        #expect(mutatedTaken > 1_000, "only \(mutatedTaken) mutated documents took the fast path")
    }

    @Test func loaderResultsAreTheSameEitherWay() throws {
        // Through the whole loader too: same policy, same diagnostics, whichever parser read the file.
        for (name, bytes) in try Self.shippedPolicies() where !name.contains(".cases.") {
            let a = Policy.check(bytes, source: name, forceLibyaml: false), b = Policy.check(bytes, source: name, forceLibyaml: true)
            #expect(a.1 == b.1, "\(name)")
            #expect(a.0?.rules.map(\.name) == b.0?.rules.map(\.name), "\(name)")
        }
    }
}
