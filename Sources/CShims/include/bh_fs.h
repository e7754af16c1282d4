// File-system calls glibc hides behind _GNU_SOURCE or macros (used by the image store and layer unpacker).
#ifndef BULKHEAD_BH_FS_H
#define BULKHEAD_BH_FS_H

#include <stdint.h>
#include <sys/types.h>

/// syncfs(2): flushes the whole file system holding `fd`.
int bh_syncfs(int fd);
/// utimensat(2) with explicit seconds/nanoseconds for atime and mtime.
int bh_utimensat(int dirfd, const char *path, int64_t asec, int64_t ansec, int64_t msec, int64_t mnsec, int flags);
/// futimens(3) with explicit seconds/nanoseconds.
int bh_futimens(int fd, int64_t asec, int64_t ansec, int64_t msec, int64_t mnsec);
/// fsetxattr(2) / fgetxattr(2) / lgetxattr(2).
int bh_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags);
long bh_fgetxattr(int fd, const char *name, void *value, size_t size);
long bh_lgetxattr(const char *path, const char *name, void *value, size_t size);
/// isatty(3) on stderr etc.
int bh_isatty(int fd);

#endif
