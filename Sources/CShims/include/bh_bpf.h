// bpf(2) for the cgroup device controller of cgroup v2 (BPF_PROG_TYPE_CGROUP_DEVICE). Prefixed `bh_`.
#ifndef BULKHEAD_CSHIMS_BPF_H
#define BULKHEAD_CSHIMS_BPF_H

#include <stdint.h>

/// BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program of `count` 8-byte instructions. Returns the program
/// fd (close-on-exec) or -1 with errno; the verifier's log goes to `log` when given.
int bh_bpf_load_cgroup_device(const uint64_t *insns, uint32_t count, const char *license, char *log, uint32_t log_size);
/// BPF_PROG_ATTACH of a device program to a cgroup directory fd (BPF_CGROUP_DEVICE, with `flags`).
int bh_bpf_attach_cgroup_device(int prog_fd, int cgroup_fd, uint32_t flags);
/// BPF_PROG_DETACH of that program from that cgroup.
int bh_bpf_detach_cgroup_device(int prog_fd, int cgroup_fd);
/// BPF_PROG_QUERY: the ids of the device programs attached to the cgroup. `*count` is the room in `ids` on
/// entry and the number attached on return.
int bh_bpf_query_cgroup_device(int cgroup_fd, uint32_t *ids, uint32_t *count);
/// BPF_PROG_GET_FD_BY_ID.
int bh_bpf_prog_fd_by_id(uint32_t id);
/// BPF_F_ALLOW_MULTI.
uint32_t bh_bpf_allow_multi(void);

#endif
