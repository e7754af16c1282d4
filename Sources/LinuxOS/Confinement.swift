import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Process confinement primitives: namespaces, pivot_root, capabilities.
public enum Confinement {
    /// unshare(CLONE_NEWNS): a private mount namespace for the calling process (call while single-threaded).
    public static func unshareMountNamespace() throws {
        try sys("unshare", "CLONE_NEWNS") { bh_unshare(BH_CLONE_NEWNS) }
    }

    /// pivot_root(2) to `newRoot`, which must be a mount point; the old root goes to `putOld` (inside it).
    public static func pivotRoot(_ newRoot: String, putOld: String) throws {
        try sys("pivot_root", newRoot) { bh_pivot_root(newRoot, putOld) }
    }

    /// Drops every capability: bounding set first, then the thread's effective/permitted/inheritable sets, and
    /// sets no_new_privs. Affects the calling thread (threads created afterwards inherit it).
    public static func dropAllCapabilities() throws {
        try sys("prctl PR_SET_NO_NEW_PRIVS") { bh_set_no_new_privs() }
        try sys("prctl PR_CAPBSET_DROP") { bh_capbset_drop_all() }
        try sys("capset") { bh_capset_clear() }
    }
}
