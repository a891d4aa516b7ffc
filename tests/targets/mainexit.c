/* The main thread exits (pthread_exit) while another thread runs on for up
 * to 30 s: the process's leader is a zombie, its address space alive. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *worker(void *a) { (void)a; sleep(30); return NULL; }
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    printf("ready\n"); fflush(stdout);
    pthread_exit(NULL);
}
