/* A library whose constructor reports, on the file named by $CTORCHECK_OUT
 * (appended), whether its own text and RELRO were already sealed when it ran
 * (smaps VmFlags "sl"): the proof that sealing happens before constructors. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ctorcheck_answer = 42;
int *const ctorcheck_ptr = &ctorcheck_answer; /* a relocated pointer: .data.rel.ro, in RELRO */

int ctorcheck_get(void) { return *ctorcheck_ptr; }

static const char *
state_of(unsigned long addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[4096];
    unsigned long s, e;
    int in = 0;
    const char *res = "unmapped";
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = addr >= s && addr < e;
            if (in)
                res = strstr(line, "rw-p") ? "writable" : "unsealed";
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            if (strstr(line, " sl"))
                res = strstr(res, "writable") ? "writable-sealed" : "sealed";
            in = 0;
        }
    }
    if (f)
        fclose(f);
    return res;
}

__attribute__((constructor)) static void
check(void)
{
    const char *out = getenv("CTORCHECK_OUT");
    if (!out)
        return;
    FILE *f = fopen(out, "a");
    if (!f)
        return;
    Dl_info info;
    dladdr((void *)ctorcheck_get, &info);
    fprintf(f, "%s text=%s relro=%s\n", strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1 : info.dli_fname,
            state_of((unsigned long)ctorcheck_get), state_of((unsigned long)&ctorcheck_ptr));
    fclose(f);
}
