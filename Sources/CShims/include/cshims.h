// Small C shims for what Swift cannot call directly: raw syscalls that glibc does not wrap,
// function-like macros (ioctl numbers) and variadic functions. Every name is prefixed `bh_`.
#ifndef BULKHEAD_CSHIMS_H
#define BULKHEAD_CSHIMS_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/statfs.h>
#include <sys/vfs.h>

/// openat2(2) with an explicit `struct open_how`. Returns -1 and sets errno on failure.
int bh_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

/// Resolve flags of openat2(2), re-exported as constants Swift can see.
extern const uint64_t BH_RESOLVE_NO_XDEV;
extern const uint64_t BH_RESOLVE_NO_MAGICLINKS;
extern const uint64_t BH_RESOLVE_NO_SYMLINKS;
extern const uint64_t BH_RESOLVE_BENEATH;
extern const uint64_t BH_RESOLVE_IN_ROOT;

/// renameat2(2) (glibc 2.36 declares it only with _GNU_SOURCE).
int bh_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);

/// fcntl(2) and open(2) are variadic in C; these fixed-arity forms are callable from Swift.
int bh_fcntl_int(int fd, int cmd, int arg);
int bh_openat(int dirfd, const char *path, int flags, mode_t mode);

/// The calling thread's errno (a macro in C).
int bh_errno(void);
void bh_set_errno(int value);

#endif
