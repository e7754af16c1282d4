// Times Yams.compose (YAML text → node tree with positions, what a strict loader needs) and Yams.load
// (→ Swift values) on a file; prints the median of 30 runs in thread CPU time.
import Foundation
import Yams

func cpuNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

let text = try String(contentsOfFile: CommandLine.arguments[1], encoding: .utf8)
func time(_ body: () throws -> Void) rethrows -> Double {
    var runs: [Double] = []
    for _ in 0..<30 {
        let t0 = cpuNow()
        try body()
        runs.append(Double(cpuNow() - t0) / 1e6)
    }
    return runs.sorted()[15]
}
let compose = try time { _ = try Yams.compose(yaml: text) }
let load = try time { _ = try Yams.load(yaml: text) }
print(String(format: "Yams 5.0.1 compose (node tree): median %.3f ms CPU; load (values): median %.3f ms CPU", compose, load))
