/* On SIGUSR1, tries to make the page of libc's printf writable+executable,
 * as an attacker inside the process would; prints what mprotect said. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
static volatile sig_atomic_t go;
static void on(int s) { (void)s; go = 1; }
int main(void) {
    signal(SIGUSR1, on);
    printf("ready\n"); fflush(stdout);
    while (!go) pause();
    void *page = (void *)((uintptr_t)(void *)&printf & ~(uintptr_t)4095);
    int r = mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
    printf("mprotect=%d errno=%d\n", r, r ? errno : 0); fflush(stdout);
    return 0;
}
