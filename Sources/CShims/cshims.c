#define _GNU_SOURCE
#include "cshims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

const uint64_t BH_RESOLVE_NO_XDEV = RESOLVE_NO_XDEV;
const uint64_t BH_RESOLVE_NO_MAGICLINKS = RESOLVE_NO_MAGICLINKS;
const uint64_t BH_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS;
const uint64_t BH_RESOLVE_BENEATH = RESOLVE_BENEATH;
const uint64_t BH_RESOLVE_IN_ROOT = RESOLVE_IN_ROOT;

int bh_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int bh_fcntl_int(int fd, int cmd, int arg) { return fcntl(fd, cmd, arg); }
int bh_openat(int dirfd, const char *path, int flags, mode_t mode) { return openat(dirfd, path, flags, mode); }
int bh_errno(void) { return errno; }
void bh_set_errno(int value) { errno = value; }
int bh_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

int bh_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }
