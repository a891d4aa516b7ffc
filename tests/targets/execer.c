/* Executes itself again and again: "execer N [threads]" prints "ready" on
 * its first image, then each image (after starting a busy thread, with
 * "threads") waits 2 ms and executes "execer N-1"; the last prints
 * "done N" with the number of images, and exits 0. A tracer's plan made for one image
 * must never be applied to the next. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static void *spin(void *arg) { (void)arg; for (volatile unsigned long i = 0;; i++) {} return NULL; }
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long n = atol(argv[1]);
    int threads = argc > 2 && !strcmp(argv[2], "threads");
    if (argc < 4) { printf("ready\n"); fflush(stdout); }
    if (n <= 0) { printf("done\n"); return 0; }
    if (threads) { pthread_t t; pthread_create(&t, NULL, spin, NULL); }
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    char next[32];
    snprintf(next, sizeof next, "%ld", n - 1);
    char *args[] = { argv[0], next, threads ? "threads" : "single", "again", NULL };
    execv(argv[0], args);
    perror("execv");
    return 1;
}
