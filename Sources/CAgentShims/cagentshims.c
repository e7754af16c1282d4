#define _GNU_SOURCE
#include "cagentshims.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sched.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

struct child_failure { int stage; int err; };

static const char *const stages[] = {
    "exec", "setsid", "dup2 stdio", "ioctl TIOCSCTTY", "chroot", "chdir", "setrlimit",
    "setgroups", "setgid", "setuid", "prctl PR_SET_NO_NEW_PRIVS", "clone", "pipe2", "exec (not found in PATH)",
    "join the cgroup", "setns", "make mounts private", "mount proc for the pid namespace", "setns (pid, in the agent)",
    "load the seccomp filter", "drop from the capability bounding set", "prctl PR_SET_KEEPCAPS", "capset",
    "raise an ambient capability",
};

static int load_seccomp(const struct bh_agent_spawn_request *r) {
    struct sock_fprog prog = { .len = (unsigned short)r->seccomp_bpf_count, .filter = (struct sock_filter *)r->seccomp_bpf };
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

static void fail(int pipe_fd, int stage) {
    struct child_failure f = { stage, errno };
    ssize_t ignored = write(pipe_fd, &f, sizeof f);
    (void)ignored;
    _exit(127);
}

static const char *env_value(const char *const *envp, const char *name) {
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') return *envp + n + 1;
    return NULL;
}

/* Child side only: async-signal-safe calls, no allocation. */
static void exec_in_path(const struct bh_agent_spawn_request *r, int pipe_fd) {
    const char *file = r->argv[0];
    if (strchr(file, '/')) {
        execve(file, (char *const *)r->argv, (char *const *)r->envp);
        fail(pipe_fd, 0);
    }
    const char *path = env_value(r->envp, "PATH");
    if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    char candidate[4096];
    int saw_eacces = 0;
    size_t flen = strlen(file);
    while (*path) {
        const char *end = strchr(path, ':');
        size_t dlen = end ? (size_t)(end - path) : strlen(path);
        if (dlen + 1 + flen + 1 <= sizeof candidate) {
            memcpy(candidate, path, dlen);
            candidate[dlen] = '/';
            memcpy(candidate + dlen + 1, file, flen + 1);
            execve(candidate, (char *const *)r->argv, (char *const *)r->envp);
            if (errno == EACCES) saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR) fail(pipe_fd, 0);
        }
        if (!end) break;
        path = end + 1;
    }
    errno = saw_eacces ? EACCES : ENOENT;
    fail(pipe_fd, 13);
}

struct spawn_context { const struct bh_agent_spawn_request *r; int pipe_fd; };

/* The child, on its own stack (clone without CLONE_VM: a copy of the parent's memory, like fork). */
static int spawn_child(void *arg) {
    const struct spawn_context *c = arg;
    const struct bh_agent_spawn_request *r = c->r;
    int pfd = c->pipe_fd;
    sigset_t all;
    sigemptyset(&all);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    sigprocmask(SIG_SETMASK, &all, NULL);
    if (r->cgroup_procs_fd >= 0 && write(r->cgroup_procs_fd, "0", 1) != 1) fail(pfd, 14);
    for (int i = 0; i < r->njoin; i++)
        if (r->join_types[i] != CLONE_NEWPID && setns(r->join_fds[i], r->join_types[i]) < 0) fail(pfd, 15);
    if (r->clone_flags & CLONE_NEWNS) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail(pfd, 16);
        if ((r->clone_flags & CLONE_NEWPID) && r->proc_mount &&
            mount("proc", r->proc_mount, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail(pfd, 17);
    }
    if (setsid() < 0) fail(pfd, 1);
    /* Move the stdio fds out of 0..2 first so dup2 cannot clobber one with another. */
    int in = fcntl(r->stdin_fd, F_DUPFD_CLOEXEC, 10), out = fcntl(r->stdout_fd, F_DUPFD_CLOEXEC, 10),
        err = fcntl(r->stderr_fd, F_DUPFD_CLOEXEC, 10);
    if (in < 0 || out < 0 || err < 0) fail(pfd, 2);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) fail(pfd, 2);
    if (r->terminal && ioctl(0, TIOCSCTTY, 0) < 0) fail(pfd, 3);
    if (r->root) {
        if (chdir(r->root) < 0) fail(pfd, 5);
        if (chroot(".") < 0) fail(pfd, 4);
    }
    if (chdir("/") < 0 || chdir(r->cwd && *r->cwd ? r->cwd : "/") < 0) fail(pfd, 5);
    for (int i = 0; i < r->nrlimits; i++) {
        struct rlimit lim = { r->rlimit_soft[i], r->rlimit_hard[i] };
        if (setrlimit(r->rlimit_resources[i], &lim) < 0) fail(pfd, 6);
    }
    if (r->seccomp_bpf && r->seccomp_early && load_seccomp(r) < 0) fail(pfd, 19);
    if (r->apply_capabilities) {
        for (int cap = 0; cap <= r->last_capability && cap < 64; cap++)
            if (!(r->cap_bounding & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) fail(pfd, 20);
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(pfd, 21);
    }
    if (setgroups((size_t)r->ngroups, r->groups) < 0) fail(pfd, 7);
    if (setgid(r->gid) < 0) fail(pfd, 8);
    if (setuid(r->uid) < 0) fail(pfd, 9);
    if (r->apply_capabilities) {
        if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) fail(pfd, 21);
        struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
        struct __user_cap_data_struct data[2] = {
            { (uint32_t)r->cap_effective, (uint32_t)r->cap_permitted, (uint32_t)r->cap_inheritable },
            { (uint32_t)(r->cap_effective >> 32), (uint32_t)(r->cap_permitted >> 32), (uint32_t)(r->cap_inheritable >> 32) },
        };
        if (syscall(SYS_capset, &header, data) < 0) fail(pfd, 22);
        (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        for (int cap = 0; cap < 64; cap++)
            if ((r->cap_ambient & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) fail(pfd, 23);
    }
    if (r->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(pfd, 10);
    if (r->seccomp_bpf && !r->seccomp_early && load_seccomp(r) < 0) fail(pfd, 19);
    exec_in_path(r, pfd);
    _exit(127);
}

pid_t bh_agent_spawn(const struct bh_agent_spawn_request *r, const char **failed_stage) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) { *failed_stage = stages[12]; return -1; }
    /* A pid namespace to join applies to our next child: enter it for the clone, then return to ours. */
    int own_pid_ns = -1, join_pid = -1;
    for (int i = 0; i < r->njoin; i++) if (r->join_types[i] == CLONE_NEWPID) join_pid = r->join_fds[i];
    if (join_pid >= 0) {
        own_pid_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (own_pid_ns < 0 || setns(join_pid, CLONE_NEWPID) < 0) {
            int e = errno; if (own_pid_ns >= 0) close(own_pid_ns); close(p[0]); close(p[1]); errno = e;
            *failed_stage = stages[18]; return -1;
        }
    }
    size_t stack_size = 256 * 1024;
    char *stack = malloc(stack_size);
    pid_t pid = -1;
    int clone_errno = ENOMEM;
    if (stack) {
        struct spawn_context ctx = { r, p[1] };
        pid = clone(spawn_child, stack + stack_size, r->clone_flags | SIGCHLD, &ctx);
        clone_errno = errno;
        free(stack);
    }
    if (own_pid_ns >= 0) { (void)setns(own_pid_ns, CLONE_NEWPID); close(own_pid_ns); }
    if (pid < 0) { close(p[0]); close(p[1]); errno = clone_errno; *failed_stage = stages[11]; return -1; }
    close(p[1]);
    struct child_failure f;
    ssize_t n;
    do { n = read(p[0], &f, sizeof f); } while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == (ssize_t)sizeof f) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *failed_stage = (f.stage >= 0 && f.stage < (int)(sizeof stages / sizeof *stages)) ? stages[f.stage] : "child set-up";
        errno = f.err;
        return -1;
    }
    return pid;
}

int bh_agent_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int bh_agent_set_winsize(int fd, unsigned short rows, unsigned short columns) {
    struct winsize ws = { .ws_row = rows, .ws_col = columns };
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int bh_agent_openpty(const char *ptmx, int *master, int *slave) {
    int m = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    int unlock = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0) { int e = errno; close(m); errno = e; return -1; }
    /* The slave of this very master, whichever devpts instance it lives in (no path lookup). */
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) { int e = errno; close(m); errno = e; return -1; }
    *master = m;
    *slave = s;
    return 0;
}

int bh_agent_reboot(int power_off) {
    sync();
    return reboot(power_off ? RB_POWER_OFF : RB_AUTOBOOT);
}

int bh_agent_signalfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int bh_agent_read_signal(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    return n == (ssize_t)sizeof info ? (int)info.ssi_signo : 0;
}

/* Runs before the Swift runtime's own initialisers (priority 101 sorts first in .init_array). As PID 1 of
 * the initramfs nothing is mounted yet, and the runtime's backtracer looks for its own path and for the
 * swift-backtrace helper at start-up, which fails there ("Unable to obtain Swift runtime path") and kills
 * init. So: mount /proc first, and switch the backtracer off for the agent (it has no helper to run). */
__attribute__((constructor(101))) static void bh_agent_early_init(void) {
    if (getpid() != 1) return;
    setenv("SWIFT_BACKTRACE", "enable=no", 1);
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}
