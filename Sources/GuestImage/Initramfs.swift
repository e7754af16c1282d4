import CArchive
import LinuxOS
#if canImport(Glibc)
import Glibc
#endif

/// The microVM's initramfs: a newc cpio holding the guest agent as `/init`, the directories it mounts
/// on and `/dev/console` (so the kernel can give PID 1 its console before devtmpfs is mounted).
/// Written with libarchive, so no root and no staging directory are needed; entries are owned by root
/// with fixed times, so the same agent gives the same bytes.
public enum Initramfs {
    /// Writes the initramfs for the agent binary at `agent` to `output` (atomically: temp file + rename).
    /// With `strip` (and binutils' strip present) the agent goes in without symbols (about a third smaller).
    public static func build(agent: String, output: String, strip: Bool = true) throws {
        let agentFD = try FileDescriptor.open(agent, O_RDONLY)
        let st = try agentFD.stat(path: agent)
        guard st.st_mode & S_IFMT == S_IFREG, st.st_size > 0, st.st_size < 512 << 20 else {
            throw Tool.Failure(description: "initramfs: \(agent) is not a plausible agent binary; build it with: swift build -c release --product bulkhead-agent -Xswiftc -static-executable")
        }
        var binary = try agentFD.readAll(limit: 512 << 20, path: agent)
        if strip, binary.starts(with: [0x7f, 0x45, 0x4c, 0x46]), let tool = Tool.find("strip") {
            let stripped = "\(output).strip-\(getpid())"
            defer { unlink(stripped) }
            try Tool.run(tool, ["-o", stripped, agent], package: "binutils")
            binary = try FileDescriptor.open(stripped, O_RDONLY).readAll(limit: 512 << 20, path: stripped)
        }
        guard binary.starts(with: [0x7f, 0x45, 0x4c, 0x46]) else {
            throw Tool.Failure(description: "initramfs: \(agent) is not an ELF executable")
        }
        var entries: [Entry] = ["dev", "proc", "sys", "run", "tmp"].map { .directory($0) }
        entries.append(.characterDevice("dev/console", major: 5, minor: 1))
        entries.append(.file("init", mode: 0o755, contents: binary))
        try write(entries, to: output)
    }

    /// One archive member.
    public enum Entry: Sendable {
        case directory(String)
        case file(String, mode: mode_t, contents: [UInt8])
        case characterDevice(String, major: UInt32, minor: UInt32)
        case symlink(String, target: String)
    }

    /// Writes a newc archive of `entries` (root-owned, time 0) to `output`, atomically.
    public static func write(_ entries: [Entry], to output: String) throws {
        let temp = "\(output).tmp-\(getpid())"
        guard let archive = archive_write_new() else { throw Tool.Failure(description: "initramfs: libarchive out of memory") }
        defer { archive_write_free(archive) }
        func check(_ rc: Int32, _ what: String) throws {
            if rc != ARCHIVE_OK {
                let text = archive_error_string(archive).map { String(cString: $0) } ?? "error \(rc)"
                throw Tool.Failure(description: "initramfs: \(what): \(text)")
            }
        }
        try check(archive_write_set_format_cpio_newc(archive), "newc format")
        try check(archive_write_add_filter_none(archive), "no filter")
        try check(archive_write_open_filename(archive, temp), "open \(temp)")
        var ok = false
        defer { if !ok { unlink(temp) } }
        func add(_ name: String, type: mode_t, mode: mode_t, rdev: (UInt32, UInt32)? = nil, data: [UInt8] = [], link: String? = nil) throws {
            guard let entry = archive_entry_new() else { throw Tool.Failure(description: "initramfs: out of memory") }
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, name)
            archive_entry_set_filetype(entry, UInt32(type))
            archive_entry_set_perm(entry, mode)
            archive_entry_set_uid(entry, 0)
            archive_entry_set_gid(entry, 0)
            archive_entry_set_mtime(entry, 0, 0)
            archive_entry_set_nlink(entry, type == S_IFDIR ? 2 : 1)
            if let rdev {
                archive_entry_set_rdevmajor(entry, dev_t(rdev.0))
                archive_entry_set_rdevminor(entry, dev_t(rdev.1))
            }
            if let link { archive_entry_set_symlink(entry, link) }
            archive_entry_set_size(entry, la_int64_t(data.count))
            try check(archive_write_header(archive, entry), "header \(name)")
            if !data.isEmpty {
                let written = data.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
                guard written == data.count else { try check(ARCHIVE_FATAL, "data \(name)"); return }
            }
        }
        for entry in entries {
            switch entry {
            case let .directory(name): try add(name, type: S_IFDIR, mode: 0o755)
            case let .file(name, mode, contents): try add(name, type: S_IFREG, mode: mode, data: contents)
            case let .characterDevice(name, major, minor): try add(name, type: S_IFCHR, mode: 0o600, rdev: (major, minor))
            case let .symlink(name, target): try add(name, type: S_IFLNK, mode: 0o777, data: [], link: target)
            }
        }
        try check(archive_write_close(archive), "close")
        let out = try FileDescriptor.open(temp, O_RDONLY)
        try out.fsync(path: temp)
        try sys("rename", output) { rename(temp, output) }
        ok = true
    }
}
