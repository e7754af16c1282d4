/// mount(2) flags (glibc exposes them only partly to Swift).
public enum MountFlags {
    public static let readOnly: UInt = 1
    public static let noSuid: UInt = 2
    public static let noDev: UInt = 4
    public static let noExec: UInt = 8
    public static let synchronous: UInt = 16
    public static let remount: UInt = 32
    public static let mandLock: UInt = 64
    public static let dirSync: UInt = 128
    public static let noSymFollow: UInt = 256
    public static let noAtime: UInt = 1024
    public static let noDirAtime: UInt = 2048
    public static let bind: UInt = 4096
    public static let move: UInt = 8192
    public static let recursive: UInt = 16384
    public static let silent: UInt = 32768
    public static let unbindable: UInt = 1 << 17
    public static let `private`: UInt = 1 << 18
    public static let slave: UInt = 1 << 19
    public static let shared: UInt = 1 << 20
    public static let relatime: UInt = 1 << 21
    public static let strictAtime: UInt = 1 << 24
    public static let lazyTime: UInt = 1 << 25
    /// The propagation-type flags (applied with a separate mount call).
    public static let propagation: UInt = unbindable | `private` | slave | shared
}

/// umount2(2) flags.
public enum UnmountFlags {
    public static let force: Int32 = 1
    public static let detach: Int32 = 2
}
