// policy-bench: load+validate and decide on a generated 1,000-rule policy. Run by bench/policy.sh (release build).
//
//   policy-bench write FILE [RULES]   write the generated policy (so other loaders can read the same bytes)
//   policy-bench run FILE             time loading+validating FILE and deciding against it; print medians
//   policy-bench run-libyaml FILE     time loading+validating FILE with the YAML fast path turned off (libyaml)
//   policy-bench path FILE            which YAML parser loads FILE: the fast path or libyaml
//   policy-bench load FILE [N]        load FILE N times (for instruction counts: callgrind on N=1 and N=3)
//   policy-bench load-libyaml FILE [N]  the same, through libyaml
//   policy-bench diagnose FILE...     print every diagnostic of each FILE (to compare loaders on the same inputs)
@_spi(Bench) import Policy
#if canImport(Glibc)
import Glibc
#endif

/// Thread CPU time: what the work costs, not counting time the (shared) machine gave to other processes.
func cpuNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func median(_ v: [Double]) -> Double { let s = v.sorted(); return s[s.count / 2] }

func generate(rules: Int) -> String {
    var out = "version: 1\ndescription: generated benchmark policy with \(rules) rules\ndefaults:\n  microvm: {vcpus: 1, memory: 256Mi}\nrules:\n"
    for i in 0..<rules {
        let n = String(repeating: "0", count: max(0, 4 - String(i).count)) + String(i)
        let verdict = ["microvm", "namespace", "deny"][i % 3]
        out += """
              - name: rule-\(n)
                description: generated rule \(n)
                match:
                  tenant: ["tenant-\(n)", "tenant-\(n)-*"]
                  image: "registry.example.com/team-\(n)/**"
                  privileged: false
                  annotations: {tier: "gold-*"}
                decide: \(verdict)

            """
        if verdict == "microvm" { out += "    microvm: {vcpus: 2, memory: 512Mi}\n" }
        if verdict == "deny" { out += "    reason: rule \(n) says no\n" }
    }
    out += "  - name: default\n    decide: microvm\n"
    return out
}

func readFile(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { fatalError("cannot open \(path)") }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        bytes += buf[0..<n]
    }
    return bytes
}

let args = CommandLine.arguments
guard args.count >= 3 else {
    print("usage: policy-bench write FILE [RULES] | policy-bench run FILE")
    exit(2)
}
switch args[1] {
case "write":
    let text = generate(rules: args.count > 3 ? Int(args[3])! : 1000)
    guard let f = fopen(args[2], "wb") else { fatalError("cannot write \(args[2])") }
    fputs(text, f)
    fclose(f)
case "path":
    print(Policy.fastPathAccepts(readFile(args[2])) ? "fast path" : "libyaml")
case "run-libyaml":
    let bytes = readFile(args[2])
    var loadsCPU: [Double] = [], loads: [Double] = []
    var policy: Policy? = nil
    for _ in 0..<30 {
        policy = nil
        let t0 = now(), c0 = cpuNow()
        policy = Policy.check(bytes, source: args[2], forceLibyaml: true).0
        loadsCPU.append(Double(cpuNow() - c0) / 1e6)
        loads.append(Double(now() - t0) / 1e6)
    }
    print("load+validate through libyaml \(policy!.rules.count) rules: median \(format3(median(loads))) ms wall, \(format3(median(loadsCPU))) ms CPU (30 runs; fastest \(format3(loadsCPU.min()!)) ms CPU)")
case "run":
    let bytes = readFile(args[2])
    // Load + validate (+ lint, including the shadowed-rule check over all rule pairs).
    var loads: [Double] = [], loadsCPU: [Double] = []
    var policy: Policy? = nil
    for _ in 0..<30 {
        policy = nil
        let t0 = now(), c0 = cpuNow()
        policy = try! Policy.parse(bytes, source: args[2])
        loadsCPU.append(Double(cpuNow() - c0) / 1e6)
        loads.append(Double(now() - t0) / 1e6)
    }
    let p = policy!
    print("load+validate \(p.rules.count) rules, \(bytes.count) bytes: median \(format3(median(loads))) ms wall, \(format3(median(loadsCPU))) ms CPU (30 runs; fastest \(format3(loadsCPU.min()!)) ms CPU)")

    let requests: [(String, DeploymentRequest)] = [
        ("first rule", DeploymentRequest(tenant: "tenant-0000", image: "registry.example.com/team-0000/api:1", annotations: ["tier": "gold-1"])),
        ("rule 500", DeploymentRequest(tenant: "tenant-0500-eu", image: "registry.example.com/team-0500/api:1", annotations: ["tier": "gold-1"])),
        ("last generated rule", DeploymentRequest(tenant: "tenant-0999", image: "registry.example.com/team-0999/x/y:2", annotations: ["tier": "gold-2"])),
        ("falls through to default", DeploymentRequest(tenant: "tenant-0999", image: "docker.io/library/busybox:1", annotations: ["tier": "gold-2"])),
    ]
    for (label, request) in requests {
        let expected = p.decide(request).rule
        var perDecision: [Double] = [], perDecisionCPU: [Double] = []
        let batch = 200
        for _ in 0..<31 {
            let t0 = now(), c0 = cpuNow()
            var sink = 0
            for _ in 0..<batch { sink &+= p.decide(request).rule.utf8.count }
            perDecisionCPU.append(Double(cpuNow() - c0) / 1e3 / Double(batch))
            perDecision.append(Double(now() - t0) / 1e3 / Double(batch))
            if sink == 0 { print("?") }
        }
        print("decide (\(label), rule \(expected)): median \(format3(median(perDecision))) µs wall, \(format3(median(perDecisionCPU))) µs CPU per decision")
        // The same through the explaining path (every rule up to the match, with words): what `policy explain` costs.
        let e0 = cpuNow()
        _ = p.decide(request, explain: true)
        print("    explain (full trace): \(format3(Double(cpuNow() - e0) / 1e3)) µs CPU")
    }
case "diagnose":   // for comparing loaders: every diagnostic of each FILE, as `policy check` prints them
    for path in args[2...] {
        let (policy, diagnostics) = Policy.check(readFile(path), source: path)
        print("== \(path): \(policy == nil ? "invalid" : "valid, \(policy!.rules.count) rules")")
        for d in diagnostics { print(d) }
    }
case "load":   // for profiling: load only
    let bytes = readFile(args[2])
    for _ in 0..<(args.count > 3 ? Int(args[3])! : 100) { _ = try! Policy.parse(bytes, source: args[2]) }
case "load-libyaml":
    let bytes = readFile(args[2])
    for _ in 0..<(args.count > 3 ? Int(args[3])! : 100) { precondition(Policy.check(bytes, source: args[2], forceLibyaml: true).0 != nil) }
default:
    print("unknown mode \(args[1])")
    exit(2)
}

func format3(_ v: Double) -> String {
    let scaled = Int((v * 1000).rounded())
    let frac = String(scaled % 1000)
    return "\(scaled / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
}
