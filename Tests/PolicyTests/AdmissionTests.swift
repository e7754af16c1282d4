import Testing
import LinuxOS
import Foundation

/// The policy inside `create`/`run` (through the built binary): decided before anything is built, recorded in
/// the state (`bulkhead.tier`, the TIER column of `list`), audited; deny, refused and microvm are errors that
/// leave nothing behind.
@Suite(.serialized, .enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/bin/busybox"),
                             "needs root (containers, root-owned policy files) and busybox-static (/bin/busybox)"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct AdmissionTests {
    let dir: String
    let root: String
    let audit: String

    init() throws {
        dir = try trustedScratch("admission")
        root = dir + "/state"
        audit = dir + "/audit.jsonl"
    }

    func bh(_ args: [String], environment extra: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
        guard let binary = PolicyCLITests.binary else {
            Issue.record("no built bulkhead binary under .build/")
            return (-1, "", "")
        }
        // Output through files, not pipes: a created container's init keeps the inherited descriptors open.
        let outPath = "\(dir)/out-\(UInt32.random(in: 0...UInt32.max))", errPath = outPath + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outPath); try? FileManager.default.removeItem(atPath: errPath) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["--root", root] + args
        if !extra.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 } }
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try p.run()
        p.waitUntilExit()
        let o = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "", e = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (p.terminationStatus, o, e)
    }

    /// A busybox bundle owned by root; `edit` changes the spec (as JSON).
    func bundle(_ name: String, args: [String] = ["/bin/busybox", "true"], edit: (inout [String: Any]) -> Void = { _ in }) throws -> String {
        let b = dir + "/" + name
        try FileManager.default.createDirectory(atPath: b + "/rootfs/bin", withIntermediateDirectories: true)
        for d in ["proc", "dev", "sys", "tmp"] { try FileManager.default.createDirectory(atPath: b + "/rootfs/" + d, withIntermediateDirectories: true) }
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: b + "/rootfs/bin/busybox")
        let made = try bh(["spec", "--bundle", b])
        #expect(made.status == 0, "\(made.err)")
        let data = try Data(contentsOf: URL(fileURLWithPath: b + "/config.json"))
        var spec = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        var process = spec["process"] as! [String: Any]
        process["args"] = args
        process["terminal"] = false
        spec["process"] = process
        edit(&spec)
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: b + "/config.json"))
        return b
    }

    func auditRecords() throws -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: audit, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// An example policy copied into the root-owned scratch directory (the checkout itself may sit under a
    /// world-writable directory, which the trust check rightly refuses).
    func policy(_ name: String) throws -> String {
        let copy = "\(dir)/\(name).yaml"
        if !FileManager.default.fileExists(atPath: copy) {
            try FileManager.default.copyItem(atPath: "\(repoRoot)/policies/\(name).yaml", toPath: copy)
        }
        chmod(copy, 0o644)
        return copy
    }

    @Test func namespaceDecisionRunsAndIsRecorded() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let b = try bundle("ok", args: ["/bin/busybox", "true"])
        let id = "adm-ns-\(getpid())"
        // The built-in policy: root's bundle, no tenant → namespace. (`run --keep`, not `create`: a created
        // container's waiting init would outlive this test's child-process handling.)
        let created = try bh(["run", "--keep", "--bundle", b, "--audit-log", audit, id])
        #expect(created.status == 0, "\(created.err)")
        defer { _ = try? bh(["delete", "--force", id]) }
        let state = try bh(["state", id])
        let json = try JSONSerialization.jsonObject(with: Data(state.out.utf8)) as? [String: Any]
        let annotations = json?["annotations"] as? [String: String]
        #expect(annotations?["bulkhead.tier"] == "namespace")
        #expect(annotations?["bulkhead.policy.rule"] == "root-images-as-containers")
        let list = try bh(["list"])
        let lines = list.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.contains("TIER") == true)
        #expect(lines.contains { $0.hasPrefix(id) && $0.contains("namespace") }, "\(list.out)")
        let records = try auditRecords()
        #expect(records.count == 1)
        #expect(records.first?["container_id"] as? String == id && records.first?["granted"] as? String == "namespace")
        #expect((records.first?["policy"] as? String) == "built-in")
    }

    /// A microvm decision goes to the microVM backend and never falls back to namespaces: on a host where that
    /// tier lacks a part (here: no guest kernel, forced through BULKHEAD_KERNEL_CACHE), create fails naming it and
    /// leaves nothing. (The tier itself runs end to end in MicroVMTierTests.)
    @Test func microvmDecisionGoesToTheMicroVMTierNeverToNamespaces() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let b = try bundle("vm")
        let id = "adm-vm-\(getpid())"
        let noKernel = ["BULKHEAD_KERNEL_CACHE": dir + "/no-kernels", "BULKHEAD_KERNEL_DIR": ""]
        let r = try bh(["run", "--bundle", b, "--tenant", "acme", "--audit-log", audit, id], environment: noKernel)
        #expect(r.status == 1)
        #expect(r.err.contains("no guest kernel in \(dir)/no-kernels"), "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: root + "/" + id))
        #expect(try auditRecords().first?["granted"] as? String == "microvm")
        // Asking for a microVM explicitly goes the same way.
        let asked = try bh(["run", "--bundle", b, "--isolation", "microvm", "--audit-log", audit, id], environment: noKernel)
        #expect(asked.status == 1 && asked.err.contains("no guest kernel"), "\(asked.err)")
        #expect(!FileManager.default.fileExists(atPath: root + "/" + id))
    }

    @Test func denyAndRefusedNameTheRule() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let privileged = try bundle("priv") { spec in
            var process = spec["process"] as! [String: Any]
            process["capabilities"] = ["bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"], "permitted": ["CAP_SYS_ADMIN"]]
            spec["process"] = process
            var annotations = spec["annotations"] as? [String: String] ?? [:]
            annotations["io.kubernetes.pod.namespace"] = "shop"
            spec["annotations"] = annotations
        }
        let denied = try bh(["run", "--bundle", privileged, "--audit-log", audit, "adm-deny-\(getpid())"])
        #expect(denied.status == 1)
        #expect(denied.err.contains("denied by built-in rule 'tenant-privileged'"), "\(denied.err)")

        let plain = try bundle("plain")
        let saas = try policy("saas-multitenant")
        let refused = try bh(["run", "--bundle", plain, "--policy", saas, "--tenant", "cust-1",
                              "--isolation", "namespace", "--audit-log", audit, "adm-refused-\(getpid())"])
        #expect(refused.status == 1)
        #expect(refused.err.contains("isolation namespace refused by \(saas) rule 'customers-in-microvms'"), "\(refused.err)")
        #expect(try auditRecords().map { $0["outcome"] as? String } == ["deny", "refused"])
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).isEmpty)
    }

    @Test func aBrokenPolicyStopsEverything() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let b = try bundle("b")
        let bad = dir + "/bad.yaml"
        try "version: 1\nrules:\n  - name: x\n    decide: namespace\n    match: {tenant: a}\n".write(toFile: bad, atomically: false, encoding: .utf8)
        let r = try bh(["run", "--bundle", b, "--policy", bad, "--audit-log", audit, "adm-bad-\(getpid())"])
        #expect(r.status == 1)
        #expect(r.err.contains("no container starts until it is fixed"), "\(r.err)")
        #expect(r.err.contains("\(bad):3:5: error: the policy has no final default"))
        #expect(try auditRecords().isEmpty)
    }

    @Test func namespaceSettingsNarrowTheSpec() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = dir + "/strict.yaml"
        try """
            version: 1
            rules:
              - name: strict
                decide: namespace
                namespace: {readonly_rootfs: true}
            """.write(toFile: p, atomically: false, encoding: .utf8)
        let b = try bundle("ro", args: ["/bin/busybox", "sh", "-c", "touch /x && echo writable || echo readonly"])
        let r = try bh(["run", "--bundle", b, "--policy", p, "--audit-log", audit, "adm-ro-\(getpid())"])
        #expect(r.out.contains("readonly"), "\(r.out) \(r.err)")
    }
}
