#define _GNU_SOURCE
#include "cshims.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

const int BH_CLONE_NEWNS = CLONE_NEWNS, BH_CLONE_NEWPID = CLONE_NEWPID, BH_CLONE_NEWNET = CLONE_NEWNET,
    BH_CLONE_NEWIPC = CLONE_NEWIPC, BH_CLONE_NEWUTS = CLONE_NEWUTS, BH_CLONE_NEWUSER = CLONE_NEWUSER,
    BH_CLONE_NEWCGROUP = CLONE_NEWCGROUP, BH_CLONE_NEWTIME = CLONE_NEWTIME;

int bh_unshare(int flags) { return unshare(flags); }
int bh_setns(int fd, int nstype) { return setns(fd, nstype); }
int bh_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}
int bh_sethostname(const char *name, size_t len) { return sethostname(name, len); }
int bh_setdomainname(const char *name, size_t len) { return setdomainname(name, len); }
int bh_setgroups(size_t n, const gid_t *groups) { return setgroups(n, groups); }

pid_t bh_clone_fork(unsigned long flags) {
    return (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD | flags, 0, 0, 0, 0);
}

int bh_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5) {
    return prctl(option, arg2, arg3, arg4, arg5);
}

int bh_cloexec_from(int first) {
    if (syscall(SYS_close_range, (unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd >= first && fd != self) {
            int fl = fcntl(fd, F_GETFD);
            if (fl >= 0) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        }
    }
    closedir(d);
    return 0;
}

int bh_send_fd(int sock, int fd, const char *msg, size_t len) {
    char dummy = 0;
    struct iovec iov = { .iov_base = len ? (void *)msg : &dummy, .iov_len = len ? len : 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof(u));
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &mh, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

int bh_recv_fd(int sock, char *buf, size_t len) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    ssize_t n;
    do { n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (!c || c->cmsg_type != SCM_RIGHTS) { errno = EBADMSG; return -1; }
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

int bh_open_pty(const char *ptmx_path, int *slave_fd) {
    int master = open(ptmx_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return -1;
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) { int e = errno; close(master); errno = e; return -1; }
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) { int e = errno; close(master); errno = e; return -1; }
    *slave_fd = slave;
    return master;
}

int bh_set_ctty(int fd) { return ioctl(fd, TIOCSCTTY, 0); }

int bh_set_winsize(int fd, unsigned short rows, unsigned short cols) {
    struct winsize ws = { .ws_row = rows, .ws_col = cols };
    return ioctl(fd, TIOCSWINSZ, &ws);
}

int bh_ioctl_int(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }

uint64_t bh_makedev(unsigned int major, unsigned int minor) { return makedev(major, minor); }
unsigned int bh_major(uint64_t dev) { return major(dev); }
unsigned int bh_minor(uint64_t dev) { return minor(dev); }

int bh_wifexited(int status) { return WIFEXITED(status); }
int bh_wexitstatus(int status) { return WEXITSTATUS(status); }
int bh_wifsignaled(int status) { return WIFSIGNALED(status); }
int bh_wtermsig(int status) { return WTERMSIG(status); }

size_t bh_sigset_size(void) { return sizeof(sigset_t); }

int bh_block_all_signals(void *old, size_t size) {
    if (size < sizeof(sigset_t)) { errno = EINVAL; return -1; }
    sigset_t all;
    sigfillset(&all);
    return sigprocmask(SIG_BLOCK, &all, (sigset_t *)old);
}

int bh_restore_signals(const void *old) { return sigprocmask(SIG_SETMASK, (const sigset_t *)old, NULL); }

int bh_wait_any_signal(int *sender_pid) {
    sigset_t all;
    sigfillset(&all);
    siginfo_t info;
    int sig;
    do { sig = sigwaitinfo(&all, &info); } while (sig < 0 && errno == EINTR);
    if (sig > 0 && sender_pid) *sender_pid = info.si_pid;
    return sig;
}

void bh_reset_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

int bh_pidfd_open(pid_t pid) { return (int)syscall(434 /* SYS_pidfd_open */, pid, 0); }
long bh_join_session_keyring(const char *name) { return syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, name); }

const int BH_O_PATH = O_PATH;
const unsigned long BH_CLONE_PARENT = CLONE_PARENT;
const unsigned long BH_ST_RDONLY = ST_RDONLY, BH_ST_NOSUID = ST_NOSUID, BH_ST_NODEV = ST_NODEV, BH_ST_NOEXEC = ST_NOEXEC;
int bh_setresuid(uid_t r, uid_t e, uid_t s) { return setresuid(r, e, s); }
int bh_setresgid(gid_t r, gid_t e, gid_t s) { return setresgid(r, e, s); }
int bh_prlimit(int resource, uint64_t soft, uint64_t hard) {
    struct rlimit lim = { .rlim_cur = soft, .rlim_max = hard };
    return prlimit(0, resource, &lim, NULL);
}
