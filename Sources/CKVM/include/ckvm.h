// C shim for the KVM API: ioctl numbers are function-like macros and `struct kvm_run` is full of anonymous
// unions, neither of which Swift can use directly. Every name is prefixed `bh_`. All functions return what
// ioctl(2) returns (-1 with errno set on failure) unless said otherwise.
#ifndef BULKHEAD_CKVM_H
#define BULKHEAD_CKVM_H

#include <stdint.h>
#include <stddef.h>
#include <linux/kvm.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>

// ---- ioctl request numbers (for seccomp argument filters) ----
unsigned long bh_kvm_req_run(void);
unsigned long bh_kvm_req_irq_line(void);
unsigned long bh_kvm_req_get_regs(void);
unsigned long bh_kvm_req_get_sregs(void);

// ---- /dev/kvm ----
int bh_kvm_get_api_version(int kvm_fd);
int bh_kvm_create_vm(int kvm_fd);
int bh_kvm_check_extension(int fd, int cap);
int bh_kvm_get_vcpu_mmap_size(int kvm_fd);
/// Fills `entries` (room for `*count`) with KVM_GET_SUPPORTED_CPUID; sets `*count` to the number returned.
int bh_kvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid_entry2 *entries, uint32_t *count);

// ---- VM fd ----
int bh_kvm_set_user_memory_region(int vm_fd, uint32_t slot, uint64_t guest_phys, uint64_t size, uint64_t host_addr);
int bh_kvm_set_tss_addr(int vm_fd, uint64_t addr);
int bh_kvm_set_identity_map_addr(int vm_fd, uint64_t addr);
int bh_kvm_create_irqchip(int vm_fd);
int bh_kvm_create_pit2(int vm_fd);
int bh_kvm_create_vcpu(int vm_fd, int id);
int bh_kvm_irq_line(int vm_fd, uint32_t irq, uint32_t level);
int bh_kvm_irqfd(int vm_fd, int event_fd, uint32_t gsi);
/// Registers an ioeventfd: a 4-byte MMIO write of `datamatch` at `addr` signals `event_fd` in the kernel.
int bh_kvm_ioeventfd_mmio(int vm_fd, int event_fd, uint64_t addr, uint32_t datamatch);

// ---- vCPU fd ----
int bh_kvm_run(int vcpu_fd);
int bh_kvm_set_cpuid2(int vcpu_fd, const struct kvm_cpuid_entry2 *entries, uint32_t count);
int bh_kvm_get_regs(int vcpu_fd, struct kvm_regs *regs);
int bh_kvm_set_regs(int vcpu_fd, const struct kvm_regs *regs);
int bh_kvm_get_sregs(int vcpu_fd, struct kvm_sregs *sregs);
int bh_kvm_set_sregs(int vcpu_fd, const struct kvm_sregs *sregs);
int bh_kvm_get_fpu(int vcpu_fd, struct kvm_fpu *fpu);
int bh_kvm_set_fpu(int vcpu_fd, const struct kvm_fpu *fpu);
int bh_kvm_get_lapic(int vcpu_fd, struct kvm_lapic_state *lapic);
int bh_kvm_set_lapic(int vcpu_fd, const struct kvm_lapic_state *lapic);
/// KVM_SET_MSRS with `count` (index, value) pairs; returns how many were set (or -1).
int bh_kvm_set_msrs(int vcpu_fd, const uint32_t *indices, const uint64_t *values, uint32_t count);

// ---- struct kvm_run accessors (the mmap'd run area of a vCPU) ----
void bh_run_set_immediate_exit(struct kvm_run *run, uint8_t value);
uint32_t bh_run_exit_reason(const struct kvm_run *run);
uint8_t bh_run_io_direction(const struct kvm_run *run);
uint8_t bh_run_io_size(const struct kvm_run *run);
uint16_t bh_run_io_port(const struct kvm_run *run);
uint32_t bh_run_io_count(const struct kvm_run *run);
uint64_t bh_run_io_data_offset(const struct kvm_run *run);
uint64_t bh_run_mmio_phys_addr(const struct kvm_run *run);
uint8_t *bh_run_mmio_data(struct kvm_run *run);
uint32_t bh_run_mmio_len(const struct kvm_run *run);
uint8_t bh_run_mmio_is_write(const struct kvm_run *run);
uint64_t bh_run_hw_exit_reason(const struct kvm_run *run);
uint64_t bh_run_fail_entry_reason(const struct kvm_run *run);
uint32_t bh_run_internal_suberror(const struct kvm_run *run);
uint32_t bh_run_internal_ndata(const struct kvm_run *run);
uint64_t bh_run_internal_data(const struct kvm_run *run, uint32_t i);
uint32_t bh_run_system_event_type(const struct kvm_run *run);
uint32_t bh_run_exception(const struct kvm_run *run);
uint32_t bh_run_exception_error_code(const struct kvm_run *run);

// ---- vCPU kick: a signal with an empty handler (no SA_RESTART) so a blocked KVM_RUN returns EINTR ----
int bh_install_kick_handler(int signo);

#endif
