import Testing
import Foundation
@testable import OCIRuntime

/// config.json is read by a fast hand-written reader first and by JSONDecoder where it gives up
/// (SpecFastReader.swift). For every input, the fast reading must either give up or give exactly JSONDecoder's Spec.
@Suite struct SpecFastReaderTests {
    /// A spec with every section the types know, values of every shape.
    static let rich = #"""
        {"ociVersion":"1.2.0",
         "process":{"terminal":false,"consoleSize":{"height":24,"width":80},
                    "user":{"uid":1000,"gid":1000,"umask":18,"additionalGids":[5,6],"username":"app"},
                    "args":["/bin/sh","-c","echo \"hi\" \\ \u00e9 \ud83d\ude00 \/ \t"],"commandLine":"x",
                    "env":["PATH=/usr/bin:/bin","A=b=c"],"cwd":"/work",
                    "capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_KILL"],"inheritable":[],"permitted":["CAP_KILL"],"ambient":[]},
                    "rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024},{"type":"RLIMIT_CORE","hard":18446744073709551615,"soft":0}],
                    "noNewPrivileges":true,"apparmorProfile":"p","oomScoreAdj":-500,"selinuxLabel":"l",
                    "ioPriority":{"class":"IOPRIO_CLASS_BE","priority":4},"scheduler":{"policy":"SCHED_OTHER","nice":-2.5}},
         "root":{"path":"rootfs","readonly":true},"hostname":"h","domainname":"d",
         "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                   {"destination":"/data","type":"bind","source":"/srv","options":["rbind","ro"],
                    "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}],
         "hooks":{"prestart":[{"path":"/bin/true","args":["true"],"env":["X=1"],"timeout":5}],"poststop":[{"path":"/bin/true"}]},
         "annotations":{"a":"b","bulkhead.tier":"namespace"},
         "linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"},{"type":"mount"},{"type":"user"},{"type":"cgroup"}],
                  "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}],
                  "timeOffsets":{"monotonic":{"secs":1,"nanosecs":0}},
                  "devices":[{"type":"c","path":"/dev/fuse","major":10,"minor":229,"fileMode":438,"uid":0,"gid":0}],
                  "cgroupsPath":"/bulkhead/x",
                  "resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"minor":229,"access":"rw"}],
                               "memory":{"limit":1.048576e+08,"swappiness":-1},"cpu":{"shares":1024,"quota":10000,"period":100000,"cpus":"0-1"},
                               "pids":{"limit":20},"blockIO":{"weight":10},"hugepageLimits":[{"pageSize":"2MB","limit":0}],
                               "network":{"classID":1},"rdma":{},"unified":{"memory.high":"max"}},
                  "rootfsPropagation":"rprivate",
                  "seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64"],"flags":[],
                             "listenerPath":"/run/s.sock","listenerMetadata":"m",
                             "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                                         {"names":["personality"],"action":"SCMP_ACT_ALLOW","errnoRet":2,"args":[{"index":0,"value":8,"valueTwo":0,"op":"SCMP_CMP_EQ"}]}]},
                  "sysctl":{"net.ipv4.ip_forward":"1"},"maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"],
                  "mountLabel":"m","intelRdt":{"closID":"c"},"personality":{"domain":"LINUX"}},
         "unknownField":{"ignored":[1,2,{"x":null}]}}
        """#

    static func check(_ bytes: [UInt8], _ label: String) -> Bool {
        let fast = Spec.fastRead(bytes)
        let reference = try? JSONDecoder().decode(Spec.self, from: Data(bytes))
        if let fast {
            #expect(reference != nil, "the fast reader accepted what JSONDecoder refuses: \(label)")
            #expect(fast == reference, "the two readings differ: \(label)")
            return true
        }
        return false
    }

    @Test func theUsualSpecsTakeTheFastReadingAndAgree() throws {
        var specs: [(String, [UInt8])] = [("rich", Array(Self.rich.utf8)),
                                          ("bulkhead spec", try Spec.defaultSpec().encoded()),
                                          ("compact", try Spec.defaultSpec(terminal: false).encoded(pretty: false))]
        let runc = Process()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fastspec-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        if FileManager.default.isExecutableFile(atPath: "/usr/sbin/runc") {
            runc.executableURL = URL(fileURLWithPath: "/usr/sbin/runc")
            runc.arguments = ["spec"]
            runc.currentDirectoryURL = dir
            try runc.run()
            runc.waitUntilExit()
            specs.append(("runc spec", Array(try Data(contentsOf: dir.appendingPathComponent("config.json")))))
        }
        for (label, bytes) in specs {
            #expect(Self.check(bytes, label), "the fast reader gave up on \(label)")
        }
        // Spec.decode takes the fast reading and validates as before.
        #expect(throws: SpecError.self) { try Spec.decode(Array(#"{"ociVersion":"2.0.0"}"#.utf8)) }
    }

    /// Mutations of the rich spec: fields removed, values replaced by values of other kinds and by awkward
    /// numbers and strings, and raw byte edits.
    @Test func mutatedSpecsNeverReadDifferently() throws {
        let base = try JSONSerialization.jsonObject(with: Data(Self.rich.utf8))
        let replacements: [Any] = [NSNull(), true, false, 0, -1, 1.5, 1e3, 4294967296, 18446744073709551616.0, "", "x", "\u{0}",
                                   [Any](), [1, 2], ["a"], [String: Any](), ["type": "pid"], -0.0]
        var rng = SystemRandomNumberGenerator()
        func mutate(_ v: Any) -> Any {
            if Int.random(in: 0..<8, using: &rng) == 0 { return replacements.randomElement(using: &rng)! }
            if var d = v as? [String: Any] {
                guard let k = d.keys.randomElement(using: &rng) else { return d }
                if Int.random(in: 0..<4, using: &rng) == 0 { d[k] = nil } else { d[k] = mutate(d[k]!) }
                return d
            }
            if var a = v as? [Any], !a.isEmpty {
                let i = Int.random(in: 0..<a.count, using: &rng)
                if Int.random(in: 0..<5, using: &rng) == 0 { a.remove(at: i) } else { a[i] = mutate(a[i]) }
                return a
            }
            return replacements.randomElement(using: &rng)!
        }
        var fast = 0
        for n in 0..<3000 {
            var v = base
            for _ in 0..<Int.random(in: 1...3, using: &rng) { v = mutate(v) }
            guard JSONSerialization.isValidJSONObject(v) || !(v is [String: Any]) else { continue }
            guard let data = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed]) else { continue }
            var bytes = Array(data)
            if n % 3 == 0, !bytes.isEmpty {
                // A raw edit: a byte changed, dropped or doubled.
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[i] = [UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "1"), 0xff, 0x0a].randomElement(using: &rng)!
                case 1: bytes.remove(at: i)
                default: bytes.insert(bytes[i], at: i)
                }
            }
            if Self.check(bytes, "mutation \(n): \(String(decoding: bytes, as: UTF8.self))") { fast += 1 }
        }
        #expect(fast > 300, "the fast reader took only \(fast) of the mutations")
    }
}
