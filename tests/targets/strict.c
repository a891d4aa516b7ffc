/* Enters seccomp strict mode when told: "ready"; on a line from stdin it
 * calls prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) and prints "strict";
 * on the next line it prints "ok" and exits with the raw exit system call
 * (strict mode allows only read, write, exit and sigreturn: any other call,
 * mseal included, kills it). */
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    char buf[64];
    printf("ready\n"); fflush(stdout);
    if (read(0, buf, sizeof buf) <= 0) return 2;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)) return 3;
    write(1, "strict\n", 7);
    if (read(0, buf, sizeof buf) <= 0) syscall(SYS_exit, 4);
    write(1, "ok\n", 3);
    syscall(SYS_exit, 0);
    return 0;
}
