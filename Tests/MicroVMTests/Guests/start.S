# Entry of every test guest: the VMM enters here in 64-bit long mode (CS 0x10, paging on, RSI = zero page).
    .section .text.start, "ax"
    .globl _start
_start:
    lea stack_top(%rip), %rsp
    mov %rsi, %rdi              # main(boot_params)
    call main
1:  cli
    hlt
    jmp 1b

    .bss
    .balign 16
    .skip 65536
stack_top:

# A PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY = 18), so the loader's note parsing is exercised on real output.
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                     # name size
    .long 4                     # desc size
    .long 18                    # type
    .asciz "Xen"
    .long 0x1000000             # 32-bit entry (unused: we enter in long mode)
    .section .note.GNU-stack, "", @progbits
