/* threads N: N threads spin in C; one more creates and joins short-lived
 * threads without pause (threads appear and vanish while a tracer
 * attaches). Runs until its standard input ends, then prints
 * "ok spins=S created=C". Gives up after 60 s (SIGALRM). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static atomic_long spins, created;
static atomic_int stop;
static void *spin(void *a) { (void)a; while (!stop) spins++; return NULL; }
static void *brief(void *a) { (void)a; return NULL; }
static void *churn(void *a) {
    (void)a;
    while (!stop) {
        pthread_t t;
        if (!pthread_create(&t, NULL, brief, NULL)) { pthread_join(t, NULL); created++; }
    }
    return NULL;
}
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    pthread_t t[64];
    if (n > 62) n = 62;
    alarm(60);
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, spin, NULL);
    pthread_create(&t[n], NULL, churn, NULL);
    printf("ready\n"); fflush(stdout);
    char buf[64];
    while (fgets(buf, sizeof buf, stdin)) {}
    stop = 1;
    for (int i = 0; i <= n; i++) pthread_join(t[i], NULL);
    printf("ok spins=%ld created=%ld\n", (long)spins, (long)created);
    return 0;
}
