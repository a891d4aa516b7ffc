/* A 32-bit static program without libc: nanosleep(30 s) through int $0x80, then exit(0). */
    .section .data
req: .long 30, 0
    .section .text
    .globl _start
_start:
    mov $162, %eax          /* __NR_nanosleep (i386) */
    mov $req, %ebx
    xor %ecx, %ecx
    int $0x80
    mov $1, %eax            /* __NR_exit */
    xor %ebx, %ebx
    int $0x80
