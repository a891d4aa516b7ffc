/* N threads spin in C; one more creates and joins short-lived threads
 * without pause (threads appear and vanish while sealkit attaches). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static atomic_long spins, created; static atomic_int stop;
static void *spin(void *a) { (void)a; while (!stop) spins++; return NULL; }
static void *brief(void *a) { (void)a; return NULL; }
static void *churn(void *a) {
    (void)a;
    while (!stop) { pthread_t t; if (!pthread_create(&t, NULL, brief, NULL)) { pthread_join(t, NULL); created++; } }
    return NULL;
}
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4; double secs = argc > 2 ? atof(argv[2]) : 3;
    pthread_t t[64]; if (n > 62) n = 62;
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, spin, NULL);
    pthread_create(&t[n], NULL, churn, NULL);
    printf("ready\n"); fflush(stdout);
    struct timespec d = { (time_t)secs, (long)((secs - (time_t)secs) * 1e9) };
    while (nanosleep(&d, &d)) {}
    stop = 1;
    for (int i = 0; i <= n; i++) pthread_join(t[i], NULL);
    printf("ok spins=%ld created=%ld\n", (long)spins, (long)created);
    return 0;
}
