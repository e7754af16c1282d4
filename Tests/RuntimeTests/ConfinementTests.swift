import Foundation
import LinuxOS
import OCIRuntime
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Capabilities, no_new_privs and seccomp as real containers see them (/proc/self/status, syscalls refused with
/// the spec's errno), bad input refused at create, and the same bundles under Debian's runc.
@Suite(.serialized, .enabled(if: TestEnv.canRunContainers, "needs root and busybox-static"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct ConfinementTests {
    /// Capability numbers from linux/capability.h (written out here, so the test does not trust the code under test).
    static let number: [String: Int] = [
        "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_NET_BIND_SERVICE": 10,
        "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_SYS_ADMIN": 21, "CAP_AUDIT_WRITE": 29,
    ]

    /// The /proc/PID/status form of a set: 16 hex digits.
    static func mask(_ names: [String]?) -> String {
        let bits = (names ?? []).reduce(UInt64(0)) { $0 | (1 << UInt64(number[$1]!)) }
        let hex = String(bits, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static let statusProbe = "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status"

    /// `key: value` lines of /proc/self/status.
    static func fields(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { out[parts[0]] = parts[1] }
        }
        return out
    }

    func run(_ dir: String, _ bundle: String, _ id: String) throws -> TestEnv.Result {
        try TestEnv.run([TestEnv.bulkhead, "--root", dir + "/state", "run", "--bundle", bundle, id])
    }

    // MARK: capabilities

    struct CapCase: Sendable {
        var name: String
        var user: Spec.User
        var caps: Spec.Capabilities?
    }

    static let capCases: [CapCase] = [
        CapCase(name: "root-three", user: .init(), caps: .init(bounding: ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                                             effective: ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                                                             permitted: ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"])),
        CapCase(name: "root-all-five", user: .init(), caps: .init(bounding: ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"],
                                                                effective: ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"],
                                                                inheritable: ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"],
                                                                permitted: ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"],
                                                                ambient: ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"])),
        // A non-root user keeps, across exec, exactly the ambient set (so effective = permitted = ambient here).
        CapCase(name: "user-ambient", user: .init(uid: 1000, gid: 1000),
                caps: .init(bounding: ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
                            effective: ["CAP_KILL", "CAP_NET_BIND_SERVICE"], inheritable: ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                            permitted: ["CAP_KILL", "CAP_NET_BIND_SERVICE"], ambient: ["CAP_KILL", "CAP_NET_BIND_SERVICE"])),
        CapCase(name: "no-section", user: .init(), caps: nil),
        CapCase(name: "user-no-section", user: .init(uid: 1000, gid: 1000), caps: nil),
    ]

    @Test(arguments: capCases.map(\.name))
    func procSelfStatusShowsExactlyTheSpecsSets(_ name: String) throws {
        let c = Self.capCases.first { $0.name == name }!
        let dir = try TestEnv.scratch("caps-\(name)")
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", Self.statusProbe]) {
            $0.process?.user = c.user
            $0.process?.capabilities = c.caps
        }
        let r = try run(dir, bundle, TestEnv.uniqueID("caps"))
        #expect(r.code == 0, "\(r.stderr)")
        let f = Self.fields(r.stdout)
        #expect(f["CapBnd"] == Self.mask(c.caps?.bounding), "\(r.stdout)")
        #expect(f["CapEff"] == Self.mask(c.caps?.effective), "\(r.stdout)")
        #expect(f["CapPrm"] == Self.mask(c.caps?.permitted), "\(r.stdout)")
        #expect(f["CapInh"] == Self.mask(c.caps?.inheritable), "\(r.stdout)")
        #expect(f["CapAmb"] == Self.mask(c.caps?.ambient), "\(r.stdout)")
    }

    @Test func execTakesItsCapabilitiesFromTheProcessJSONAndTheContainersSeccompFilter() throws {
        let dir = try TestEnv.scratch("caps-exec")
        defer { TestEnv.remove(dir) }
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sleep", "30"]) {
            $0.process?.capabilities = .init(bounding: ["CAP_KILL"], effective: ["CAP_KILL"], permitted: ["CAP_KILL"])
            $0.process?.noNewPrivileges = true
        }
        let id = TestEnv.uniqueID("capexec")
        let base = [TestEnv.bulkhead, "--root", dir + "/state"]
        defer { _ = try? TestEnv.run(base + ["delete", "--force", id]) }
        #expect(try TestEnv.run(base + ["create", "--bundle", bundle, id]).code == 0)
        #expect(try TestEnv.run(base + ["start", id]).code == 0)
        let caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
        let process = Spec.Process(user: .init(uid: 1000, gid: 1000), args: ["sh", "-c", Self.statusProbe], env: ["PATH=/bin"],
                                   capabilities: .init(bounding: caps + ["CAP_NET_RAW"], effective: caps, inheritable: caps,
                                                       permitted: caps, ambient: caps))
        let path = dir + "/process.json"
        try JSONEncoder().encode(process).write(to: URL(fileURLWithPath: path))
        let r = try TestEnv.run(base + ["exec", "--process", path, id])
        #expect(r.code == 0, "\(r.stderr)")
        let f = Self.fields(r.stdout)
        #expect(f["CapBnd"] == Self.mask(caps + ["CAP_NET_RAW"]), "\(r.stdout)")
        #expect(f["CapEff"] == Self.mask(caps) && f["CapPrm"] == Self.mask(caps) && f["CapAmb"] == Self.mask(caps), "\(r.stdout)")
        #expect(f["NoNewPrivs"] == "0", "the process.json does not ask for no_new_privs: \(r.stdout)")
        #expect(f["Seccomp"] == "2", "the container's seccomp filter applies to exec'd processes too: \(r.stdout)")

        // exec with a command: the container's own sets and no_new_privs; --cap adds one.
        let plain = try TestEnv.run(base + ["exec", "--cap", "CAP_CHOWN", id, "sh", "-c", Self.statusProbe])
        let g = Self.fields(plain.stdout)
        #expect(g["CapEff"] == Self.mask(["CAP_KILL", "CAP_CHOWN"]) && g["NoNewPrivs"] == "1", "\(plain.stdout) \(plain.stderr)")

        // An unknown capability in the process.json: exec fails naming the field.
        var bad = process
        bad.capabilities?.permitted = ["CAP_KILL", "CAP_TELEPORT"]
        try JSONEncoder().encode(bad).write(to: URL(fileURLWithPath: path))
        let refused = try TestEnv.run(base + ["exec", "--process", path, id])
        #expect(refused.code == 1 && refused.stderr.contains("process.capabilities.permitted[1]")
                && refused.stderr.contains("CAP_TELEPORT"), "\(refused.stderr)")
    }

    // MARK: seccomp

    /// A static probe that makes the syscalls named on its command line and prints `name=ok` or `name=errno N`.
    static let probeSource = #"""
        #define _GNU_SOURCE
        #include <errno.h>
        #include <sched.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/syscall.h>
        #include <unistd.h>
        int main(int argc, char **argv) {
            for (int i = 1; i < argc; i++) {
                const char *w = argv[i];
                long r;
                errno = 0;
                if (!strcmp(w, "keyctl")) r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
                else if (!strcmp(w, "add_key")) r = syscall(SYS_add_key, "user", "bulkhead-probe", "x", 1, -3);
                else if (!strcmp(w, "unshare")) r = syscall(SYS_unshare, CLONE_NEWNS);
                else if (!strcmp(w, "mount")) r = syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0);
                else if (!strncmp(w, "personality=", 12)) r = syscall(SYS_personality, strtoul(w + 12, 0, 0));
                else { fprintf(stderr, "unknown probe %s\n", w); return 2; }
                if (r < 0) printf("%s=errno %d\n", w, errno); else printf("%s=ok\n", w);
                fflush(stdout);
            }
            return 0;
        }
        """#

    static let cc = TestEnv.which("cc")

    /// A busybox bundle with /bin/probe (compiled static from `probeSource`).
    func probeBundle(_ dir: String, args: [String], edit: (inout Spec) -> Void) throws -> String {
        let bundle = try TestEnv.busyboxBundle(at: dir, args: args, edit: edit)
        try Self.probeSource.write(toFile: dir + "/probe.c", atomically: true, encoding: .utf8)
        let built = try TestEnv.run([Self.cc!, "-static", "-O2", "-o", bundle + "/rootfs/bin/probe", dir + "/probe.c"], timeout: 120)
        #expect(built.code == 0, "cc: \(built.stderr)")
        return bundle
    }

    static let adminCaps = ["CAP_SYS_ADMIN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"]

    static var defaultProfile: Spec.Seccomp {
        get throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: TestEnv.packageRoot + "/policies/seccomp/default.json"))
            return try JSONDecoder().decode(Spec.Seccomp.self, from: data)
        }
    }

    @Test(.enabled(if: cc != nil, "needs a C compiler (cc) for the static syscall probe"))
    func theDefaultProfileRefusesKeyringsNamespacesAndMountsWithEPERM() throws {
        let dir = try TestEnv.scratch("seccomp-default")
        defer { TestEnv.remove(dir) }
        let probes = ["keyctl", "add_key", "unshare", "mount"]
        // CAP_SYS_ADMIN held, so that only the filter can be what refuses (the profile as shipped, not widened).
        let profile = try Self.defaultProfile
        let bundle = try probeBundle(dir, args: ["probe"] + probes) {
            $0.process?.capabilities = .init(bounding: Self.adminCaps, effective: Self.adminCaps, permitted: Self.adminCaps)
            $0.process?.noNewPrivileges = true
            $0.linux?.seccomp = profile
        }
        let r = try run(dir, bundle, TestEnv.uniqueID("scdef"))
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout == probes.map { "\($0)=errno \(EPERM)\n" }.joined(), "\(r.stdout)")

        // The same container unconfined: the calls go through (so the refusals above are the filter's).
        let open = try probeBundle(dir + "/open", args: ["probe"] + probes) {
            $0.process?.capabilities = .init(bounding: Self.adminCaps, effective: Self.adminCaps, permitted: Self.adminCaps)
            $0.annotations = ["bulkhead.seccomp": "unconfined"]
        }
        let u = try run(dir, open, TestEnv.uniqueID("scopen"))
        #expect(u.code == 0, "\(u.stderr)")
        #expect(u.stdout == probes.map { "\($0)=ok\n" }.joined(), "\(u.stdout)")
    }

    @Test(.enabled(if: cc != nil, "needs a C compiler (cc) for the static syscall probe"))
    func anErrnoRuleWithArgumentConditionsAndKillProcess() throws {
        let dir = try TestEnv.scratch("seccomp-rules")
        defer { TestEnv.remove(dir) }
        let profile = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", flags: ["SECCOMP_FILTER_FLAG_LOG"], syscalls: [
            .init(names: ["personality"], action: "SCMP_ACT_ERRNO", errnoRet: 42, args: [.init(index: 0, value: 0x1234, op: "SCMP_CMP_EQ")]),
            .init(names: ["personality"], action: "SCMP_ACT_ERRNO", errnoRet: 43,
                  args: [.init(index: 0, value: 0xff00, valueTwo: 0x5500, op: "SCMP_CMP_MASKED_EQ")]),
            .init(names: ["personality"], action: "SCMP_ACT_KILL_PROCESS", args: [.init(index: 0, value: 0x4242, op: "SCMP_CMP_EQ")]),
        ])
        let bundle = try probeBundle(dir, args: ["probe", "personality=0xffffffff", "personality=0x1234", "personality=0x5501",
                                                 "personality=0x4242", "personality=0xffffffff"]) {
            $0.linux?.seccomp = profile
        }
        let r = try run(dir, bundle, TestEnv.uniqueID("scrules"))
        #expect(r.stdout == "personality=0xffffffff=ok\npersonality=0x1234=errno 42\npersonality=0x5501=errno 43\n", "\(r.stdout)")
        #expect(r.code == 128 + SIGSYS, "killed by SIGSYS: \(r.code) \(r.stderr)")
    }

    // MARK: bad input

    @Test func unknownCapabilityOrSyscallFailsCreateNamingTheFieldAndLeavesNothing() throws {
        let dir = try TestEnv.scratch("confine-bad")
        defer { TestEnv.remove(dir) }
        let base = [TestEnv.bulkhead, "--root", dir + "/state"]
        let cases: [(String, (inout Spec) -> Void, [String])] = [
            ("cap", { $0.process?.capabilities = .init(bounding: ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_WARP_DRIVE"]) },
             ["process.capabilities.bounding[3]", "CAP_WARP_DRIVE"]),
            ("syscall", { $0.linux?.seccomp = Spec.Seccomp(defaultAction: "SCMP_ACT_ALLOW", syscalls: [.init(names: ["getpid", "nosuchcall"], action: "SCMP_ACT_ERRNO")]) },
             ["linux.seccomp.syscalls[0].names[1]", "nosuchcall"]),
        ]
        for (name, edit, wanted) in cases {
            let bundle = try TestEnv.busyboxBundle(at: dir + "/" + name, args: ["true"], edit: edit)
            let id = TestEnv.uniqueID("bad-\(name)")
            let r = try TestEnv.run(base + ["create", "--bundle", bundle, id])
            #expect(r.code == 1)
            for w in wanted { #expect(r.stderr.contains(w), "\(name): \(r.stderr)") }
            #expect(try TestEnv.run(base + ["state", id]).code != 0, "\(name): the container is still there")
            #expect(!FileManager.default.fileExists(atPath: dir + "/state/" + id))
            let cg = try TestEnv.run(["/bin/sh", "-c", "find /sys/fs/cgroup -maxdepth 5 -name '*\(id)*'"])
            #expect(cg.stdout.isEmpty, "\(name): cgroup left behind: \(cg.stdout)")
        }
    }

    // MARK: side by side with runc

    struct RuncCase: Sendable {
        var name: String
        var edit: @Sendable (inout Spec) -> Void
    }

    static let runcCases: [RuncCase] = [
        // runc spec's own sets (ambient without inheritable: neither runtime can raise it).
        RuncCase(name: "runc-spec-default") { spec in
            let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            spec.process?.capabilities = .init(bounding: caps, effective: caps, permitted: caps, ambient: caps)
            spec.process?.noNewPrivileges = true
        },
        RuncCase(name: "user-ambient-no-nnp") { spec in
            let caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
            spec.process?.user = .init(uid: 1000, gid: 1000, additionalGids: [2000])
            spec.process?.capabilities = .init(bounding: caps + ["CAP_NET_RAW"], effective: caps, inheritable: caps, permitted: caps, ambient: caps)
            spec.process?.noNewPrivileges = false
        },
        RuncCase(name: "user-without-ambient") { spec in
            spec.process?.user = .init(uid: 1000, gid: 1000)
            spec.process?.capabilities = .init(bounding: ["CAP_KILL", "CAP_CHOWN"], effective: ["CAP_KILL"], permitted: ["CAP_KILL"])
            spec.process?.noNewPrivileges = true
        },
        RuncCase(name: "root-sys-admin-no-nnp") { spec in
            spec.process?.capabilities = .init(bounding: adminCaps, effective: adminCaps, inheritable: ["CAP_KILL"], permitted: adminCaps)
            spec.process?.noNewPrivileges = false
        },
    ]

    @Test(.enabled(if: TestEnv.runc != nil, "needs runc"), arguments: runcCases.map(\.name))
    func capabilityAndSeccompStateMatchRunc(_ name: String) throws {
        let c = Self.runcCases.first { $0.name == name }!
        let dir = try TestEnv.scratch("confine-runc-\(name)")
        defer { TestEnv.remove(dir) }
        let profile = try Self.defaultProfile
        let bundle = try TestEnv.busyboxBundle(at: dir, args: ["sh", "-c", Self.statusProbe]) { spec in
            spec.linux?.seccomp = profile
            c.edit(&spec)
        }
        let id = "cr-\(name)-\(getpid())"
        let ours = try run(dir, bundle, id)
        let theirs = try TestEnv.run([TestEnv.runc!, "--root", dir + "/runc", "run", "--bundle", bundle, id])
        #expect(theirs.code == 0, "runc: \(theirs.stderr)")
        #expect(ours.code == 0, "bulkhead: \(ours.stderr)")
        let a = Self.fields(ours.stdout), b = Self.fields(theirs.stdout)
        for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"] {
            #expect(a[key] != nil && a[key] == b[key], "\(key): bulkhead \(a[key] ?? "-"), runc \(b[key] ?? "-")")
        }
    }

    // MARK: the policy's seccomp setting

    @Test func thePolicysSeccompSettingTakesEffect() throws {
        let dir = try TestEnv.scratch("confine-policy")
        defer { TestEnv.remove(dir) }
        let trusted = "/run/bulkhead-confine-policy-\(getpid())"
        try FileManager.default.createDirectory(atPath: trusted, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        defer { TestEnv.remove(trusted) }
        let profile = trusted + "/no-uname.json"
        try #"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#
            .write(toFile: profile, atomically: true, encoding: .utf8)
        func policy(_ name: String, _ seccomp: String?) throws -> String {
            let path = trusted + "/\(name).yaml"
            try """
                version: 1
                rules:
                  - name: \(name)
                    decide: namespace
                \(seccomp.map { "    namespace: {seccomp: \($0)}" } ?? "")
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let probe = Self.statusProbe + "; [ \"$(uname 2>/dev/null)\" = Linux ] && echo uname=ok || echo uname=refused"
        func run(_ policyFile: String, edit: (inout Spec) -> Void = { _ in }) throws -> (TestEnv.Result, [String: String]) {
            let bundle = try TestEnv.busyboxBundle(at: dir + "/" + TestEnv.uniqueID("b"), args: ["sh", "-c", probe], edit: edit)
            try FileManager.default.createSymbolicLink(atPath: bundle + "/rootfs/bin/uname", withDestinationPath: "busybox")
            let r = try TestEnv.run([TestEnv.bulkhead, "--root", dir + "/state", "run", "--policy", policyFile, "--bundle", bundle,
                                     TestEnv.uniqueID("pol")])
            return (r, Self.fields(r.stdout))
        }
        // default: Bulkhead's profile where the spec has none…
        var (r, f) = try run(try policy("dflt", "default"))
        #expect(r.code == 0 && f["Seccomp"] == "2" && r.stdout.contains("uname=ok"), "\(r.stdout) \(r.stderr)")
        // …and the spec's own filter where it has one.
        let own = try JSONDecoder().decode(Spec.Seccomp.self, from: Data(contentsOf: URL(fileURLWithPath: profile)))
        (r, f) = try run(try policy("dflt2", nil)) { $0.linux?.seccomp = own }
        #expect(r.code == 0 && f["Seccomp"] == "2" && r.stdout.contains("uname=refused"), "\(r.stdout) \(r.stderr)")
        // unconfined: the spec as it is (none here).
        (r, f) = try run(try policy("open", "unconfined"))
        #expect(r.code == 0 && f["Seccomp"] == "0", "\(r.stdout) \(r.stderr)")
        // a path: that profile.
        (r, f) = try run(try policy("file", profile))
        #expect(r.code == 0 && f["Seccomp"] == "2" && r.stdout.contains("uname=refused"), "\(r.stdout) \(r.stderr)")
        // a path that does not exist: refused, naming the rule.
        (r, f) = try run(try policy("missing", trusted + "/nope.json"))
        #expect(r.code == 1 && r.stderr.contains("policy rule 'missing'") && r.stderr.contains("nope.json"), "\(r.stderr)")
    }

    // MARK: the image form's secure defaults and --privileged

    @Test(.enabled(if: Engines.umoci != nil, "needs umoci (scripts/make-busybox-image)"))
    func imageFormDefaultsAndPrivilegedUnderThePolicy() throws {
        let dir = try TestEnv.scratch("confine-image")
        defer { TestEnv.remove(dir) }
        let archive = dir + "/busybox.tar"
        let made = try TestEnv.run([TestEnv.packageRoot + "/scripts/make-busybox-image", archive], timeout: 120)
        #expect(made.code == 0, "\(made.stderr)")
        let base = [TestEnv.bulkhead, "--root", dir + "/state", "--data-root", dir + "/data"]
        func bh(_ args: [String]) throws -> TestEnv.Result { try TestEnv.run(base + args) }
        #expect(try bh(["image", "import", archive, "--name", "bb"]).code == 0)

        // Docker's default capabilities, no_new_privs, the default seccomp profile, a pids limit, masked /proc paths.
        let docker = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
                      "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]
        let bits = docker.reduce(UInt64(0)) { $0 | 1 << UInt64(["CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_SETPCAP": 8, "CAP_MKNOD": 27, "CAP_SETFCAP": 31][$1] ?? Self.number[$1]!) }
        let r = try bh(["run", "--rm", "bb", "sh", "-c", Self.statusProbe + "; wc -c < /proc/timer_list; unshare -m true && echo unshared"])
        let f = Self.fields(r.stdout)
        #expect(f["CapEff"] == String(format: "%016llx", bits) && f["CapBnd"] == f["CapEff"], "\(r.stdout) \(r.stderr)")
        #expect(f["NoNewPrivs"] == "1" && f["Seccomp"] == "2", "\(r.stdout)")
        #expect(r.stdout.contains("\n0\n") && !r.stdout.contains("unshared"), "/proc/timer_list masked, unshare refused: \(r.stdout)")
        let spec = try bh(["spec", "--image", "bb"])
        let decoded = try JSONDecoder().decode(Spec.self, from: Data(spec.stdout.utf8))
        #expect(decoded.linux?.resources?.pids == .object(["limit": .number(4096)]))
        #expect(decoded.linux?.seccomp?.defaultAction == "SCMP_ACT_ERRNO")
        #expect(decoded.linux?.maskedPaths?.contains("/proc/timer_list") == true)

        // --cap-drop/--cap-add and --security-opt seccomp=unconfined.
        let tuned = try bh(["run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_RAW", "--security-opt", "seccomp=unconfined",
                            "--security-opt", "no-new-privileges=false", "bb", "sh", "-c", Self.statusProbe])
        let t = Self.fields(tuned.stdout)
        #expect(t["CapEff"] == Self.mask(["CAP_NET_RAW"]) && t["Seccomp"] == "0" && t["NoNewPrivs"] == "0", "\(tuned.stdout) \(tuned.stderr)")
        let badCap = try bh(["run", "--rm", "--cap-add", "FLY", "bb", "true"])
        #expect(badCap.code == 1 && badCap.stderr.contains("--cap-add FLY"), "\(badCap.stderr)")

        // --privileged: a tenant is refused by the built-in policy, naming the rule…
        let refused = try bh(["run", "--rm", "--tenant", "acme", "--privileged", "bb", "true"])
        #expect(refused.code == 1 && refused.stderr.contains("tenant-privileged"), "\(refused.stderr)")
        // …and a policy that allows it runs it with every capability, unconfined, nothing masked. (The policy file
        // must sit in a root-owned directory nobody else can write: /run, not /tmp.)
        let trusted = "/run/bulkhead-confine-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: trusted, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        defer { TestEnv.remove(trusted) }
        let policy = trusted + "/allow.yaml"
        try """
            version: 1
            rules:
              - name: lab-allows-privileged
                match:
                  privileged: true
                decide: namespace
              - name: default
                decide: namespace
            """.write(toFile: policy, atomically: true, encoding: .utf8)
        // "Every capability" is every one this runtime holds (the test's own bounding set).
        let all = Self.fields(try String(contentsOfFile: "/proc/self/status", encoding: .utf8))["CapBnd"]!
        let allowed = try bh(["run", "--rm", "--policy", policy, "--tenant", "acme", "--privileged", "bb", "sh", "-c",
                              Self.statusProbe + "; grep -c timer_list /proc/self/mountinfo || true"])
        let p = Self.fields(allowed.stdout)
        #expect(allowed.code == 0, "\(allowed.stderr)")
        #expect(p["CapEff"] == all && p["CapBnd"] == all && p["Seccomp"] == "0" && p["NoNewPrivs"] == "0", "\(allowed.stdout)")
        #expect(allowed.stdout.hasSuffix("\n0\n"), "no masked paths: \(allowed.stdout)")
    }
}
