#define _GNU_SOURCE
#include "bh_fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

int bh_syncfs(int fd) { return syncfs(fd); }

int bh_utimensat(int dirfd, const char *path, int64_t asec, int64_t ansec, int64_t msec, int64_t mnsec, int flags) {
    struct timespec ts[2] = { { .tv_sec = asec, .tv_nsec = ansec }, { .tv_sec = msec, .tv_nsec = mnsec } };
    return utimensat(dirfd, path, ts, flags);
}

int bh_futimens(int fd, int64_t asec, int64_t ansec, int64_t msec, int64_t mnsec) {
    struct timespec ts[2] = { { .tv_sec = asec, .tv_nsec = ansec }, { .tv_sec = msec, .tv_nsec = mnsec } };
    return futimens(fd, ts);
}

int bh_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags) {
    return fsetxattr(fd, name, value, size, flags);
}
long bh_fgetxattr(int fd, const char *name, void *value, size_t size) { return (long)fgetxattr(fd, name, value, size); }
long bh_lgetxattr(const char *path, const char *name, void *value, size_t size) {
    return (long)lgetxattr(path, name, value, size);
}
int bh_isatty(int fd) { return isatty(fd); }
