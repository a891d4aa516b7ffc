/* Prints "ready"; on the line "go" from stdin, vfork()s a child that sleeps
 * 0.8 s and exits: the parent waits in the kernel, uninterruptibly (state
 * D), where PTRACE_INTERRUPT cannot stop it. Another thread spins in C.
 * Prints "back" when vfork returns, "ok" at the end of input. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static atomic_int stop;
static void *spin(void *a) { (void)a; volatile unsigned long n = 0; while (!stop) n++; return NULL; }
int main(void) {
    pthread_t spinner;
    pthread_create(&spinner, NULL, spin, NULL);
    printf("ready\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "go", 2)) continue;
        pid_t child = vfork();
        if (child == 0) {
            struct timespec d = { 0, 800000000L };
            nanosleep(&d, NULL);
            _exit(0);
        }
        waitpid(child, NULL, 0);
        printf("back\n"); fflush(stdout);
    }
    stop = 1;
    pthread_join(spinner, NULL);
    printf("ok\n");
    return 0;
}
