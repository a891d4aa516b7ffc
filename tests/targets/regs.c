/* Spins with a known value in every general register and checks them all on
 * every turn, until SIGUSR2 (then prints "ok") or a mismatch (then prints
 * "CORRUPT" and exits 3): any register a tracer fails to restore is caught.
 * A signal handler may run between two turns: the kernel saves and restores
 * every register around it. Gives up after 60 s (SIGALRM). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
volatile sig_atomic_t stop;
static void on_usr2(int sig) { (void)sig; stop = 1; }
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    alarm(60);
    printf("ready\n"); fflush(stdout);
    long bad = 0;
    __asm__ volatile(
        "push %%rbx\n push %%rbp\n push %%r12\n push %%r13\n push %%r14\n push %%r15\n"
        "mov $0x1001, %%rax\n mov $0x1002, %%rbx\n mov $0x1003, %%rcx\n mov $0x1004, %%rdx\n"
        "mov $0x1005, %%rsi\n mov $0x1006, %%rdi\n mov $0x1007, %%rbp\n mov $0x1008, %%r8\n"
        "mov $0x1009, %%r9\n mov $0x100a, %%r10\n mov $0x100b, %%r11\n mov $0x100c, %%r12\n"
        "mov $0x100d, %%r13\n mov $0x100e, %%r14\n mov $0x100f, %%r15\n"
        "1:\n"
        "cmp $0x1001, %%rax\n jne 2f\n cmp $0x1002, %%rbx\n jne 2f\n cmp $0x1003, %%rcx\n jne 2f\n"
        "cmp $0x1004, %%rdx\n jne 2f\n cmp $0x1005, %%rsi\n jne 2f\n cmp $0x1006, %%rdi\n jne 2f\n"
        "cmp $0x1007, %%rbp\n jne 2f\n cmp $0x1008, %%r8\n jne 2f\n cmp $0x1009, %%r9\n jne 2f\n"
        "cmp $0x100a, %%r10\n jne 2f\n cmp $0x100b, %%r11\n jne 2f\n cmp $0x100c, %%r12\n jne 2f\n"
        "cmp $0x100d, %%r13\n jne 2f\n cmp $0x100e, %%r14\n jne 2f\n cmp $0x100f, %%r15\n jne 2f\n"
        "cmpl $0, stop(%%rip)\n je 1b\n"
        "xor %%rax, %%rax\n jmp 3f\n"
        "2: mov $1, %%rax\n"
        "3: pop %%r15\n pop %%r14\n pop %%r13\n pop %%r12\n pop %%rbp\n pop %%rbx\n"
        : "=a"(bad) : : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc");
    if (bad) { printf("CORRUPT\n"); return 3; }
    printf("ok\n");
    return 0;
}
