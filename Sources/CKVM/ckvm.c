#include "ckvm.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

unsigned long bh_kvm_req_run(void) { return KVM_RUN; }
unsigned long bh_kvm_req_irq_line(void) { return KVM_IRQ_LINE; }
unsigned long bh_kvm_req_get_regs(void) { return KVM_GET_REGS; }
unsigned long bh_kvm_req_get_sregs(void) { return KVM_GET_SREGS; }

int bh_kvm_get_api_version(int kvm_fd) { return ioctl(kvm_fd, KVM_GET_API_VERSION, 0); }
int bh_kvm_create_vm(int kvm_fd) { return ioctl(kvm_fd, KVM_CREATE_VM, 0); }
int bh_kvm_check_extension(int fd, int cap) { return ioctl(fd, KVM_CHECK_EXTENSION, cap); }
int bh_kvm_get_vcpu_mmap_size(int kvm_fd) { return ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0); }

int bh_kvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid_entry2 *entries, uint32_t *count) {
    size_t size = sizeof(struct kvm_cpuid2) + (size_t)*count * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *cpuid = calloc(1, size);
    if (!cpuid) { errno = ENOMEM; return -1; }
    cpuid->nent = *count;
    int r = ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid);
    if (r >= 0) {
        *count = cpuid->nent;
        memcpy(entries, cpuid->entries, (size_t)cpuid->nent * sizeof(struct kvm_cpuid_entry2));
    }
    int saved = errno;
    free(cpuid);
    errno = saved;
    return r;
}

int bh_kvm_set_user_memory_region(int vm_fd, uint32_t slot, uint64_t guest_phys, uint64_t size, uint64_t host_addr) {
    struct kvm_userspace_memory_region region = {
        .slot = slot, .flags = 0, .guest_phys_addr = guest_phys, .memory_size = size, .userspace_addr = host_addr,
    };
    return ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
}
int bh_kvm_set_tss_addr(int vm_fd, uint64_t addr) { return ioctl(vm_fd, KVM_SET_TSS_ADDR, (unsigned long)addr); }
int bh_kvm_set_identity_map_addr(int vm_fd, uint64_t addr) {
    __u64 a = addr;
    return ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &a);
}
int bh_kvm_create_irqchip(int vm_fd) { return ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0); }
int bh_kvm_create_pit2(int vm_fd) {
    struct kvm_pit_config config = { .flags = KVM_PIT_SPEAKER_DUMMY };
    return ioctl(vm_fd, KVM_CREATE_PIT2, &config);
}
int bh_kvm_create_vcpu(int vm_fd, int id) { return ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)id); }
int bh_kvm_irq_line(int vm_fd, uint32_t irq, uint32_t level) {
    struct kvm_irq_level line = { .irq = irq, .level = level };
    return ioctl(vm_fd, KVM_IRQ_LINE, &line);
}
int bh_kvm_irqfd(int vm_fd, int event_fd, uint32_t gsi) {
    struct kvm_irqfd irqfd = { .fd = (__u32)event_fd, .gsi = gsi };
    return ioctl(vm_fd, KVM_IRQFD, &irqfd);
}
int bh_kvm_ioeventfd_mmio(int vm_fd, int event_fd, uint64_t addr, uint32_t datamatch) {
    struct kvm_ioeventfd io = {
        .datamatch = datamatch, .addr = addr, .len = 4, .fd = event_fd, .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
    };
    return ioctl(vm_fd, KVM_IOEVENTFD, &io);
}

int bh_kvm_run(int vcpu_fd) { return ioctl(vcpu_fd, KVM_RUN, 0); }
int bh_kvm_set_cpuid2(int vcpu_fd, const struct kvm_cpuid_entry2 *entries, uint32_t count) {
    size_t size = sizeof(struct kvm_cpuid2) + (size_t)count * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *cpuid = calloc(1, size);
    if (!cpuid) { errno = ENOMEM; return -1; }
    cpuid->nent = count;
    memcpy(cpuid->entries, entries, (size_t)count * sizeof(struct kvm_cpuid_entry2));
    int r = ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid);
    int saved = errno;
    free(cpuid);
    errno = saved;
    return r;
}
int bh_kvm_get_regs(int vcpu_fd, struct kvm_regs *regs) { return ioctl(vcpu_fd, KVM_GET_REGS, regs); }
int bh_kvm_set_regs(int vcpu_fd, const struct kvm_regs *regs) { return ioctl(vcpu_fd, KVM_SET_REGS, regs); }
int bh_kvm_get_sregs(int vcpu_fd, struct kvm_sregs *sregs) { return ioctl(vcpu_fd, KVM_GET_SREGS, sregs); }
int bh_kvm_set_sregs(int vcpu_fd, const struct kvm_sregs *sregs) { return ioctl(vcpu_fd, KVM_SET_SREGS, sregs); }
int bh_kvm_get_fpu(int vcpu_fd, struct kvm_fpu *fpu) { return ioctl(vcpu_fd, KVM_GET_FPU, fpu); }
int bh_kvm_set_fpu(int vcpu_fd, const struct kvm_fpu *fpu) { return ioctl(vcpu_fd, KVM_SET_FPU, fpu); }
int bh_kvm_get_lapic(int vcpu_fd, struct kvm_lapic_state *lapic) { return ioctl(vcpu_fd, KVM_GET_LAPIC, lapic); }
int bh_kvm_set_lapic(int vcpu_fd, const struct kvm_lapic_state *lapic) { return ioctl(vcpu_fd, KVM_SET_LAPIC, lapic); }
int bh_kvm_set_msrs(int vcpu_fd, const uint32_t *indices, const uint64_t *values, uint32_t count) {
    size_t size = sizeof(struct kvm_msrs) + (size_t)count * sizeof(struct kvm_msr_entry);
    struct kvm_msrs *msrs = calloc(1, size);
    if (!msrs) { errno = ENOMEM; return -1; }
    msrs->nmsrs = count;
    for (uint32_t i = 0; i < count; i++) { msrs->entries[i].index = indices[i]; msrs->entries[i].data = values[i]; }
    int r = ioctl(vcpu_fd, KVM_SET_MSRS, msrs);
    int saved = errno;
    free(msrs);
    errno = saved;
    return r;
}

void bh_run_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}
uint32_t bh_run_exit_reason(const struct kvm_run *run) { return run->exit_reason; }
uint8_t bh_run_io_direction(const struct kvm_run *run) { return run->io.direction; }
uint8_t bh_run_io_size(const struct kvm_run *run) { return run->io.size; }
uint16_t bh_run_io_port(const struct kvm_run *run) { return run->io.port; }
uint32_t bh_run_io_count(const struct kvm_run *run) { return run->io.count; }
uint64_t bh_run_io_data_offset(const struct kvm_run *run) { return run->io.data_offset; }
uint64_t bh_run_mmio_phys_addr(const struct kvm_run *run) { return run->mmio.phys_addr; }
uint8_t *bh_run_mmio_data(struct kvm_run *run) { return run->mmio.data; }
uint32_t bh_run_mmio_len(const struct kvm_run *run) { return run->mmio.len; }
uint8_t bh_run_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }
uint64_t bh_run_hw_exit_reason(const struct kvm_run *run) { return run->hw.hardware_exit_reason; }
uint64_t bh_run_fail_entry_reason(const struct kvm_run *run) { return run->fail_entry.hardware_entry_failure_reason; }
uint32_t bh_run_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
uint32_t bh_run_internal_ndata(const struct kvm_run *run) { return run->internal.ndata; }
uint64_t bh_run_internal_data(const struct kvm_run *run, uint32_t i) {
    return i < 16 && i < run->internal.ndata ? run->internal.data[i] : 0;
}
uint32_t bh_run_system_event_type(const struct kvm_run *run) { return run->system_event.type; }
uint32_t bh_run_exception(const struct kvm_run *run) { return run->ex.exception; }
uint32_t bh_run_exception_error_code(const struct kvm_run *run) { return run->ex.error_code; }

static void bh_kick_handler(int signo) { (void)signo; }
int bh_install_kick_handler(int signo) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = bh_kick_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
    return sigaction(signo, &action, NULL);
}
