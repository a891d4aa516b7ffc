/* dlopener LIB: prints "ready", then on each line "open" from stdin dlopens
 * LIB in a new thread (printing "loaded" when dlopen returns), and exits 0
 * at end of input. One more thread spins all along, in C. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
static const char *lib;
static atomic_int stop;
static void *spin(void *a) { (void)a; volatile unsigned long n = 0; while (!stop) n++; return NULL; }
static void *load(void *a) {
    (void)a;
    void *h = dlopen(lib, RTLD_NOW);
    printf(h ? "loaded\n" : "failed %s\n", dlerror());
    fflush(stdout);
    return NULL;
}
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    lib = argv[1];
    pthread_t spinner, loader;
    int loading = 0;
    pthread_create(&spinner, NULL, spin, NULL);
    printf("ready\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "open", 4) && !loading) { pthread_create(&loader, NULL, load, NULL); loading = 1; }
    }
    if (loading) pthread_join(loader, NULL);
    stop = 1;
    pthread_join(spinner, NULL);
    printf("ok\n");
    return 0;
}
