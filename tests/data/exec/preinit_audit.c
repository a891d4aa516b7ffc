/* Shows when la_preinit runs on this glibc: it appends "preinit ctor-ran=yes"
 * to $CTORCHECK_OUT when a constructor (libctorcheck's) already wrote there
 * (else "ctor-ran=no"),
 * and "consistent ctor-ran=..." at the first la_activity(LA_ACT_CONSISTENT). */
#define _GNU_SOURCE
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int consistent_seen;

static void
note(const char *when)
{
    const char *out = getenv("CTORCHECK_OUT");
    if (!out)
        return;
    /* libctorcheck's constructor writes a line containing "text=" */
    int ran = 0;
    FILE *r = fopen(out, "r");
    char line[512];
    while (r && fgets(line, sizeof line, r))
        ran |= strstr(line, "text=") != NULL;
    if (r)
        fclose(r);
    FILE *f = fopen(out, "a");
    if (f) {
        fprintf(f, "%s ctor-ran=%s\n", when, ran ? "yes" : "no");
        fclose(f);
    }
}

unsigned int la_version(unsigned int v) { return 1; }
void la_activity(uintptr_t *cookie, unsigned int flag)
{
    if (flag == LA_ACT_CONSISTENT && !consistent_seen++)
        note("consistent");
}
void la_preinit(uintptr_t *cookie) { note("preinit"); }
