#define _GNU_SOURCE
#include "cshims_confine.h"

#include <errno.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// BH_CLONE_NEWNS, bh_unshare and bh_pivot_root are defined once, in namespaces.c (shared with the namespace tier).

int bh_capset_clear(void) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2] = {{0, 0, 0}, {0, 0, 0}};
    return (int)syscall(SYS_capset, &header, data);
}

int bh_capbset_drop_all(void) {
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break; // past the kernel's last capability
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    }
    return 0;
}

int bh_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }

#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif
#define BH_FSOPEN_CLOEXEC 0x1
#define BH_FSMOUNT_CLOEXEC 0x1
#define BH_MOUNT_ATTR_RDONLY 0x1
#define BH_MOUNT_ATTR_NOSUID 0x2
#define BH_MOUNT_ATTR_NODEV 0x4
#define BH_MOUNT_ATTR_NOEXEC 0x8

int bh_detached_empty_tmpfs(unsigned size_kb) {
    int fs = (int)syscall(SYS_fsopen, "tmpfs", BH_FSOPEN_CLOEXEC);
    if (fs < 0) return -1;
    char size[32];
    snprintf(size, sizeof size, "%uk", size_kb);
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", size, 0) != 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0555", 0) != 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
        int saved = errno; close(fs); errno = saved; return -1;
    }
    int mnt = (int)syscall(SYS_fsmount, fs, BH_FSMOUNT_CLOEXEC,
                           BH_MOUNT_ATTR_RDONLY | BH_MOUNT_ATTR_NOSUID | BH_MOUNT_ATTR_NODEV | BH_MOUNT_ATTR_NOEXEC);
    int saved = errno;
    close(fs);
    errno = saved;
    return mnt;
}
