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


// ---- Namespaces, processes and the container init (used by NamespaceBackend) ----

/// Clone flags and namespace types (glibc declares them only with _GNU_SOURCE).
extern const int BH_CLONE_NEWNS, BH_CLONE_NEWPID, BH_CLONE_NEWNET, BH_CLONE_NEWIPC, BH_CLONE_NEWUTS,
    BH_CLONE_NEWUSER, BH_CLONE_NEWCGROUP, BH_CLONE_NEWTIME;

int bh_unshare(int flags);
int bh_setns(int fd, int nstype);
int bh_pivot_root(const char *new_root, const char *put_old);
int bh_sethostname(const char *name, size_t len);
int bh_setdomainname(const char *name, size_t len);
int bh_setgroups(size_t n, const gid_t *groups);

/// fork(2) as a raw clone(2) with SIGCHLD and `flags` (e.g. CLONE_PARENT, so the child becomes a child of
/// our parent). Only for single-threaded callers (the container init). Returns 0 in the child.
pid_t bh_clone_fork(unsigned long flags);

/// prctl(2) with fixed arity.
int bh_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);

/// Marks every fd >= first close-on-exec (close_range(2) with CLOSE_RANGE_CLOEXEC, /proc/self/fd fallback).
int bh_cloexec_from(int first);

/// Sends `fd` over the unix socket `sock` with SCM_RIGHTS, with `msg` (may be empty) as the data.
int bh_send_fd(int sock, int fd, const char *msg, size_t len);
/// Receives one fd sent with SCM_RIGHTS; returns the fd or -1. `buf` receives the data.
int bh_recv_fd(int sock, char *buf, size_t len);

/// Opens a new pseudo-terminal through `ptmx_path`; returns the master and stores the slave fd.
int bh_open_pty(const char *ptmx_path, int *slave_fd);
/// Makes `fd` the controlling terminal of the calling process (TIOCSCTTY).
int bh_set_ctty(int fd);
/// Sets the window size of a terminal (TIOCSWINSZ).
int bh_set_winsize(int fd, unsigned short rows, unsigned short cols);

/// ioctl(2) with one integer argument.
int bh_ioctl_int(int fd, unsigned long request, unsigned long arg);

/// makedev(3), major(3), minor(3) (macros in glibc).
uint64_t bh_makedev(unsigned int major, unsigned int minor);
unsigned int bh_major(uint64_t dev);
unsigned int bh_minor(uint64_t dev);

/// waitpid status decoding (macros in C).
int bh_wifexited(int status);
int bh_wexitstatus(int status);
int bh_wifsignaled(int status);
int bh_wtermsig(int status);

/// Blocks every signal in the calling thread, returning the old mask through `old` (sigset_t storage).
int bh_block_all_signals(void *old, size_t size);
int bh_restore_signals(const void *old);
/// sizeof(sigset_t)
size_t bh_sigset_size(void);
/// Waits for any signal in the set of all signals (sigwaitinfo), returns the signal number and the sender pid.
int bh_wait_any_signal(int *sender_pid);
/// pidfd_open(2).
int bh_pidfd_open(pid_t pid);
/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name).
long bh_join_session_keyring(const char *name);

/// Constants and calls glibc hides behind _GNU_SOURCE.
extern const int BH_O_PATH;
extern const unsigned long BH_CLONE_PARENT;
extern const unsigned long BH_ST_RDONLY, BH_ST_NOSUID, BH_ST_NODEV, BH_ST_NOEXEC;
int bh_setresuid(uid_t r, uid_t e, uid_t s);
int bh_setresgid(gid_t r, gid_t e, gid_t s);
int bh_prlimit(int resource, uint64_t soft, uint64_t hard);

/// Resets every signal's disposition to default and unblocks all (for a process about to exec a workload).
void bh_reset_signals(void);

/// memfd_create(name, MFD_CLOEXEC): an anonymous in-memory file.
int bh_memfd(const char *name);

#endif
