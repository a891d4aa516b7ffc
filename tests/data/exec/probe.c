/* A test program for `sealkit exec`: runs the steps named on its command
 * line and prints one line per step on stdout (the same plain and sealed,
 * unless the step reports sealing state). Steps:
 *   dlopen PATH MODE     MODE: now | now-nodelete | lazy ; prints ok/fail
 *   dlopen-fail PATH     dlopen expected to fail (prints the error after the path)
 *   nss                  getpwnam("root") through the compat module (libnss_compat.so.2)
 *   iconv                iconv_open("UTF-8", "IBM037") (the IBM037 gconv module)
 *   cancel               pthread_cancel a thread (glibc dlopens libgcc_s)
 *   sealed PATH-PART     whether the text and RELRO of the loaded object whose path
 *                        contains PATH-PART are sealed (smaps VmFlags sl); not for plain runs
 *   hold                 print "holding" and wait until stdin is closed (smaps can be read)
 *   vmas N               split one mapping into N VMAs (every other page PROT_NONE)
 *   call PATH SYMBOL     dlopen PATH (RTLD_NOW), call int SYMBOL(void), print the result
 *   cycle PATH N T       T threads each dlopen+dlclose PATH N times; then print how many
 *                        mappings of PATH remain (0 when every dlclose could unmap)
 *   attack-child PATH    fork; the child dlopens PATH (the attack library, which attacks
 *                        from its constructor) and exits; prints the child's end
 *   exec ARGV...         execv the rest of the command line
 *   spawn ARGV...        fork, execv the rest, wait; prints the child's exit status
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <iconv.h>
#include <nss.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct cycle { const char *path; int n; };

static void *
cycle_thread(void *arg)
{
    struct cycle *c = arg;
    for (int k = 0; k < c->n; k++) {
        void *h = dlopen(c->path, RTLD_NOW);
        if (!h)
            return (void *)1;
        dlclose(h);
    }
    return NULL;
}

static int
mappings_of(const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, path) != NULL;
    if (f)
        fclose(f);
    return n;
}

static void *
spin(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

/* For the object whose path contains `part`: "text=sl relro=sl" etc. from smaps. */
static void
sealed_state(const char *part)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[4096], perms[8] = "", path[4096];
    int in = 0, text = -1, relro = -1, ro = -1;
    unsigned long start, end, off;
    while (fgets(line, sizeof line, f)) {
        path[0] = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %4095s", &start, &end, perms, &off, path) >= 4 && strchr(line, '-') < strchr(line, ' ')) {
            in = strstr(path, part) != NULL;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            int sl = strstr(line, " sl") != NULL;
            if (strcmp(perms, "r-xp") == 0)
                text = text == 0 ? 0 : sl;
            else if (strcmp(perms, "r--p") == 0)
                ro = ro == 0 ? 0 : sl;
            in = 0;
        }
    }
    fclose(f);
    (void)relro;
    printf("sealed %s: text=%s readonly=%s\n", part, text < 0 ? "none" : text ? "sl" : "no", ro < 0 ? "none" : ro ? "sl" : "no");
}

int
main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *step = argv[i];
        if (strcmp(step, "dlopen") == 0 && i + 2 < argc) {
            const char *path = argv[++i], *mode = argv[++i];
            int m = strcmp(mode, "lazy") == 0 ? RTLD_LAZY : RTLD_NOW;
            if (strcmp(mode, "now-nodelete") == 0)
                m |= RTLD_NODELETE;
            void *h = dlopen(path, m);
            printf("dlopen %s %s: %s\n", path, mode, h ? "ok" : "fail");
            if (!h)
                fprintf(stderr, "%s\n", dlerror());
        } else if (strcmp(step, "dlopen-fail") == 0 && i + 1 < argc) {
            void *h = dlopen(argv[++i], RTLD_NOW);
            const char *e = h ? "loaded" : dlerror();
            const char *tail = strstr(e, ": ");
            printf("dlopen-fail: %s\n", h ? "loaded" : tail ? tail + 2 : e);
        } else if (strcmp(step, "nss") == 0) {
            __nss_configure_lookup("passwd", "compat");
            struct passwd *pw = getpwnam("root");
            printf("nss: %s uid=%d\n", pw ? pw->pw_name : "none", pw ? (int)pw->pw_uid : -1);
        } else if (strcmp(step, "iconv") == 0) {
            iconv_t cd = iconv_open("UTF-8", "IBM037");
            char in[] = "\xc8\x85\x93\x93\x96", out[16] = {0}, *ip = in, *op = out;
            size_t il = 5, ol = sizeof out - 1;
            if (cd == (iconv_t)-1) {
                printf("iconv: fail\n");
                continue;
            }
            iconv(cd, &ip, &il, &op, &ol);
            printf("iconv: %s\n", out);
            iconv_close(cd);
        } else if (strcmp(step, "cancel") == 0) {
            pthread_t t;
            void *ret;
            pthread_create(&t, NULL, spin, NULL);
            pthread_cancel(t);
            pthread_join(t, &ret);
            printf("cancel: %s\n", ret == PTHREAD_CANCELED ? "canceled" : "not canceled");
        } else if (strcmp(step, "sealed") == 0 && i + 1 < argc) {
            sealed_state(argv[++i]);
        } else if (strcmp(step, "vmas") == 0 && i + 1 < argc) {
            long n = atol(argv[++i]);
            char *p = mmap(NULL, (size_t)n * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            for (long k = 1; p != MAP_FAILED && k < n; k += 2)
                mprotect(p + k * 4096, 4096, PROT_NONE);
            printf("vmas: %s\n", p == MAP_FAILED ? "fail" : "ok");
        } else if (strcmp(step, "call") == 0 && i + 2 < argc) {
            const char *path = argv[++i], *sym = argv[++i];
            void *h = dlopen(path, RTLD_NOW);
            int (*f)(void) = h ? (int (*)(void))dlsym(h, sym) : NULL;
            printf("call %s: %d\n", sym, f ? f() : -1);
        } else if (strcmp(step, "cycle") == 0 && i + 3 < argc) {
            struct cycle c = {argv[i + 1], atoi(argv[i + 2])};
            int t = atoi(argv[i + 3]), failed = 0;
            i += 3;
            pthread_t th[16];
            for (int k = 0; k < t && k < 16; k++)
                pthread_create(&th[k], NULL, cycle_thread, &c);
            for (int k = 0; k < t && k < 16; k++) {
                void *r;
                pthread_join(th[k], &r);
                failed |= r != NULL;
            }
            printf("cycle: %s, %d mappings left\n", failed ? "dlopen failed" : "ok", mappings_of(c.path));
        } else if (strcmp(step, "hold") == 0) {
            char buf[64];
            printf("holding\n");
            while (fread(buf, 1, sizeof buf, stdin) > 0)
                ;
        } else if (strcmp(step, "attack-child") == 0 && i + 1 < argc) {
            const char *path = argv[++i];
            pid_t pid = fork();
            if (pid == 0) {
                dlopen(path, RTLD_NOW);
                _exit(0);
            }
            int st;
            waitpid(pid, &st, 0);
            printf("attack-child: %s\n", WIFEXITED(st) ? "exited" : "killed");
        } else if (strcmp(step, "exec") == 0 && i + 1 < argc) {
            execv(argv[i + 1], argv + i + 1);
            printf("exec: %s\n", strerror(errno));
            return 127;
        } else if (strcmp(step, "spawn") == 0 && i + 1 < argc) {
            pid_t pid = fork();
            if (pid == 0) {
                execv(argv[i + 1], argv + i + 1);
                _exit(127);
            }
            int st;
            waitpid(pid, &st, 0);
            printf("spawn: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            return 0;
        } else {
            fprintf(stderr, "probe: unknown step %s\n", step);
            return 2;
        }
    }
    return 0;
}
