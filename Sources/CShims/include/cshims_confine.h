// Process confinement calls glibc does not wrap (or hides behind _GNU_SOURCE). Prefixed `bh_`.
#ifndef BULKHEAD_CSHIMS_CONFINE_H
#define BULKHEAD_CSHIMS_CONFINE_H

#include <sys/signalfd.h>
#include "cshims.h"   // bh_unshare, bh_pivot_root, BH_CLONE_NEWNS

/// Clears the calling thread's effective, permitted and inheritable capability sets (capset(2), version 3).
int bh_capset_clear(void);
/// Drops every capability from the bounding set (PR_CAPBSET_DROP up to the kernel's last capability).
int bh_capbset_drop_all(void);
/// PR_SET_NO_NEW_PRIVS.
int bh_set_no_new_privs(void);
/// A new, detached (never attached anywhere, so nothing propagates) read-only tmpfs of `size_kb` KiB and mode
/// 0555 through fsopen/fsconfig/fsmount; returns its mount fd (O_CLOEXEC) or -1 with errno.
int bh_detached_empty_tmpfs(unsigned size_kb);

#endif
