/* Has DT_RUNPATH=$ORIGIN/rp; dlopens "libdep.so" (a bare name: only the
 * caller's RUNPATH finds it) and "$ORIGIN/rp/libdep.so" (a DST). Both must
 * work under sealkit exec exactly as without: glibc resolves them relative to
 * the *caller* of dlopen, so the wrapper must not become the caller. */
#include <dlfcn.h>
#include <stdio.h>
int
main(void)
{
    void *a = dlopen("libdep.so", RTLD_NOW);
    void *b = dlopen("$ORIGIN/rp/libdep.so", RTLD_NOW);
    int (*f)(void) = a ? (int (*)(void))dlsym(a, "dep_value") : NULL;
    printf("bare=%s origin=%s value=%d\n", a ? "ok" : "fail", b ? "ok" : "fail", f ? f() : -1);
    return a && b ? 0 : 1;
}
