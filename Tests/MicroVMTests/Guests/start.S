# Entry points of every test guest.
#
# _start: our VMM enters here in 64-bit long mode (CS 0x10, paging on, RSI = zero page), as Linux's 64-bit boot
#   protocol does.
# pvh_start32: the PVH entry (named in the Xen ELF note) that QEMU uses for an ELF -kernel: 32-bit protected mode,
#   paging off. It builds an identity map of the first GiB, enters long mode and joins _start, so the benchmark
#   can run the very same image under both monitors.
    .section .text.start, "ax"
    .code64
    .globl _start
_start:
    lea stack_top(%rip), %rsp
    mov %rsi, %rdi              # main(boot_params)
    call main
1:  cli
    hlt
    jmp 1b

    .code32
    .globl pvh_start32
pvh_start32:
    cli
    movl $(pvh_pdpt + 3), pvh_pml4
    movl $(pvh_pd + 3), pvh_pdpt
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, pvh_pd(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jb 2b
    movl $pvh_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax             # PAE
    movl %eax, %cr4
    movl $0xC0000080, %ecx      # EFER.LME
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax       # PG | PE
    movl %eax, %cr0
    lgdt pvh_gdt_descriptor
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %esi, %esi
    jmp _start

    .section .rodata
    .balign 8
pvh_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    # 64-bit code
    .quad 0x00CF92000000FFFF    # data
pvh_gdt_descriptor:
    .word pvh_gdt_descriptor - pvh_gdt - 1
    .long pvh_gdt

    .bss
    .balign 4096
pvh_pml4: .skip 4096
pvh_pdpt: .skip 4096
pvh_pd:   .skip 4096
    .balign 16
    .skip 65536
stack_top:

# The PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18).
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                     # name size
    .long 4                     # desc size
    .long 18                    # type
    .asciz "Xen"
    .long pvh_start32

    .section .note.GNU-stack, "", @progbits
