/* Installs a seccomp filter, then waits for SIGTERM.
 *   kill: mseal -> SECCOMP_RET_KILL_PROCESS   errno: mseal -> ERRNO(EPERM)
 *   allow: only getpid(39) -> ERRNO          argkill: mseal with args[1] > 1 MiB -> KILL */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#define NR(n) offsetof(struct seccomp_data, n)
int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "kill";
    unsigned target = 462, action = SECCOMP_RET_KILL_PROCESS;
    if (!strcmp(mode, "errno")) action = SECCOMP_RET_ERRNO | 1;
    if (!strcmp(mode, "allow")) { target = 39; action = SECCOMP_RET_ERRNO | 1; }
    struct sock_filter plain[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR(arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR(nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, target, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_filter argkill[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR(nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 462, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR(args[1])),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 1 << 20, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { 7, plain };
    if (!strcmp(mode, "argkill")) { prog.len = 6; prog.filter = argkill; }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) { perror("seccomp"); return 2; }
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGTERM); sigprocmask(SIG_BLOCK, &set, NULL);
    printf("ready\n"); fflush(stdout);
    int sig; sigwait(&set, &sig);
    printf("ok\n");
    return 0;
}
