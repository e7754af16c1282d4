// User namespaces and idmapped mounts: the new mount API (open_tree, mount_setattr, move_mount) that glibc 2.36
// wraps only in a header that conflicts with <linux/mount.h>, and a user-namespace holder process. Prefixed `bh_`.
#ifndef BULKHEAD_BH_USERNS_H
#define BULKHEAD_BH_USERNS_H

#include <sys/types.h>

/// open_tree(2) with OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC (| AT_RECURSIVE when `recursive`): a detached copy of
/// the mount (tree) at `path`. Returns the fd or -1.
int bh_open_tree_clone(int dirfd, const char *path, int recursive);
/// mount_setattr(2) on a detached tree fd: sets MOUNT_ATTR_IDMAP with the user namespace `userns_fd`
/// (| AT_RECURSIVE when `recursive`).
int bh_mount_setattr_idmap(int tree_fd, int userns_fd, int recursive);
/// move_mount(2) of a detached tree fd onto `target` (MOVE_MOUNT_F_EMPTY_PATH).
int bh_move_mount_to(int tree_fd, int target_dirfd, const char *target);

/// Starts a child in a new user namespace that does nothing but wait: it exits when `*release_fd` (the write
/// end of a pipe, close-on-exec, kept by the caller) is closed. The caller writes the child's uid_map/gid_map,
/// opens /proc/PID/ns/user, closes `*release_fd` and reaps the child. Safe in a multithreaded caller: the child
/// runs only read(2) and _exit(2). Returns the child's pid or -1.
pid_t bh_spawn_userns_holder(int *release_fd);

#endif
