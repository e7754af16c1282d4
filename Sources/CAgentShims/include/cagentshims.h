// C for the guest agent (bulkhead-agent, PID 1 in the microVM): the fork→exec child set-up, which
// must not run Swift code, plus ioctls and reboot(2) constants. Every name is prefixed `bh_agent_`.
#ifndef BULKHEAD_CAGENTSHIMS_H
#define BULKHEAD_CAGENTSHIMS_H

#include <stdint.h>
#include <sys/types.h>

/// What the child does between clone and exec, in this order: reset signals; join the cgroup; join
/// namespaces (setns); in a new mount namespace make mounts private and, in a new pid namespace too,
/// mount a fresh proc; new session; stdio to 0/1/2 (and the terminal as controlling tty); chroot + chdir;
/// rlimits; [seccomp when early]; bounding set, keep-caps; groups, gid, uid; effective/permitted/
/// inheritable and ambient capabilities; no_new_privs; [seccomp]; exec (args[0] looked up in the PATH of
/// `envp` when it has no slash) — the order of the namespace tier's ProcessConfinement. New namespaces
/// (`clone_flags`) are created by clone(2) itself.
struct bh_agent_spawn_request {
    const char *root;                /* chroot into this directory (NULL: stay) */
    const char *cwd;                 /* working directory inside the root */
    const char *const *argv;         /* NULL-terminated */
    const char *const *envp;         /* NULL-terminated */
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int ngroups;
    const int *rlimit_resources;     /* nrlimits entries each */
    const uint64_t *rlimit_soft;
    const uint64_t *rlimit_hard;
    int nrlimits;
    int stdin_fd, stdout_fd, stderr_fd;
    int terminal;                    /* stdin_fd is a pty slave: make it the controlling terminal */
    int no_new_privileges;
    int clone_flags;                 /* CLONE_NEW* namespaces to create for the child (0: none) */
    const int *join_fds;             /* namespace fds (from /proc/PID/ns/...) the child joins with setns, */
    const int *join_types;           /* each with its CLONE_NEW* type; a pid namespace is joined by the   */
    int njoin;                       /* parent around the clone (it applies to children only)             */
    int cgroup_procs_fd;             /* an open cgroup.procs the child moves itself into (-1: none) */
    const char *proc_mount;          /* with CLONE_NEWPID|CLONE_NEWNS: mount a fresh proc here (NULL: none) */
    int apply_capabilities;          /* set the capability sets below (bit N = capability N) */
    int last_capability;             /* the kernel's highest capability number */
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    const void *seccomp_bpf;         /* a struct sock_filter array (NULL: no filter) */
    int seccomp_bpf_count;           /* instructions in it */
    int seccomp_early;               /* load it before the capabilities are dropped (else last before exec) */
};

/// Forks and runs the request in the child. Returns the child's pid, or -1 with `*failed_stage` naming
/// the step that failed (a static string) and errno set — the exec itself included (reported through
/// a close-on-exec pipe, so the caller knows whether exec succeeded).
pid_t bh_agent_spawn(const struct bh_agent_spawn_request *request, const char **failed_stage);

/// pipe2(2) with O_CLOEXEC.
int bh_agent_pipe(int fds[2]);

/// TIOCSWINSZ on a terminal fd.
int bh_agent_set_winsize(int fd, unsigned short rows, unsigned short columns);

/// Opens a pty pair from the devpts instance of `ptmx` (the container's own /dev/pts/ptmx, so the slave has a
/// name inside the container): master and slave O_RDWR|O_NOCTTY|O_CLOEXEC.
int bh_agent_openpty(const char *ptmx, int *master, int *slave);

/// reboot(2): power_off != 0 asks for RB_POWER_OFF, else RB_AUTOBOOT (with reboot=k: the i8042 reset).
int bh_agent_reboot(int power_off);

/// Blocks SIGCHLD (and the other signals PID 1 handles) and returns a signalfd for them (CLOEXEC|NONBLOCK).
int bh_agent_signalfd(void);

/// Reads one pending signal number from a signalfd (0 when none).
int bh_agent_read_signal(int fd);
#endif
