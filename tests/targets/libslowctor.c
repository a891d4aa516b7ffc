/* A shared object whose constructor prints "in-ctor", then sleeps for
 * $SLOW_CTOR_SECONDS (default 1): a thread inside dlopen, outside the
 * loader's own code, with glibc's loader lock held. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
__attribute__((constructor)) static void slow(void) {
    const char *env = getenv("SLOW_CTOR_SECONDS");
    double secs = env ? atof(env) : 1.0;
    printf("in-ctor\n");
    fflush(stdout);
    struct timespec d = { (time_t)secs, (long)((secs - (time_t)secs) * 1e9) };
    while (nanosleep(&d, &d)) {}
}
