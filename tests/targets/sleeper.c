/* Blocks in one system call and reports how it returned.
 *   sleeper nanosleep SECS   nanosleep(SECS): ret, errno, elapsed
 *   sleeper read             read(0) until it gets data or EOF: one line per return
 * SIGUSR1 has a handler without SA_RESTART that counts its calls. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t usr1;
static void on_usr1(int sig) { (void)sig; usr1++; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    printf("ready\n"); fflush(stdout);
    double t0 = now();
    if (argc > 2 && !strcmp(argv[1], "nanosleep")) {
        double secs = atof(argv[2]);
        struct timespec req = { (time_t)secs, (long)((secs - (time_t)secs) * 1e9) }, rem = {0, 0};
        int r = nanosleep(&req, &rem);
        int e = r ? errno : 0;
        printf("ret=%d errno=%d elapsed=%.3f usr1=%d\n", r, e, now() - t0, (int)usr1);
    } else {
        for (;;) {
            char buf[64] = {0};
            ssize_t r = read(0, buf, sizeof buf - 1);
            int e = r < 0 ? errno : 0;
            printf("ret=%zd errno=%d data=%s usr1=%d\n", r, e, r > 0 ? buf : "", (int)usr1);
            fflush(stdout);
            if (r >= 0) break;
        }
    }
    return 0;
}
