#define _GNU_SOURCE
#include "bh_fork.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int bh_thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n;
}

static int is_target(int fd, const int *targets, int count) {
    for (int i = 0; i < count; i++) if (targets[i] == fd) return 1;
    return 0;
}

// clone3(2)'s arguments (linux/sched.h, kernel 5.7+ for `cgroup`), declared here: that header clashes with glibc's.
struct bh_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};
#define BH_CLONE_INTO_CGROUP 0x200000000ULL

pid_t bh_fork_init(const int *sources, const int *targets, int count, int cgroup_fd, int *in_cgroup,
                   unsigned long namespaces) {
    if (count > 64) { errno = EINVAL; return -1; }
    int max_target = 2;
    for (int i = 0; i < count; i++) if (targets[i] > max_target) max_target = targets[i];
    // Nothing buffered in stdio may be written twice (by the child's exit too).
    fflush(NULL);
    pid_t pid = -1;
    *in_cgroup = 0;
    if (cgroup_fd >= 0) {
        struct bh_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = BH_CLONE_INTO_CGROUP | (uint64_t)namespaces;
        args.exit_signal = SIGCHLD;
        args.cgroup = (uint64_t)cgroup_fd;
        pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
        if (pid >= 0) *in_cgroup = 1;   // in the parent and in the child
    }
    // Without clone3 (or its cgroup): clone(2) with no new stack is fork(2) with namespace flags.
    if (pid < 0) pid = namespaces != 0 ? (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD | namespaces, 0, 0, 0, 0) : fork();
    if (pid != 0) return pid;

    // Child. Move every source above all targets first, so that placing one never overwrites another's source.
    int tmp[64];
    for (int i = 0; i < count; i++) {
        tmp[i] = fcntl(sources[i], F_DUPFD_CLOEXEC, max_target + 1 > 10 ? max_target + 1 : 10);
        if (tmp[i] < 0) _exit(127);
    }
    for (int i = 0; i < count; i++) {
        if (dup2(tmp[i], targets[i]) < 0) _exit(127);
    }
    // Every other fd goes, as close-on-exec would take it at an exec (the runtime's own fds are all close-on-exec;
    // the state directory's lock among them must not stay held by the container's init).
    if (syscall(SYS_close_range, (unsigned)max_target + 1, ~0U, 0) != 0) {
        DIR *d = opendir("/proc/self/fd");
        if (!d) _exit(127);
        int self = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            int fd = atoi(e->d_name);
            if (fd > max_target && fd != self) close(fd);
        }
        closedir(d);
    }
    for (int fd = 3; fd <= max_target; fd++) {
        if (!is_target(fd, targets, count)) close(fd);
    }
    clearenv();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        sigaction(s, &sa, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    return 0;
}
