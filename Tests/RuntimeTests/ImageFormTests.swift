import Foundation
import Testing
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead run IMAGE` on the image store, and the rule that keeps it apart from `run --bundle … ID`.
@Suite(.serialized, .enabled(if: TestEnv.canRunContainers && Engines.umoci != nil, "needs root, busybox-static and umoci"),
       .enabled(if: Mount.isMountPoint("/"), "/ is not a mount point here (a chroot onto a plain directory): pivot_root and mount propagation need one (runc fails the same way)"))
struct ImageFormTests {
    @Test func imageFormRunsResolvesUsersCleansUpAndRefusesAmbiguity() throws {
        let dir = try TestEnv.scratch("imageform")
        defer { TestEnv.remove(dir) }
        let archive = dir + "/busybox.tar"
        let made = try TestEnv.run([TestEnv.packageRoot + "/scripts/make-busybox-image", archive], timeout: 120)
        #expect(made.code == 0, "\(made.stderr)")
        let base = [TestEnv.bulkhead, "--root", dir + "/state", "--data-root", dir + "/data"]
        func bh(_ args: [String]) throws -> TestEnv.Result { try TestEnv.run(base + args) }
        #expect(try bh(["image", "import", archive, "--name", "bb"]).code == 0)

        let r = try bh(["run", "--rm", "--user", "nobody", "-e", "X=1", "--workdir", "/tmp", "--hostname", "img",
                        "bb", "sh", "-c", "id -u; echo $X; pwd; hostname; exit 9"])
        #expect(r.code == 9, "\(r.stderr)")
        #expect(r.stdout == "65534\n1\n/tmp\nimg\n", "\(r.stdout)")
        // --rm: nothing left of the container, its rootfs or its bundle.
        #expect(try bh(["list", "-q"]).stdout.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/data/rootfs").isEmpty)

        let unknown = try bh(["run", "--rm", "--user", "ghost", "bb", "true"])
        #expect(unknown.code == 1 && unknown.stderr.contains("unable to find user ghost"), "\(unknown.stderr)")

        let spec = try bh(["spec", "--image", "bb"])
        #expect(spec.code == 0 && spec.stdout.contains("\"args\""), "\(spec.stderr)")

        let mixed = try bh(["run", "--bundle", dir, "--rm", "bb"])
        #expect(mixed.code == 1)
        #expect(mixed.stderr.contains("runc form:") && mixed.stderr.contains("image form:"), "\(mixed.stderr)")

        // A config.json in the working directory and an image of the same name: refused, both forms shown.
        let cwdBundle = try TestEnv.busyboxBundle(at: dir + "/cwd", args: ["true"])
        let ambiguous = try TestEnv.run(["/bin/sh", "-c", "cd \(cwdBundle) && exec \"$@\"", "sh"] + base + ["run", "bb"])
        #expect(ambiguous.code == 1 && ambiguous.stderr.contains("ambiguous"), "\(ambiguous.stderr)")
    }

    /// `run IMAGE` and `policy explain IMAGE` give the policy the same facts from the store: the image's name,
    /// digest, who imported it and from where.
    @Test func imageFormGivesThePolicyTheImagesFacts() throws {
        let dir = try TestEnv.scratch("imagefacts")
        defer { TestEnv.remove(dir) }
        chmod(dir, 0o755)
        let archive = dir + "/busybox.tar"
        let made = try TestEnv.run([TestEnv.packageRoot + "/scripts/make-busybox-image", archive], timeout: 120)
        #expect(made.code == 0, "\(made.stderr)")
        let base = [TestEnv.bulkhead, "--root", dir + "/state", "--data-root", dir + "/data"]
        func bh(_ args: [String]) throws -> TestEnv.Result { try TestEnv.run(base + args) }
        #expect(try bh(["image", "import", archive, "--name", "bb:1"]).code == 0)
        let digest = try bh(["image", "inspect", "bb:1"]).stdout
        let policy = dir + "/policy.yaml"
        try """
            version: 1
            rules:
              - name: bb-from-that-archive
                match:
                  image: "docker.io/library/bb:*"
                  imported_by: root
                  source: "oci-archive:\(archive)"
                decide: deny
                reason: test rule
              - name: default
                decide: namespace
            """.write(toFile: policy, atomically: false, encoding: .utf8)
        chmod(policy, 0o644)
        let explain = try bh(["policy", "explain", "--policy", policy, "bb:1"])
        #expect(explain.code == 0, "\(explain.stderr)")
        #expect(explain.stdout.contains("rule:      bb-from-that-archive"), "\(explain.stdout)")
        #expect(explain.stdout.contains("imported_by=root source=oci-archive:\(archive)"), "\(explain.stdout)")
        #expect(digest.contains("sha256:") && explain.stdout.contains("digest=sha256:"), "\(explain.stdout)")
        let run = try bh(["run", "--policy", policy, "--audit-log", dir + "/audit.jsonl", "--rm", "bb:1", "true"])
        #expect(run.code == 1 && run.stderr.contains("bb-from-that-archive"), "\(run.code) \(run.stderr)")
        let audit = (try? String(contentsOfFile: dir + "/audit.jsonl", encoding: .utf8)) ?? ""
        #expect(audit.contains("\"rule\":\"bb-from-that-archive\"") && audit.contains("\"outcome\":\"deny\""), "\(audit)")
        // Nothing was built for the refused container.
        #expect(try bh(["list", "-q"]).stdout.isEmpty)
    }
}
