// Forking the container init without re-executing the runtime binary, for a runtime process that is provably
// single-threaded at that moment (after fork(2) only the calling thread exists, so a single-threaded parent leaves
// no lock held by a thread that is gone, and the child may go on running Swift code). Prefixed `bh_`.
#ifndef BULKHEAD_BH_FORK_H
#define BULKHEAD_BH_FORK_H

#include <sys/types.h>

/// The number of threads of this process (entries of /proc/self/task), or -1 when it cannot be read.
int bh_thread_count(void);

/// fork(2) for the container init. With `cgroup_fd` >= 0 (a cgroup2 directory), the child is created in that
/// cgroup (clone3 with CLONE_INTO_CGROUP: moving a process later takes the global cgroup migration lock and an RCU
/// grace period, several ms of wall time); `*in_cgroup` says, in the parent and in the child, whether that worked
/// (else it is a plain fork and the caller moves the child). In the child, before returning 0: fds are placed as posix_spawn's dup2 actions would
/// place them (`sources[i]` becomes `targets[i]`, without close-on-exec; a source may be a target of another
/// pair), every other fd from 3 up is closed (what close-on-exec does at an exec), the environment is emptied,
/// every signal is reset to its default action and the signal mask is emptied. On a failure in the child it
/// _exits with status 127. In the parent: the child's pid, or -1 with errno set.
///
/// `namespaces`: CLONE_NEW* flags the child is created with (clone3, or clone(2) where clone3 is refused), so that
/// it is born in the container's new namespaces (0 for none).
pid_t bh_fork_init(const int *sources, const int *targets, int count, int cgroup_fd, int *in_cgroup,
                   unsigned long namespaces);

#endif
