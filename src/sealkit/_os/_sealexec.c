/*
 * libsealexec.so: sealkit's loader-side library for `sealkit exec`.
 *
 * One shared object, loaded twice into the program by glibc's dynamic loader:
 *
 *  - as an rtld-audit module (LD_AUDIT), in a namespace of its own. The
 *    loader calls it back: la_objopen for every object it maps, and
 *    la_activity(LA_ACT_CONSISTENT) when a batch of loading is complete.
 *    This instance owns all state and does all sealing.
 *  - as a preloaded library (LD_PRELOAD), in the program's namespace. It
 *    defines dlopen() and dlmopen(), which note the caller's mode and, on
 *    glibc before 2.41, seal what the loader made read-only only after the
 *    audit callback had run (RELRO), before dlopen() returns.
 *
 * When is what sealed (glibc 2.36 measured; sources in docs/exec.md):
 *
 *  - Start-up. dl_main relocates every initial object (_dl_relocate_object
 *    ends with _dl_protect_relro), re-relocates ld.so (its RELRO), then calls
 *    la_activity(LA_ACT_CONSISTENT) for the base namespace, then returns; the
 *    constructors run after that (_dl_init from _dl_start_user). So at that
 *    callback every initial object (the executable, its dependencies, the
 *    preloads, ld.so) is relocated with RELRO read-only and no constructor
 *    has run: the executable, every dependency, the preloads, ld.so and the
 *    audit modules are sealed there. la_preinit is too late (it runs after
 *    all constructors, in __libc_start_main).
 *  - dlopen. Before glibc 2.41 (commit 43db5e2c06, bug 31986) dlopen calls
 *    la_activity(LA_ACT_CONSISTENT) *before* relocating the new objects, so
 *    their RELRO is still writable there. Text and read-only data are final
 *    once mapped (objects with DT_TEXTREL are never sealed), so they are
 *    sealed at that callback; RELRO is sealed as soon as it is seen
 *    read-only: at the callback on glibc 2.41+, else when the dlopen()
 *    wrapper regains control after the real dlopen returns, else (a load the
 *    wrapper did not see: libc's own NSS, gconv, libgcc_s loads) at the next
 *    loader event. Sealing RELRO while it is still writable would make the
 *    loader's own mprotect(PROT_READ) fail and dlopen fail.
 *
 * What is sealed, per object: its PT_LOAD segments as the loader maps them
 * (page-rounded) and PT_GNU_RELRO (start and end rounded down, as
 * _dl_protect_relro does); with level "code" only text, read-only data and
 * RELRO; with level "all" the whole object (data, .bss, gaps). Never: a W+X
 * page, an object with DT_TEXTREL, a PT_GNU_MUTABLE or PT_OPENBSD_MUTABLE
 * range, anything that is not, in /proc/self/maps at that moment, exactly the
 * object's private mapping with the expected protection. Each range is
 * checked against a fresh read of /proc/self/maps with the loader's lock held
 * (inside the audit callback, or inside dl_iterate_phdr for the wrapper), so
 * nothing can be unmapped and replaced between the check and mseal(2).
 *
 * Freestanding: no libc in the audit namespace (linking libc would make the
 * loader map a second copy of it there, at a cost on every start-up); system
 * calls are made directly; the only libc symbols used (by the preload
 * instance) are weak. Bounded: fixed tables in .bss; anything over a bound is
 * skipped and reported, never guessed at. Nothing is written to the
 * program's stdout or stderr, except one line before exiting when sealing
 * was required and is impossible.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>

#pragma GCC visibility push(hidden)

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "libsealexec supports x86_64 and aarch64"
#endif

#ifndef SYS_mseal
#define SYS_mseal 462
#endif
#define PT_GNU_MUTABLE_ 0x6474f555u     /* glibc azanella/memory-seal-v6, elf/elf.h */
#define PT_OPENBSD_MUTABLE_ 0x65a3dbe5u /* OpenBSD sys/sys/exec_elf.h */
#define GNU_PROPERTY_MEMORY_SEAL_ 3u    /* binutils 4d890484, glibc v6 elf/elf.h */
#define NT_GNU_PROPERTY_TYPE_0_ 5u

#define RTLD_NODELETE_ 0x01000
#define AT_FDCWD_ (-100)
#define O_RDONLY_ 0
#define O_WRONLY_ 01
#define O_CREAT_ 0100
#define O_EXCL_ 0200
#define O_TRUNC_ 01000
#define O_NOFOLLOW_ 0400000
#define O_CLOEXEC_ 02000000
#define EINTR_ 4
#define ENOSYS_ 38

/* --- system calls ---------------------------------------------------------- */

static long
sys6(long n, long a, long b, long c, long d, long e, long f)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
#else
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
#endif
}
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

static long
sys_read(int fd, void *buf, unsigned long len)
{
    long r;
    do
        r = sys3(SYS_read, fd, buf, len);
    while (r == -EINTR_);
    return r;
}

static long
sys_write_all(int fd, const char *buf, unsigned long len)
{
    while (len) {
        long r = sys3(SYS_write, fd, buf, len);
        if (r == -EINTR_)
            continue;
        if (r <= 0)
            return r < 0 ? r : -5;
        buf += r;
        len -= (unsigned long)r;
    }
    return 0;
}

static int sys_open(const char *path, int flags, int mode) { return (int)sys6(SYS_openat, AT_FDCWD_, (long)path, flags, mode, 0, 0); }
static void sys_close(int fd) { sys3(SYS_close, fd, 0, 0); }
static long sys_getpid(void) { return sys3(SYS_getpid, 0, 0, 0); }
static long sys_gettid(void) { return sys3(SYS_gettid, 0, 0, 0); }
static long sys_mseal(uintptr_t a, uintptr_t len) { return sys3(SYS_mseal, a, len, 0); }
static void sys_yield(void) { sys3(SYS_sched_yield, 0, 0, 0); }
static long sys_tgkill(long pid, long tid, int sig) { return sys3(SYS_tgkill, pid, tid, sig); }
static long sys_rename(const char *a, const char *b) { return sys6(SYS_renameat, AT_FDCWD_, (long)a, AT_FDCWD_, (long)b, 0, 0); }
static void sys_unlink(const char *p) { sys3(SYS_unlinkat, AT_FDCWD_, p, 0); }

/* CLOCK_MONOTONIC in ns, by the system call (the vDSO is not reachable from
 * the audit namespace); for the report's timings only */
static long long
now_ns(void)
{
    long ts[2] = {0, 0};
    sys3(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, ts, 0);
    return ts[0] * 1000000000LL + ts[1];
}

static long long event_started_ns; /* set when an event's work begins */
static __attribute__((noreturn)) void
sys_exit_group(int code)
{
    for (;;)
        sys3(SYS_exit_group, code, 0, 0);
}

/* --- the few string functions; memcpy and friends because the compiler may
 * emit calls to them (hidden: never interposes the program's own) --------- */

__attribute__((optimize("no-tree-loop-distribute-patterns"))) void *
memcpy(void *d, const void *s, size_t n)
{
    unsigned char *dd = d;
    const unsigned char *ss = s;
    while (n--)
        *dd++ = *ss++;
    return d;
}

__attribute__((optimize("no-tree-loop-distribute-patterns"))) void *
memmove(void *d, const void *s, size_t n)
{
    unsigned char *dd = d;
    const unsigned char *ss = s;
    if (dd < ss)
        while (n--)
            *dd++ = *ss++;
    else
        while (n--)
            dd[n] = ss[n];
    return d;
}

__attribute__((optimize("no-tree-loop-distribute-patterns"))) void *
memset(void *d, int c, size_t n)
{
    unsigned char *dd = d;
    while (n--)
        *dd++ = (unsigned char)c;
    return d;
}

int
memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

static size_t
slen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int
starts(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return 0;
    return 1;
}

static int
str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

/* --- configuration --------------------------------------------------------- */

enum { LEVEL_CODE = 0, LEVEL_ALL = 1 };

static struct {
    int inited;
    int level;
    int marked_only;
    int inherit;
    int require;
    int report_fd;        /* -1: none */
    char report_path[512]; /* "" : none; may contain %p */
    int report_has_pid;
    long report_owner;     /* pid that owns a report path without %p */
    int mseal_errno;       /* 0: mseal works; else why not */
    unsigned long page;
    char libpath[512];     /* our own path, from the environment */
} cfg;

/* The initial stack: argc, argv[], NULL, envp[], NULL, auxv. ld.so exports
 * __libc_stack_end (GLIBC_2.2.5), set by _dl_sysdep_start to the address of
 * argc before audit modules are loaded (sysdeps/unix/sysv/linux/dl-sysdep.c).
 * The library has a DT_NEEDED on the loader so this resolves in the audit
 * namespace too (the loader is shared by all namespaces: no extra mapping). */
extern void *__libc_stack_end __attribute__((weak, visibility("default")));
/* declared as glibc 2.35+ defines it: struct r_debug_extended, whose r_next
 * chains the other namespaces once there are any (r_version is 1 while only
 * the base namespace exists, 2 after; elf/dl-debug.c _dl_debug_initialize) */
extern struct r_debug_extended sk_r_debug __asm__("_r_debug") __attribute__((weak, visibility("default")));

static char **
initial_envp(uintptr_t **auxv_out)
{
    if (&__libc_stack_end == NULL || __libc_stack_end == NULL)
        return NULL;
    long *sp = __libc_stack_end;
    long argc = sp[0];
    if (argc < 0 || argc > (1L << 24))
        return NULL;
    char **argv = (char **)(sp + 1);
    if (argv[argc] != NULL)
        return NULL;
    char **envp = argv + argc + 1;
    long n = 0;
    while (envp[n] != NULL)
        if (++n > (1L << 20))
            return NULL;
    if (auxv_out)
        *auxv_out = (uintptr_t *)(envp + n + 1);
    return envp;
}

static const char *
env_get(char **envp, const char *name)
{
    size_t len = slen(name);
    for (; envp && *envp; envp++)
        if (starts(*envp, name) && (*envp)[len] == '=')
            return *envp + len + 1;
    return NULL;
}

static long
parse_long(const char *s, int *ok)
{
    long v = 0;
    *ok = 0;
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (1L << 40))
            return 0;
        v = v * 10 + (*s - '0');
    }
    *ok = 1;
    return v;
}

static void
copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = slen(src);
    if (n >= cap) {
        dst[0] = 0;
        return;
    }
    memcpy(dst, src, n + 1);
}

static void
config_init(void)
{
    if (cfg.inited)
        return;
    cfg.inited = 1;
    cfg.level = LEVEL_CODE;
    cfg.inherit = 1;
    cfg.report_fd = -1;
    cfg.page = 4096;
    uintptr_t *auxv = NULL;
    char **envp = initial_envp(&auxv);
    for (uintptr_t *a = auxv; a && a[0] != AT_NULL; a += 2)
        if (a[0] == AT_PAGESZ && a[1] && (a[1] & (a[1] - 1)) == 0)
            cfg.page = a[1];
    const char *v;
    if ((v = env_get(envp, "SEALKIT_EXEC_LEVEL")) && v[0] == 'a')
        cfg.level = LEVEL_ALL;
    if ((v = env_get(envp, "SEALKIT_EXEC_MARKED_ONLY")) && v[0] == '1')
        cfg.marked_only = 1;
    if ((v = env_get(envp, "SEALKIT_EXEC_INHERIT")) && v[0] == '0')
        cfg.inherit = 0;
    if ((v = env_get(envp, "SEALKIT_EXEC_REQUIRE")) && v[0] == '1')
        cfg.require = 1;
    if ((v = env_get(envp, "SEALKIT_EXEC_LIB")))
        copy_str(cfg.libpath, sizeof cfg.libpath, v);
    if ((v = env_get(envp, "SEALKIT_EXEC_REPORT"))) {
        int ok;
        if (starts(v, "fd:")) {
            long fd = parse_long(v + 3, &ok);
            /* never the program's stdin, stdout or stderr */
            if (ok && fd > 2 && fd < (1L << 20))
                cfg.report_fd = (int)fd;
        } else if (v[0] == '/') {
            copy_str(cfg.report_path, sizeof cfg.report_path, v);
            for (const char *p = cfg.report_path; *p; p++)
                if (p[0] == '%' && p[1] == 'p')
                    cfg.report_has_pid = 1;
        }
    }
    /* the report file without %p belongs to this process (see report_claim) */
    cfg.report_owner = sys_getpid();
    /* mseal(0, 0, 0) is a no-op that fails exactly when sealing cannot
     * work: ENOSYS (kernel < 6.10, 32-bit) or EPERM (a seccomp filter). */
    long r = sys_mseal(0, 0);
    cfg.mseal_errno = r < 0 ? (int)-r : 0;
}

/* --- /proc/self/maps ---------------------------------------------------------- */

#define MAPS_BUF (2u << 20)
#define MAX_VMAS 32768

struct vma {
    uintptr_t start, end, offset;
    unsigned long inode;
    unsigned int major, minor;
    unsigned char prot; /* 1 r, 2 w, 4 x, 8 shared */
    unsigned short pathlen;
    const char *path;
};

static char maps_buf[MAPS_BUF];
static struct vma vmas[MAX_VMAS];
static int nvmas;

static const char *
hexfield(const char *p, const char *end, uintptr_t *out)
{
    uintptr_t v = 0;
    int any = 0;
    for (; p < end; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else
            break;
        v = (v << 4) | (uintptr_t)d;
        any = 1;
    }
    *out = v;
    return any ? p : NULL;
}

/* Read and parse /proc/self/maps. 0 on success, else a static reason. */
static const char *
maps_read(void)
{
    nvmas = 0;
    int fd = sys_open("/proc/self/maps", O_RDONLY_ | O_CLOEXEC_, 0);
    if (fd < 0)
        return "cannot open /proc/self/maps";
    size_t len = 0;
    for (;;) {
        if (len == MAPS_BUF) {
            sys_close(fd);
            return "/proc/self/maps larger than 2 MiB: nothing checked, nothing sealed";
        }
        long r = sys_read(fd, maps_buf + len, MAPS_BUF - len);
        if (r < 0) {
            sys_close(fd);
            return "cannot read /proc/self/maps";
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    sys_close(fd);
    const char *p = maps_buf, *end = maps_buf + len;
    while (p < end) {
        const char *eol = p;
        while (eol < end && *eol != '\n')
            eol++;
        if (nvmas == MAX_VMAS)
            return "more than 32768 mappings: nothing checked, nothing sealed";
        struct vma *v = &vmas[nvmas];
        uintptr_t x;
        const char *q = hexfield(p, eol, &v->start);
        if (!q || *q != '-' || !(q = hexfield(q + 1, eol, &v->end)) || *q != ' ' || eol - q < 6)
            return "unparsable /proc/self/maps";
        q++;
        v->prot = (q[0] == 'r' ? 1 : 0) | (q[1] == 'w' ? 2 : 0) | (q[2] == 'x' ? 4 : 0) | (q[3] == 's' ? 8 : 0);
        q += 5;
        if (!(q = hexfield(q, eol, &v->offset)) || *q != ' ')
            return "unparsable /proc/self/maps";
        if (!(q = hexfield(q + 1, eol, &x)) || *q != ':')
            return "unparsable /proc/self/maps";
        v->major = (unsigned int)x;
        if (!(q = hexfield(q + 1, eol, &x)) || *q != ' ')
            return "unparsable /proc/self/maps";
        v->minor = (unsigned int)x;
        q++;
        unsigned long inode = 0;
        while (q < eol && *q >= '0' && *q <= '9')
            inode = inode * 10 + (unsigned long)(*q++ - '0');
        v->inode = inode;
        while (q < eol && *q == ' ')
            q++;
        v->path = q;
        v->pathlen = (unsigned short)((eol - q) > 65535 ? 65535 : (eol - q));
        nvmas++;
        p = eol + 1;
    }
    return NULL;
}

static int
vma_index(uintptr_t addr)
{
    int lo = 0, hi = nvmas;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (vmas[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nvmas && vmas[lo].start <= addr ? lo : -1;
}

static int
vma_anonymous(const struct vma *v)
{
    /* zero-fill (.bss) pages: no file; glibc 2.40+ names them "[anon: glibc: .bss]" */
    return v->inode == 0 && (v->pathlen == 0 || (v->pathlen > 6 && starts(v->path, "[anon:")));
}

/* --- per-object planning -------------------------------------------------------- */

enum { K_TEXT, K_RODATA, K_RELRO, K_DATA, K_BSS, K_GAP, K_OBJECT, K_SYSTEM };
static const char *const KIND_NAMES[] = {"text", "rodata", "relro", "data", "bss", "gap", "object", "system"};
enum { B_FILE, B_ANON, B_ANY };
#define PERMS_ANY 0xff

struct piece {
    uintptr_t start, end, offset;
    unsigned char kind, perms, backing, shared_kind; /* shared_kind: 0xff none */
};

#define MAX_PIECES 160
#define MAX_RANGES 96

struct range {
    uintptr_t start, end;
    unsigned char kind, perms;
    unsigned char phase; /* for sealed: when; for skipped: unused */
    const char *reason;  /* skipped: why (static string), or NULL */
    unsigned short detail; /* skipped: /proc perms seen (prot bits) | 0x100 */
};

enum { PH_STARTUP, PH_CONSISTENT, PH_RETURNED, PH_LATER, PH_PROMOTED, PH_PRELOAD };
static const char *const PHASE_NAMES[] = {"startup", "consistent", "dlopen-return", "later-event", "nodelete-promotion", "preload-constructor"};

enum { BY_INITIAL, BY_AUDIT, BY_DLOPEN, BY_LIBC, BY_SELF };
static const char *const BY_NAMES[] = {"initial", "audit", "dlopen", "libc", "sealkit"};

struct obj {
    struct link_map *lm;  /* NULL for slots not in use */
    uintptr_t base, ld;
    long lmid;
    unsigned int event;   /* load event that brought it */
    unsigned char by;     /* BY_* */
    unsigned char direct; /* the object dlopen named (not a dependency) */
    unsigned char vdso;
    unsigned char inspected, ok, textrel, nodelete_flag, marked, marker_read, dyn_read;
    unsigned char wanted;  /* policy: seal it */
    unsigned char done;    /* nothing left to do */
    unsigned char dirty;   /* changed since last reported */
    unsigned char npending; /* RELRO pieces waiting to turn read-only */
    int dlmode;             /* dlopen mode seen by the wrapper, -1 unknown */
    int tid;                /* thread that loaded it */
    const char *policy;     /* why (not) wanted, static */
    const char *why_not;    /* object-level skip reason, static or NULL */
    uintptr_t dev_major, dev_minor, inode;
    unsigned char nranges, nskipped;
    struct range sealed[MAX_RANGES / 2];
    struct range skipped[MAX_RANGES / 2];
    struct piece pending[4];
};

#define MAX_OBJS 2048
static struct obj objs[MAX_OBJS];
static int nobjs_hint;         /* highest slot used + 1 */
static unsigned long untracked; /* objects seen when the table was full: never sealed */

static uintptr_t down(uintptr_t v) { return v & ~(cfg.page - 1); }
static uintptr_t up(uintptr_t v) { return (v + cfg.page - 1) & ~(cfg.page - 1); }

static unsigned char
pf_perms(uint32_t flags)
{
    return (flags & PF_R ? 1 : 0) | (flags & PF_W ? 2 : 0) | (flags & PF_X ? 4 : 0);
}

/* DT_TEXTREL / DF_TEXTREL and DF_1_NODELETE from the object's dynamic
 * section (l_ld: the loader parsed it when it mapped the object, so it is
 * mapped and readable); bounded. Needs no read of the maps. */
static void
read_dynamic(struct obj *o)
{
    if (o->dyn_read || !o->ld)
        return;
    o->dyn_read = 1;
    const ElfW(Dyn) *dyn = (const ElfW(Dyn) *)o->ld;
    for (int k = 0; k < 4096 && dyn[k].d_tag != DT_NULL; k++) {
        if (dyn[k].d_tag == DT_TEXTREL || (dyn[k].d_tag == DT_FLAGS && (dyn[k].d_un.d_val & DF_TEXTREL)))
            o->textrel = 1;
        if (dyn[k].d_tag == DT_FLAGS_1 && (dyn[k].d_un.d_val & DF_1_NODELETE))
            o->nodelete_flag = 1;
    }
}

static void
add_skip(struct obj *o, uintptr_t start, uintptr_t end, unsigned char kind, const char *reason, unsigned short detail)
{
    if (start >= end)
        return;
    o->dirty = 1;
    if (o->nskipped) {
        struct range *last = &o->skipped[o->nskipped - 1];
        if (last->end == start && last->kind == kind && last->reason == reason && last->detail == detail) {
            last->end = end;
            return;
        }
    }
    if (o->nskipped == MAX_RANGES / 2)
        return; /* bounded: the report says how many objects were truncated */
    struct range *r = &o->skipped[o->nskipped++];
    r->start = start;
    r->end = end;
    r->kind = kind;
    r->perms = 0;
    r->phase = 0;
    r->reason = reason;
    r->detail = detail;
}

static void
add_sealed(struct obj *o, uintptr_t start, uintptr_t end, unsigned char kind, unsigned char perms, unsigned char phase)
{
    o->dirty = 1;
    if (o->nranges) {
        struct range *last = &o->sealed[o->nranges - 1];
        if (last->end == start && last->kind == kind && last->perms == perms && last->phase == phase) {
            last->end = end;
            return;
        }
    }
    if (o->nranges == MAX_RANGES / 2)
        return;
    struct range *r = &o->sealed[o->nranges++];
    r->start = start;
    r->end = end;
    r->kind = kind;
    r->perms = perms;
    r->phase = phase;
    r->reason = 0;
    r->detail = 0;
}

/* Bounded reads of the object's own memory: only inside a readable VMA of
 * the object's file. */
static int
readable(uintptr_t addr, size_t len)
{
    int i = vma_index(addr);
    if (i < 0)
        return 0;
    uintptr_t end = addr + len;
    if (end < addr)
        return 0;
    while (i < nvmas && vmas[i].start <= addr) {
        if (!(vmas[i].prot & 1))
            return 0;
        if (vmas[i].end >= end)
            return 1;
        addr = vmas[i].end;
        i++;
    }
    return 0;
}

/* The loader's walk of PT_GNU_PROPERTY (glibc _dl_process_pt_gnu_property,
 * elf/dl-load.c; the same rules as sealkit.host.elf.walk_properties): only
 * 8-aligned segments, notes owned by "GNU" of type NT_GNU_PROPERTY_TYPE_0,
 * ascending property types; the marker is type 3 with pr_datasz 0. */
static int
has_marker(const ElfW(Phdr) *ph, uintptr_t bias)
{
    if (ph->p_align != 8 || ph->p_memsz > (1u << 16) || !readable(bias + ph->p_vaddr, ph->p_memsz))
        return 0;
    const unsigned char *p = (const unsigned char *)(bias + ph->p_vaddr);
    size_t size = ph->p_memsz, off = 0;
    uint32_t last = 0;
    while (off + 12 < size) {
        const uint32_t *nh = (const uint32_t *)(p + off);
        uint32_t namesz = nh[0], descsz = nh[1], type = nh[2];
        size_t desc = (off + 12 + namesz + 7) & ~(size_t)7;
        if (namesz == 4 && type == NT_GNU_PROPERTY_TYPE_0_ && memcmp(p + off + 12, "GNU", 4) == 0) {
            if (descsz < 8 || descsz % 8 || desc + descsz > size)
                return 0;
            size_t q = desc, end = desc + descsz;
            while (1) {
                const uint32_t *pr = (const uint32_t *)(p + q);
                uint32_t pr_type = pr[0], datasz = pr[1];
                if (pr_type < last)
                    return 0;
                q += 8;
                if (q + datasz > end)
                    return 0;
                last = pr_type;
                if (pr_type == GNU_PROPERTY_MEMORY_SEAL_ && datasz == 0)
                    return 1;
                q += (datasz + 7) & ~(size_t)7;
                if (end - q < 8)
                    break;
            }
        }
        off = desc + ((descsz + 7) & ~(size_t)7);
    }
    return 0;
}

/* Cut pieces at [lo, hi) and apply `set` (kind/perms, 0xff: keep) inside. */
static int
carve(struct piece *pc, int n, uintptr_t lo, uintptr_t hi, unsigned char kind, unsigned char perms)
{
    struct piece out[MAX_PIECES];
    int m = 0;
    for (int i = 0; i < n; i++) {
        struct piece a = pc[i];
        if (a.end <= lo || a.start >= hi) {
            if (m == MAX_PIECES)
                return -1;
            out[m++] = a;
            continue;
        }
        if (m + 3 > MAX_PIECES)
            return -1;
        if (a.start < lo) {
            out[m] = a;
            out[m].end = lo;
            m++;
        }
        struct piece in = a;
        in.start = a.start > lo ? a.start : lo;
        in.end = a.end < hi ? a.end : hi;
        if (a.backing == B_FILE)
            in.offset = a.offset + (in.start - a.start);
        if (kind != 0xff)
            in.kind = kind;
        if (perms != 0xff)
            in.perms = perms;
        out[m++] = in;
        if (a.end > hi) {
            out[m] = a;
            out[m].start = hi;
            if (a.backing == B_FILE)
                out[m].offset = a.offset + (hi - a.start);
            m++;
        }
    }
    memcpy(pc, out, (size_t)m * sizeof *pc);
    return m;
}

/* Locate the object's ELF header in memory: the mapping of offset 0 of the
 * file that holds its dynamic section, nearest below it. Fills o->inspected,
 * o->ok (or o->why_not), identity, and the pieces. */
static int
object_pieces(struct obj *o, struct piece *pc, int *npieces)
{
    *npieces = 0;
    if (o->ld == 0) {
        o->why_not = "no dynamic section: not an object the loader mapped";
        return 0;
    }
    int di = vma_index(o->ld);
    if (di < 0) {
        o->why_not = "its dynamic section is not mapped";
        return 0;
    }
    if (vmas[di].inode == 0) {
        if (vmas[di].pathlen && vmas[di].path[0] == '[') {
            o->vdso = 1;
            o->why_not = "system mapping (vDSO): sealed only by the kernel (CONFIG_MSEAL_SYSTEM_MAPPINGS)";
        } else {
            o->why_not = "its dynamic section is not mapped from a file";
        }
        return 0;
    }
    const struct vma *d = &vmas[di];
    int hi = -1;
    for (int i = di; i >= 0 && i >= di - 64; i--)
        if (vmas[i].inode == d->inode && vmas[i].major == d->major && vmas[i].minor == d->minor && vmas[i].offset == 0) {
            hi = i;
            break;
        }
    if (hi < 0 || !(vmas[hi].prot & 1)) {
        o->why_not = "its ELF header is not mapped readable";
        return 0;
    }
    const struct vma *h = &vmas[hi];
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)h->start;
    if (h->end - h->start < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phnum == 0 ||
        eh->e_phnum > 512 || eh->e_phoff > h->end - h->start ||
        eh->e_phnum * sizeof(ElfW(Phdr)) > h->end - h->start - eh->e_phoff) {
        o->why_not = "no valid ELF header and program headers at the start of its first mapping";
        return 0;
    }
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(h->start + eh->e_phoff);
    int n = eh->e_phnum;
    /* PT_LOAD in address order (the ELF spec requires it; sort anyway) */
    const ElfW(Phdr) *loads[64];
    int nl = 0;
    uintptr_t dyn_vaddr = 0;
    int has_dyn = 0;
    for (int i = 0; i < n; i++) {
        if (ph[i].p_type == PT_LOAD && ph[i].p_memsz) {
            if (nl == 64) {
                o->why_not = "more than 64 PT_LOAD segments";
                return 0;
            }
            int j = nl++;
            while (j > 0 && loads[j - 1]->p_vaddr > ph[i].p_vaddr) {
                loads[j] = loads[j - 1];
                j--;
            }
            loads[j] = &ph[i];
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn_vaddr = ph[i].p_vaddr;
            has_dyn = 1;
        }
    }
    if (nl == 0) {
        o->why_not = "no PT_LOAD segment";
        return 0;
    }
    uintptr_t bias = h->start - down(loads[0]->p_vaddr);
    if (bias != o->base || !has_dyn || bias + dyn_vaddr != o->ld || down(loads[0]->p_offset) != 0) {
        o->why_not = "program headers do not match where the loader says the object is";
        return 0;
    }
    o->dev_major = h->major;
    o->dev_minor = h->minor;
    o->inode = h->inode;
    read_dynamic(o);

    for (int i = 0; i < n; i++)
        if (ph[i].p_type == PT_GNU_PROPERTY && has_marker(&ph[i], bias))
            o->marked = 1;
    o->marker_read = 1;

    /* Mirrors glibc _dl_map_segments (elf/dl-map-segments.h): each PT_LOAD
     * maps the file from its page-rounded-down start to the page-rounded-up
     * end of p_filesz; anonymous zero-fill from there to the rounded-up end
     * of p_memsz (.bss). */
    int m = 0;
    for (int i = 0; i < nl; i++) {
        const ElfW(Phdr) *p = loads[i];
        uintptr_t start = bias + p->p_vaddr;
        uintptr_t lo = down(start), file_end = up(start + p->p_filesz), mem_end = up(start + p->p_memsz);
        unsigned char perms = pf_perms(p->p_flags);
        unsigned char kind = (p->p_flags & PF_X) ? K_TEXT : (p->p_flags & PF_W) ? K_DATA : K_RODATA;
        if (m + 2 > MAX_PIECES) {
            o->why_not = "too many pieces";
            return 0;
        }
        if (file_end > lo)
            pc[m++] = (struct piece){lo, file_end, p->p_offset - (start - lo), kind, perms, B_FILE, 0xff};
        uintptr_t zs = file_end > lo ? file_end : lo;
        if (mem_end > zs)
            pc[m++] = (struct piece){zs, mem_end, 0, (p->p_flags & PF_W) ? K_BSS : kind, perms, B_ANON, 0xff};
    }
    /* Pages two segments claim (max-page-size below the run-time page size):
     * which protection the page has is not something the headers say. */
    struct piece res[MAX_PIECES];
    int r = 0;
    for (int i = 0; i < m; i++) {
        struct piece cur = pc[i];
        int have = 1;
        while (have && r && cur.start < res[r - 1].end) {
            struct piece prev = res[--r];
            uintptr_t both_end = prev.end < cur.end ? prev.end : cur.end;
            if (r + 3 > MAX_PIECES) {
                o->why_not = "too many pieces";
                return 0;
            }
            if (prev.start < cur.start) {
                res[r] = prev;
                res[r].end = cur.start;
                r++;
            }
            struct piece sh = cur;
            sh.end = both_end;
            sh.perms = PERMS_ANY;
            sh.backing = B_ANY;
            sh.shared_kind = prev.kind;
            res[r++] = sh;
            if (prev.end > cur.end) {
                cur = prev;
                cur.offset = prev.backing == B_FILE ? prev.offset + (cur.end - prev.start) : 0;
                cur.start = both_end;
            } else if (cur.end > both_end) {
                cur.offset = cur.backing == B_FILE ? cur.offset + (both_end - cur.start) : 0;
                cur.start = both_end;
            } else {
                have = 0;
            }
        }
        if (have) {
            if (r == MAX_PIECES) {
                o->why_not = "too many pieces";
                return 0;
            }
            res[r++] = cur;
        }
    }
    /* Holes between segments: glibc maps them PROT_NONE (file or anonymous). */
    m = 0;
    for (int i = 0; i < r; i++) {
        if (m && res[i].start > pc[m - 1].end) {
            if (m == MAX_PIECES) {
                o->why_not = "too many pieces";
                return 0;
            }
            pc[m] = (struct piece){pc[m - 1].end, res[i].start, 0, K_GAP, 0, B_ANY, 0xff};
            m++;
        }
        if (m == MAX_PIECES) {
            o->why_not = "too many pieces";
            return 0;
        }
        pc[m++] = res[i];
    }
    /* RELRO: mprotected read-only by _dl_protect_relro (elf/dl-reloc.c) from
     * its start rounded down to its end rounded *down*; a last page shared
     * with writable data stays writable. */
    for (int i = 0; i < n; i++) {
        if (ph[i].p_type != PT_GNU_RELRO || !ph[i].p_memsz)
            continue;
        uintptr_t s = bias + ph[i].p_vaddr, e = s + ph[i].p_memsz;
        uintptr_t lo = down(s), hi2 = down(e);
        if (hi2 > lo && (m = carve(pc, m, lo, hi2, K_RELRO, 1)) < 0) {
            o->why_not = "too many pieces";
            return 0;
        }
        if (up(e) > (hi2 > lo ? hi2 : lo) && cfg.level == LEVEL_CODE)
            add_skip(o, hi2 > lo ? hi2 : lo, up(e), K_RELRO,
                     "RELRO ends inside this page, which it shares with writable data: the loader leaves it writable", 0);
    }
    /* The series' opt-out: PT_GNU_MUTABLE (and OpenBSD's PT_OPENBSD_MUTABLE)
     * ranges are never sealed; rounded outwards so no page of them is. */
    for (int i = 0; i < n; i++) {
        if ((ph[i].p_type != PT_GNU_MUTABLE_ && ph[i].p_type != PT_OPENBSD_MUTABLE_) || !ph[i].p_memsz)
            continue;
        uintptr_t s = bias + ph[i].p_vaddr, e = s + ph[i].p_memsz;
        if ((m = carve(pc, m, down(s), up(e), 0xff, 0xff)) < 0) {
            o->why_not = "too many pieces";
            return 0;
        }
        for (int k = 0; k < m; k++)
            if (pc[k].start >= down(s) && pc[k].end <= up(e))
                pc[k].shared_kind = 0xfe; /* marks "mutable" */
    }
    *npieces = m;
    return 1;
}

static const char REASON_RELRO_PENDING[] = "RELRO not yet read-only";

/* Why the VMA v at addr is not what the piece expects there, or NULL. The
 * rules of sealkit.sealing.hardening.plan._mismatch. */
static const char *
mismatch(const struct obj *o, const struct piece *p, const struct vma *v, uintptr_t addr)
{
    if ((v->prot & 2) && (v->prot & 4))
        return "mapped writable and executable: never sealed";
    if (v->prot & 8)
        return "a shared mapping, not the loader's private one";
    if (p->perms != PERMS_ANY && (v->prot & 7) != p->perms) {
        if (p->kind == K_RELRO && (v->prot & 2))
            return REASON_RELRO_PENDING;
        return "protection differs from the segment's";
    }
    int same_file = v->inode != 0 && v->inode == o->inode && v->major == o->dev_major && v->minor == o->dev_minor;
    if (p->backing == B_FILE) {
        if (!same_file)
            return "mapped from another file or anonymous memory, not from the object's file";
        if (v->offset + (addr - v->start) != p->offset + (addr - p->start))
            return "file offset differs from the segment's";
    } else if (p->backing == B_ANON) {
        if (!vma_anonymous(v))
            return "not anonymous zero-fill where the segment's .bss should be";
    } else if (!same_file && !vma_anonymous(v)) {
        return "neither the object's file nor zero-fill";
    }
    return NULL;
}

/* Ranges checked and ready to seal, sealed together by flush_seals(): the
 * ranges of one object are usually contiguous (rodata, text, rodata, RELRO),
 * and one mseal(2) may span several VMAs, so this makes one system call of
 * four. Everything was checked against one read of the maps with the
 * loader's lock held, so nothing changes between the check and the seal. */
#define MAX_BATCH 64
static struct {
    uintptr_t start, end;
    unsigned char kind, perms, phase;
} batch[MAX_BATCH];
static int nbatch;

static const char *
mseal_reason(long r)
{
    return r == -1 ? "mseal failed: EPERM" : r == -ENOSYS_ ? "mseal failed: ENOSYS" : r == -12 ? "mseal failed: ENOMEM" : r == -22 ? "mseal failed: EINVAL" : "mseal failed";
}

static void
flush_seals(struct obj *o)
{
    int i = 0;
    while (i < nbatch) {
        int j = i + 1;
        while (j < nbatch && batch[j].start == batch[j - 1].end)
            j++;
        long r = sys_mseal(batch[i].start, batch[j - 1].end - batch[i].start);
        for (int k = i; k < j; k++) {
            /* a failed run is retried range by range, to say which failed */
            long rk = r == 0 ? 0 : sys_mseal(batch[k].start, batch[k].end - batch[k].start);
            if (rk == 0)
                add_sealed(o, batch[k].start, batch[k].end, batch[k].kind, batch[k].perms, batch[k].phase);
            else
                add_skip(o, batch[k].start, batch[k].end, batch[k].kind, mseal_reason(rk), 0);
        }
        i = j;
    }
    nbatch = 0;
}

static void
to_seal(struct obj *o, uintptr_t start, uintptr_t end, unsigned char kind, unsigned char perms, unsigned char phase)
{
    if (nbatch == MAX_BATCH)
        flush_seals(o);
    batch[nbatch].start = start;
    batch[nbatch].end = end;
    batch[nbatch].kind = kind;
    batch[nbatch].perms = perms;
    batch[nbatch].phase = phase;
    nbatch++;
}

/* What a RELRO piece that is still writable means, by caller: RELRO_FINAL,
 * the object's relocation is known to be over (start-up, dlopen's return),
 * so its protection was changed afterwards: skipped; RELRO_MAY_WAIT, the
 * loader has not relocated it yet (la_activity before relocation on glibc
 * < 2.41): it goes to the pending list; RELRO_UNKNOWN, another thread's
 * dlopen may be relocating it (preload-only mode): skipped. */
enum { RELRO_FINAL, RELRO_MAY_WAIT, RELRO_UNKNOWN };

/* Check [p] against the maps just read and queue what matches. */
static void
seal_piece(struct obj *o, const struct piece *p, unsigned char phase, int relro_may_wait)
{
    uintptr_t addr = p->start;
    while (addr < p->end) {
        int i = vma_index(addr);
        if (i < 0) {
            int j = 0;
            while (j < nvmas && vmas[j].end <= addr)
                j++;
            uintptr_t stop = (j < nvmas && vmas[j].start < p->end) ? vmas[j].start : p->end;
            add_skip(o, addr, stop, p->kind, "not mapped", 0);
            addr = stop;
            continue;
        }
        const struct vma *v = &vmas[i];
        uintptr_t stop = v->end < p->end ? v->end : p->end;
        const char *why = mismatch(o, p, v, addr);
        if (why == REASON_RELRO_PENDING) {
            if (relro_may_wait == RELRO_MAY_WAIT && o->npending < 4) {
                struct piece w = *p;
                w.start = addr;
                w.end = stop;
                o->pending[o->npending++] = w;
            } else if (relro_may_wait == RELRO_FINAL) {
                add_skip(o, addr, stop, p->kind, "RELRO writable after relocation (its protection was changed): not sealed", (unsigned short)(v->prot | 0x100));
            } else {
                add_skip(o, addr, stop, p->kind, "RELRO not yet read-only (relocation not finished)", (unsigned short)(v->prot | 0x100));
            }
        } else if (why) {
            add_skip(o, addr, stop, p->kind, why, (unsigned short)(v->prot | 0x100));
        } else {
            to_seal(o, addr, stop, p->kind, v->prot & 7, phase);
        }
        addr = stop;
    }
}

/* Plan and seal one object. The maps must have been read. */
static void
seal_object(struct obj *o, unsigned char phase, int relro_may_wait)
{
    static struct piece pc[MAX_PIECES];
    int n = 0;
    o->inspected = 1;
    o->dirty = 1;
    if (!object_pieces(o, pc, &n)) {
        o->done = 1;
        return;
    }
    o->ok = 1;
    if (o->textrel) {
        o->why_not = "has DT_TEXTREL (the loader rewrites its text): never sealed";
        o->done = 1;
        return;
    }
    if (cfg.marked_only && !o->marked) {
        o->why_not = "no GNU_PROPERTY_MEMORY_SEAL marker (--marked-only)";
        o->done = 1;
        return;
    }
    if (!o->wanted) {
        o->done = 1;
        return;
    }
    if (cfg.mseal_errno) {
        o->why_not = cfg.mseal_errno == ENOSYS_ ? "mseal(2) not available (ENOSYS: Linux < 6.10 or 32-bit)"
                                               : "mseal(2) refused (EPERM: a seccomp filter?)";
        o->done = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const struct piece *p = &pc[i];
        if (p->shared_kind == 0xfe) {
            add_skip(o, p->start, p->end, p->kind, "PT_GNU_MUTABLE range: never sealed", 0);
            continue;
        }
        if (p->perms != PERMS_ANY && (p->perms & 2) && (p->perms & 4)) {
            add_skip(o, p->start, p->end, p->kind, "writable and executable segment: never sealed", 0);
            continue;
        }
        if (cfg.level == LEVEL_CODE) {
            if (p->kind != K_TEXT && p->kind != K_RODATA && p->kind != K_RELRO)
                continue;
            if (p->shared_kind != 0xff) {
                add_skip(o, p->start, p->end, p->kind, "page shared by two segments: its protection is ambiguous", 0);
                continue;
            }
        }
        seal_piece(o, p, phase, relro_may_wait);
    }
    flush_seals(o);
    o->done = o->npending == 0;
}

/* Pending RELRO pieces: seal those now read-only. Maps must be fresh. */
static int
seal_pending(struct obj *o, unsigned char phase, int last_chance)
{
    int any = 0;
    struct piece keep[4];
    int k = 0;
    for (int i = 0; i < o->npending; i++) {
        struct piece *p = &o->pending[i];
        int vi = vma_index(p->start);
        if (vi >= 0 && (vmas[vi].prot & 2) && !last_chance) {
            keep[k++] = *p;
            continue;
        }
        seal_piece(o, p, phase, RELRO_FINAL);
        any = 1;
    }
    flush_seals(o);
    memcpy(o->pending, keep, sizeof keep);
    o->npending = (unsigned char)k;
    o->done = k == 0;
    return any;
}

/* --- the report ----------------------------------------------------------------- */

#define LOG_CAP (2u << 20)
#define LINE_CAP (512u << 10)
static char log_buf[LOG_CAP];
static size_t log_len;
static int log_dropped;
static char line[LINE_CAP];
static size_t line_len;
static int line_over;
static unsigned int seq;
static long startup_pid;

static void
out(const char *s, size_t n)
{
    if (line_len + n > LINE_CAP - 64) {
        line_over = 1;
        return;
    }
    memcpy(line + line_len, s, n);
    line_len += n;
}
static void outs(const char *s) { out(s, slen(s)); }
static void
outu(uintptr_t v)
{
    char b[24];
    int i = 24;
    do
        b[--i] = (char)('0' + v % 10);
    while ((v /= 10) && i);
    out(b + i, (size_t)(24 - i));
}
static void
outi(long v)
{
    if (v < 0) {
        outs("-");
        outu((uintptr_t)-v);
    } else {
        outu((uintptr_t)v);
    }
}

/* JSON string; bytes that are not valid UTF-8 become \udcXX (Python's
 * surrogateescape: json.loads then os.fsencode gives the bytes back). */
static void
outstr(const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    outs("\"");
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            out(e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            out(e, 6);
            i++;
        } else if (c < 0x80) {
            out((const char *)&c, 1);
            i++;
        } else {
            size_t len = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
            int valid = len && i + len <= n;
            for (size_t k = 1; valid && k < len; k++)
                valid = ((unsigned char)s[i + k] & 0xc0) == 0x80;
            if (valid) {
                out(s + i, len);
                i += len;
            } else {
                char e[6] = {'\\', 'u', 'd', 'c', hex[c >> 4], hex[c & 15]};
                out(e, 6);
                i++;
            }
        }
    }
    outs("\"");
}

static const char *
perm_str(unsigned char p)
{
    static const char *const t[] = {"---", "r--", "-w-", "rw-", "--x", "r-x", "-wx", "rwx"};
    return t[p & 7];
}

static void
path_of(const struct obj *o, const char **p, size_t *n)
{
    /* the file as /proc/self/maps names it (the mapping of its dynamic
     * section), else the loader's name */
    int i = o->inode && o->ld ? vma_index(o->ld) : -1;
    if (i >= 0 && vmas[i].inode == o->inode) {
        *p = vmas[i].path;
        *n = vmas[i].pathlen;
        return;
    }
    const char *name = o->lm && o->lm->l_name ? o->lm->l_name : "";
    *p = name;
    *n = slen(name);
}

static void
out_object(const struct obj *o)
{
    const char *path;
    size_t plen;
    path_of(o, &path, &plen);
    outs("{\"path\":");
    outstr(path, plen);
    outs(",\"name\":");
    const char *name = o->lm && o->lm->l_name ? o->lm->l_name : "";
    outstr(name, slen(name));
    outs(",\"base\":");
    outu(o->base);
    outs(",\"namespace\":");
    outi(o->lmid);
    outs(",\"loaded_by\":\"");
    outs(BY_NAMES[o->by]);
    outs("\",\"dlopen_mode\":");
    outi(o->dlmode);
    outs(",\"marked\":");
    outs(o->marker_read ? (o->marked ? "true" : "false") : "null");
    outs(",\"sealing\":");
    outs(o->wanted ? "true" : "false");
    outs(",\"policy\":");
    outstr(o->policy ? o->policy : "", slen(o->policy ? o->policy : ""));
    if (o->why_not) {
        outs(",\"not_sealed\":");
        outstr(o->why_not, slen(o->why_not));
    }
    outs(",\"sealed\":[");
    for (int i = 0; i < o->nranges; i++) {
        const struct range *r = &o->sealed[i];
        outs(i ? ",{\"start\":" : "{\"start\":");
        outu(r->start);
        outs(",\"end\":");
        outu(r->end);
        outs(",\"kind\":\"");
        outs(KIND_NAMES[r->kind]);
        outs("\",\"perms\":\"");
        outs(perm_str(r->perms));
        outs("\",\"phase\":\"");
        outs(PHASE_NAMES[r->phase]);
        outs("\"}");
    }
    outs("],\"skipped\":[");
    for (int i = 0; i < o->nskipped; i++) {
        const struct range *r = &o->skipped[i];
        outs(i ? ",{\"start\":" : "{\"start\":");
        outu(r->start);
        outs(",\"end\":");
        outu(r->end);
        outs(",\"kind\":\"");
        outs(KIND_NAMES[r->kind]);
        outs("\",\"reason\":");
        outstr(r->reason, slen(r->reason));
        if (r->detail & 0x100) {
            outs(",\"seen\":\"");
            outs(perm_str((unsigned char)r->detail));
            outs((r->detail & 8) ? "s\"" : "p\"");
        }
        outs("}");
    }
    outs("],\"pending\":[");
    for (int i = 0; i < o->npending; i++) {
        outs(i ? ",{\"start\":" : "{\"start\":");
        outu(o->pending[i].start);
        outs(",\"end\":");
        outu(o->pending[i].end);
        outs(",\"kind\":\"relro\"}");
    }
    outs("]}");
}

static void
report_write_file(void)
{
    /* path with %p: this process's own file; without: only the process that
     * wrote the start-up report (a forked child would overwrite it) */
    long pid = sys_getpid();
    if (!cfg.report_has_pid && pid != cfg.report_owner)
        return;
    char path[600], tmp[640];
    size_t n = 0;
    for (const char *p = cfg.report_path; *p && n < sizeof path - 24; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            char b[24];
            int i = 24;
            long v = pid;
            do
                b[--i] = (char)('0' + v % 10);
            while ((v /= 10) && i);
            memcpy(path + n, b + i, (size_t)(24 - i));
            n += (size_t)(24 - i);
            p++;
        } else {
            path[n++] = *p;
        }
    }
    path[n] = 0;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp-sealkit", 13);
    int fd = sys_open(tmp, O_WRONLY_ | O_CREAT_ | O_TRUNC_ | O_NOFOLLOW_ | O_CLOEXEC_, 0600);
    if (fd < 0)
        return;
    long r = sys_write_all(fd, log_buf, log_len);
    sys_close(fd);
    if (r != 0 || sys_rename(tmp, path) != 0)
        sys_unlink(tmp);
}

/* One JSON line per event: appended to the in-memory log; the file is
 * rewritten atomically (write, rename); an fd gets the new line. */
static void
report_event(const char *event)
{
    if (cfg.report_fd < 0 && !cfg.report_path[0]) {
        for (int i = 0; i < nobjs_hint; i++)
            objs[i].dirty = 0;
        return;
    }
    line_len = 0;
    line_over = 0;
    outs("{\"schema\":\"sealkit.exec/1\",\"pid\":");
    outi(sys_getpid());
    outs(",\"seq\":");
    outu(seq++);
    outs(",\"event\":\"");
    outs(event);
    outs("\",\"level\":\"");
    outs(cfg.level == LEVEL_ALL ? "all" : "code");
    outs("\",\"marked_only\":");
    outs(cfg.marked_only ? "true" : "false");
    outs(",\"page_size\":");
    outu(cfg.page);
    outs(",\"work_us\":");
    outu((uintptr_t)((now_ns() - event_started_ns) / 1000));
    if (cfg.mseal_errno) {
        outs(",\"mseal_errno\":");
        outi(cfg.mseal_errno);
    }
    outs(",\"objects\":[");
    int first = 1, omitted = 0;
    for (int i = 0; i < nobjs_hint; i++) {
        struct obj *o = &objs[i];
        if ((!o->lm && !o->base) || !o->dirty)
            continue;
        o->dirty = 0;
        size_t mark = line_len;
        if (!first)
            outs(",");
        out_object(o);
        if (line_over) {
            line_len = mark;
            line_over = 0;
            omitted++;
            continue;
        }
        first = 0;
    }
    outs("],\"omitted_objects\":");
    outu((uintptr_t)omitted);
    outs(",\"untracked_objects\":");
    outu(untracked);
    outs(",\"dropped_lines\":");
    outu((uintptr_t)log_dropped);
    outs("}\n");
    if (log_len + line_len <= LOG_CAP) {
        memcpy(log_buf + log_len, line, line_len);
        log_len += line_len;
    } else {
        log_dropped++;
    }
    if (cfg.report_fd >= 0)
        sys_write_all(cfg.report_fd, line, line_len);
    if (cfg.report_path[0])
        report_write_file();
}

/* --- state shared by the loader callbacks and the dlopen wrapper ---------------- */

static volatile int lock_word; /* 0 free, else the owner's tid */

static void
lock(void)
{
    long tid = sys_gettid();
    unsigned spins = 0;
    for (;;) {
        int expected = 0;
        if (__atomic_compare_exchange_n(&lock_word, &expected, (int)tid, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return;
        if (++spins % 64 == 0) {
            /* After fork() the owner may be a thread that does not exist in
             * this process: then take the lock over. */
            int owner = __atomic_load_n(&lock_word, __ATOMIC_RELAXED);
            if (owner && sys_tgkill(sys_getpid(), owner, 0) == -3 /* ESRCH */)
                __atomic_compare_exchange_n(&lock_word, &owner, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
            sys_yield();
        }
    }
}
static void unlock(void) { __atomic_store_n(&lock_word, 0, __ATOMIC_RELEASE); }

/* dlopen modes noted by the wrapper, per thread (a bounded table) */
#define MAX_THREADS 256
static struct {
    int tid, mode, armed;
} modes[MAX_THREADS];

static unsigned int event_no;      /* current load event */
static int event_open;             /* between LA_ACT_ADD and LA_ACT_CONSISTENT */
static int event_mode;             /* dlopen mode of the current event, -1: not seen */
static int event_first;            /* the next objopen is the directly opened object */
static int started;                /* start-up sweep done */
static int any_pending;

static struct obj *
obj_find(struct link_map *lm)
{
    for (int i = 0; i < nobjs_hint; i++)
        if (objs[i].lm == lm)
            return &objs[i];
    return NULL;
}

static struct obj *
obj_find_base(uintptr_t base, uintptr_t ld)
{
    for (int i = 0; i < nobjs_hint; i++)
        if ((objs[i].lm || objs[i].base) && objs[i].base == base && objs[i].ld == ld)
            return &objs[i];
    return NULL;
}

static struct obj *
obj_new(void)
{
    for (int i = 0; i < MAX_OBJS; i++)
        if (!objs[i].lm && !objs[i].base) {
            memset(&objs[i], 0, sizeof objs[i]);
            if (i + 1 > nobjs_hint)
                nobjs_hint = i + 1;
            return &objs[i];
        }
    untracked++;
    return NULL;
}

static int
is_nss_or_libgcc(const char *name)
{
    const char *base = name;
    for (const char *p = name; *p; p++)
        if (*p == '/')
            base = p + 1;
    return starts(base, "libnss_") || starts(base, "libgcc_s.so");
}

/* Decide, for an object of the current event, whether to seal it. */
static void
decide(struct obj *o, struct obj *direct)
{
    read_dynamic(o);
    if (direct)
        read_dynamic(direct);
    if (o->by == BY_INITIAL || o->by == BY_AUDIT || o->by == BY_SELF) {
        o->wanted = 1;
        o->policy = o->by == BY_INITIAL ? "loaded at start-up" : "audit module: never unloaded";
        return;
    }
    if (cfg.level == LEVEL_ALL) {
        o->wanted = 1;
        o->policy = "--level all: every loaded object (dlclose then leaks its mapping)";
        return;
    }
    if (o->dlmode >= 0 && (o->dlmode & RTLD_NODELETE_)) {
        o->wanted = 1;
        o->policy = "dlopen with RTLD_NODELETE: never unloaded";
        return;
    }
    if (o->nodelete_flag) {
        o->wanted = 1;
        o->policy = "linked -z nodelete: never unloaded";
        return;
    }
    if (direct && direct->nodelete_flag) {
        o->wanted = 1;
        o->policy = "loaded with an object linked -z nodelete: never unloaded";
        return;
    }
    if (o->by == BY_LIBC && direct && direct->lm && direct->lm->l_name && is_nss_or_libgcc(direct->lm->l_name)) {
        o->wanted = 1;
        o->policy = "loaded by libc for NSS or thread cancellation: libc never unloads it";
        return;
    }
    o->wanted = 0;
    o->policy = o->by == BY_LIBC ? "loaded by libc or by a dlopen the wrapper did not see: may be unloaded, sealed only with --level all"
                                 : "dlopen without RTLD_NODELETE: may be unloaded, sealed only with --level all";
}

/* Everything sealed at start-up: called from la_activity(CONSISTENT) of the
 * base namespace the first time, with the loader's lock held. */
static void
startup_sweep(unsigned char phase)
{
    event_started_ns = now_ns();
    const char *why = maps_read();
    /* the audit instance itself and other auditors' objects: la_objopen is
     * not called for audit namespaces; glibc lists every namespace in
     * _r_debug (r_version 2: struct r_debug_extended, glibc 2.35+). */
    if (&sk_r_debug != NULL && sk_r_debug.base.r_version >= 1) {
        const struct r_debug_extended *r = &sk_r_debug;
        long ns = 0;
        for (; r; r = sk_r_debug.base.r_version >= 2 ? r->r_next : NULL, ns++) {
            for (struct link_map *l = r->base.r_map; l; l = l->l_next) {
                if (obj_find(l) || obj_find_base(l->l_addr, (uintptr_t)l->l_ld))
                    continue;
                struct obj *o = obj_new();
                if (!o)
                    break;
                o->lm = l;
                o->base = l->l_addr;
                o->ld = (uintptr_t)l->l_ld;
                o->lmid = ns;
                o->by = ns == 0 ? BY_INITIAL : BY_AUDIT;
                o->dlmode = -1;
            }
            if (ns > 64)
                break;
        }
    }
    for (int i = 0; i < nobjs_hint; i++) {
        struct obj *o = &objs[i];
        if (!o->lm || o->inspected)
            continue;
        decide(o, NULL);
        if (why) {
            o->inspected = 1;
            o->why_not = why;
            o->dirty = 1;
            o->done = 1;
            continue;
        }
        seal_object(o, phase, RELRO_FINAL);
    }
    started = 1;
    startup_pid = sys_getpid();
    cfg.report_owner = startup_pid;
    report_event("startup");
}

/* Seal every pending RELRO that is now read-only (or, last_chance, report
 * why not). Maps are read only when something is pending. */
static void
sweep_pending(unsigned char phase, int final_for_tid)
{
    if (!any_pending)
        return;
    event_started_ns = now_ns();
    if (maps_read())
        return;
    int left = 0, changed = 0;
    for (int i = 0; i < nobjs_hint; i++) {
        struct obj *o = &objs[i];
        if (!o->lm || !o->npending)
            continue;
        /* a load made by this very thread has completed: what is still
         * writable will stay so (another thread's load may be mid-way) */
        changed |= seal_pending(o, phase, final_for_tid && o->tid == final_for_tid);
        left += o->npending;
    }
    any_pending = left != 0;
    if (changed)
        report_event("relro");
}

/* --- --no-inherit: strip our variables from the environment in place --------- */

static int
remove_token(char *value, const char *token)
{
    /* value is "a:b:c" (LD_PRELOAD also allows spaces); remove `token` */
    size_t tl = slen(token);
    char *p = value;
    int removed = 0;
    while (*p) {
        char *s = p;
        while (*p && *p != ':' && *p != ' ')
            p++;
        size_t len = (size_t)(p - s);
        if (len == tl && memcmp(s, token, tl) == 0) {
            char *rest = *p ? p + 1 : p;
            memmove(s, rest, slen(rest) + 1);
            p = s;
            removed = 1;
            continue;
        }
        if (*p)
            p++;
    }
    size_t n = slen(value);
    while (n && (value[n - 1] == ':' || value[n - 1] == ' '))
        value[--n] = 0;
    return removed;
}

static void
strip_environment(void)
{
    char **envp = initial_envp(NULL);
    if (!envp)
        return;
    char **w = envp;
    for (char **r = envp; *r; r++) {
        char *e = *r;
        if (starts(e, "SEALKIT_EXEC_"))
            continue;
        if (cfg.libpath[0] && (starts(e, "LD_PRELOAD=") || starts(e, "LD_AUDIT="))) {
            char *value = e + (e[3] == 'P' ? 11 : 9);
            remove_token(value, cfg.libpath);
            if (!*value)
                continue;
        }
        *w++ = e;
    }
    *w = NULL;
}

static void audit_self_register(void);

/* A report FILE without %p is this process's: remove SEALKIT_EXEC_REPORT
 * from the environment it passes on, so that the programs it executes (new
 * images, which would each claim the file) do not overwrite it. */
static void
report_claim(void)
{
    if (!cfg.report_path[0] || cfg.report_has_pid)
        return;
    char **envp = initial_envp(NULL);
    if (!envp)
        return;
    char **w = envp;
    for (char **r = envp; *r; r++)
        if (!starts(*r, "SEALKIT_EXEC_REPORT="))
            *w++ = *r;
    *w = NULL;
}

/* --- rtld-audit interface (the audit instance) -------------------------------- */

__attribute__((visibility("default"))) unsigned int
la_version(unsigned int version)
{
    config_init();
    audit_self_register();
    /* version 1 is accepted by every glibc with auditing (LAV_CURRENT is 1
     * before glibc 2.35, 2 since); this module needs nothing newer */
    return version >= 1 ? 1 : 0;
}

static void introduce_to_preload(struct link_map *map, Lmid_t lmid);

__attribute__((visibility("default"))) unsigned int
la_objopen(struct link_map *map, Lmid_t lmid, uintptr_t *cookie)
{
    if (!started)
        introduce_to_preload(map, lmid);
    lock();
    struct obj *o = obj_new();
    if (o) {
        o->lm = map;
        o->base = map->l_addr;
        o->ld = (uintptr_t)map->l_ld;
        o->lmid = lmid;
        o->event = event_no;
        o->dlmode = started ? event_mode : -1;
        o->by = !started ? BY_INITIAL : event_mode >= 0 ? BY_DLOPEN : BY_LIBC;
        o->direct = started && event_first;
        o->tid = (int)sys_gettid();
        event_first = 0;
        *cookie = (uintptr_t)o;
    }
    unlock();
    /* 0: no symbol binding is audited (no la_symbind, no PLT hooks: the
     * loader keeps its fast paths). la_symbind64 would not give a moment to
     * seal the RELRO of libc's own loads either: their bindings all happen
     * during relocation, before RELRO is protected
     * (test_la_symbind_gives_no_moment_after_relro_for_libcs_own_loads). */
    return 0;
}

/* An object is being unloaded (dlclose, or at exit from _dl_fini): forget
 * it; its link_map may be reused. */
__attribute__((visibility("default"))) unsigned int
la_objclose(uintptr_t *cookie)
{
    lock();
    struct obj *o = (struct obj *)*cookie;
    if (o >= objs && o < objs + MAX_OBJS && ((uintptr_t)o - (uintptr_t)objs) % sizeof *o == 0)
        memset(o, 0, sizeof *o);
    unlock();
    return 0;
}

__attribute__((visibility("default"))) void
la_activity(uintptr_t *cookie, unsigned int flag)
{
    (void)cookie;
    lock();
    if (flag == LA_ACT_ADD) {
        event_no++;
        event_open = 1;
        event_first = 1;
        event_mode = -1;
        if (started) {
            int tid = (int)sys_gettid();
            for (int i = 0; i < MAX_THREADS; i++)
                if (modes[i].tid == tid && modes[i].armed) {
                    event_mode = modes[i].mode;
                    modes[i].armed = 0;
                    break;
                }
        }
        sweep_pending(PH_LATER, 0);
    } else if (flag == LA_ACT_DELETE) {
        sweep_pending(PH_LATER, 0);
    } else if (flag == LA_ACT_CONSISTENT) {
        if (!started) {
            if (cfg.require && cfg.mseal_errno) {
                static const char msg[] = "sealkit exec: cannot seal this program: mseal(2) is not available here (--require sealed)\n";
                report_event("refused");
                report_claim();
                sys_write_all(2, msg, sizeof msg - 1);
                sys_exit_group(127);
            }
            startup_sweep(PH_STARTUP);
            report_claim();
            if (!cfg.inherit)
                strip_environment();
        } else if (event_open) {
            event_started_ns = now_ns();
            const char *why = NULL;
            int maps_done = 0;
            struct obj *direct = NULL;
            for (int i = 0; i < nobjs_hint; i++)
                if (objs[i].lm && objs[i].event == event_no && objs[i].direct)
                    direct = &objs[i];
            int any = 0;
            for (int i = 0; i < nobjs_hint; i++) {
                struct obj *o = &objs[i];
                if (!o->lm || o->event != event_no || o->inspected)
                    continue;
                any = 1;
                decide(o, direct);
                if (!o->wanted && cfg.report_fd < 0 && !cfg.report_path[0]) {
                    /* not to be sealed, and no report to describe it in:
                     * not inspected either (no read of the maps) */
                    o->inspected = 1;
                    o->done = 1;
                    o->dirty = 1;
                    continue;
                }
                if (!maps_done) {
                    why = maps_read();
                    maps_done = 1;
                }
                if (why) {
                    o->inspected = 1;
                    o->why_not = why;
                    o->dirty = 1;
                    o->done = 1;
                    continue;
                }
                seal_object(o, PH_CONSISTENT, RELRO_MAY_WAIT);
                if (o->npending)
                    any_pending = 1;
            }
            if (any)
                report_event("load");
        }
        event_open = 0;
    }
    unlock();
}

__attribute__((visibility("default"))) void
la_preinit(uintptr_t *cookie)
{
    (void)cookie;
    lock();
    sweep_pending(PH_LATER, 0);
    unlock();
}

/* --- the bridge: the preload instance calls into the audit instance ---------- */

struct bridge {
    unsigned int magic;
    void (*note_mode)(int mode);
    void (*after_dlopen)(struct link_map *handle_map, int mode);
    int (*active)(void);
};

static void
api_note_mode(int mode)
{
    int tid = (int)sys_gettid();
    lock();
    int slot = -1;
    for (int i = 0; i < MAX_THREADS; i++) {
        if (modes[i].tid == tid) {
            slot = i;
            break;
        }
        if (slot < 0 && !modes[i].armed)
            slot = i;
    }
    if (slot >= 0) {
        modes[slot].tid = tid;
        modes[slot].mode = mode;
        modes[slot].armed = 1;
    }
    unlock();
}

/* After the real dlopen returned (called under dl_iterate_phdr's lock, so
 * no dlclose can unmap meanwhile). Seals pending RELRO; promotes an object
 * made NODELETE by this call (RTLD_NODELETE on an already loaded object). */
static void
api_after_dlopen(struct link_map *map, int mode)
{
    int tid = (int)sys_gettid();
    lock();
    for (int i = 0; i < MAX_THREADS; i++)
        if (modes[i].tid == tid)
            modes[i].armed = 0;
    sweep_pending(PH_RETURNED, tid);
    if (map && (mode & RTLD_NODELETE_) && cfg.level == LEVEL_CODE) {
        struct obj *o = obj_find(map);
        event_started_ns = now_ns();
        if (o && !o->wanted && !o->why_not && !maps_read()) {
            o->wanted = 1;
            o->policy = "made RTLD_NODELETE by a later dlopen: never unloaded";
            o->nranges = o->nskipped = 0;
            seal_object(o, PH_PROMOTED, RELRO_FINAL);
            report_event("nodelete");
        }
    }
    unlock();
}

static int api_active(void) { return started; }

static const struct bridge the_bridge = {0x5ea1e8ecu, api_note_mode, api_after_dlopen, api_active};

/* The audit instance finds itself: it is not reported to its own la_objopen.
 * __ehdr_start and _DYNAMIC are provided by the linker. */
extern const ElfW(Ehdr) __ehdr_start;
extern ElfW(Dyn) _DYNAMIC[];
extern const char __etext[]; /* the end of .text (the linker's default script provides it) */

/* Whether the object mapped at `base` is this very library: byte for byte
 * the same from its ELF header to the end of its code. Identical code at
 * identical offsets also means identical offsets of its variables (the code
 * addresses them relative to itself), which the two instances rely on to
 * reach each other. The object is mapped (reported by the loader), and both
 * ranges are its first two PT_LOAD segments, readable. */
static int
same_image(uintptr_t base)
{
    size_t len = (size_t)((uintptr_t)__etext - (uintptr_t)&__ehdr_start);
    return base != 0 && base != (uintptr_t)&__ehdr_start && memcmp((const void *)base, &__ehdr_start, len) == 0;
}

static struct link_map self_map;

/* Where the preload instance finds the audit instance: this instance writes
 * &the_bridge into the preload instance's copy of this variable when the
 * loader reports the preload to la_objopen (mapped, not yet relocated; the
 * variable is in .bss, which relocation does not touch). Works on every
 * glibc with auditing, unlike the _r_debug walk below, which needs the
 * namespace chain of glibc 2.35+. */
static const struct bridge *bridge_slot;

static int
same_file_name(const char *name)
{
    if (!name || !name[0])
        return 0;
    if (cfg.libpath[0])
        return str_eq(name, cfg.libpath);
    const char *base = name;
    for (const char *p = name; *p; p++)
        if (*p == '/')
            base = p + 1;
    return str_eq(base, "libsealexec.so");
}

static void
introduce_to_preload(struct link_map *map, Lmid_t lmid)
{
    if (lmid != LM_ID_BASE || !same_file_name(map->l_name) || !same_image((uintptr_t)map->l_addr))
        return;
    uintptr_t off = (uintptr_t)&bridge_slot - (uintptr_t)&__ehdr_start;
    __atomic_store_n((const struct bridge **)(map->l_addr + off), &the_bridge, __ATOMIC_RELEASE);
}

static void
audit_self_register(void)
{
    struct obj *o = obj_new();
    if (o) {
        self_map.l_addr = (ElfW(Addr))&__ehdr_start;
        self_map.l_name = cfg.libpath[0] ? cfg.libpath : (char *)"libsealexec.so";
        self_map.l_ld = _DYNAMIC;
        o->lm = &self_map;
        o->base = self_map.l_addr;
        o->ld = (uintptr_t)_DYNAMIC;
        o->lmid = -1;
        o->by = BY_SELF;
        o->dlmode = -1;
    }
}

/* Exported so the preload instance can find the audit instance. */
__attribute__((visibility("default"))) const struct bridge *
sealkit_exec_bridge(void)
{
    return cfg.inited ? &the_bridge : NULL;
}

/* --- the preload instance: dlopen and dlmopen ----------------------------------- */

extern void *dlsym(void *handle, const char *name) __attribute__((weak, visibility("default")));
extern int dl_iterate_phdr(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data) __attribute__((weak, visibility("default")));
extern int dladdr1(const void *addr, Dl_info *info, void **extra, int flags) __attribute__((weak, visibility("default")));

static void *(*real_dlopen)(const char *, int);
static void *(*real_dlmopen)(Lmid_t, const char *, int);
static const struct bridge *bridge;
static int bridge_looked;


/* The preload instance finds the audit instance: dl_iterate_phdr reports
 * only the caller's namespace (elf/dl-iteratephdr.c), so walk every
 * namespace through ld.so's _r_debug (struct r_debug_extended, r_version 2
 * once there is a second namespace, glibc 2.35+). The audit instance is the object of another namespace with
 * our file name whose ELF and program headers are byte for byte ours: the
 * same library, so our accessor sits at the same offset in it. */
static const struct bridge *
find_bridge(void)
{
    if (&sk_r_debug == NULL || sk_r_debug.base.r_version < 2)
        return NULL;
    uintptr_t own_base = (uintptr_t)&__ehdr_start;
    const char *own_name = NULL;
    for (struct link_map *l = sk_r_debug.base.r_map; l; l = l->l_next)
        if ((uintptr_t)l->l_addr == own_base)
            own_name = l->l_name;
    if (!own_name)
        return NULL;
    const struct r_debug_extended *r = (&sk_r_debug)->r_next;
    for (int ns = 1; r && ns < 64; r = r->r_next, ns++)
        for (struct link_map *l = r->base.r_map; l; l = l->l_next) {
            if (!str_eq(l->l_name, own_name) || !same_image((uintptr_t)l->l_addr))
                continue;
            uintptr_t off = (uintptr_t)&sealkit_exec_bridge - own_base;
            const struct bridge *(*get)(void) = (const struct bridge *(*)(void))(l->l_addr + off);
            const struct bridge *b = get();
            if (b && b->magic == the_bridge.magic)
                return b;
        }
    return NULL;
}

static const struct bridge *
get_bridge(void)
{
    const struct bridge *introduced = __atomic_load_n(&bridge_slot, __ATOMIC_ACQUIRE);
    if (introduced && introduced->magic == the_bridge.magic)
        return introduced;
    if (__atomic_load_n(&bridge_looked, __ATOMIC_ACQUIRE))
        return bridge;
    bridge = find_bridge();
    __atomic_store_n(&bridge_looked, 1, __ATOMIC_RELEASE);
    return bridge;
}

static void
resolve_real(void)
{
    if (!real_dlopen && dlsym) {
        void *f = dlsym((void *)-1l /* RTLD_NEXT */, "dlopen");
        __atomic_store_n(&real_dlopen, (void *(*)(const char *, int))f, __ATOMIC_RELEASE);
    }
    if (!real_dlmopen && dlsym) {
        void *f = dlsym((void *)-1l, "dlmopen");
        __atomic_store_n(&real_dlmopen, (void *(*)(Lmid_t, const char *, int))f, __ATOMIC_RELEASE);
    }
}

/* Whether calling the real dlopen from here (instead of jumping to it with
 * the caller's return address) resolves `file` exactly as for the caller.
 * glibc uses the caller's object for: the namespace (ours is the same: the
 * preload is only in the base namespace), $ORIGIN and other DSTs (so: no
 * '$'), and the search path of a name without '/' (the caller's DT_RUNPATH,
 * DT_RPATH, DF_1_NODEFLIB) and, through l_loader, the DT_RPATH chain of the
 * new object's dependencies (elf/dl-load.c _dl_map_object). So: no '$', and
 * no loaded object has DT_RPATH, and for a bare name the caller has no
 * DT_RUNPATH and no DF_1_NODEFLIB. */
static int rpath_anywhere = -1;

static int
rpath_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[i];
        if (p->p_type != PT_DYNAMIC)
            continue;
        const ElfW(Dyn) *d = (const ElfW(Dyn) *)(info->dlpi_addr + p->p_vaddr);
        for (size_t k = 0; k < p->p_memsz / sizeof *d && d[k].d_tag != DT_NULL; k++)
            if (d[k].d_tag == DT_RPATH)
                return 1;
    }
    return 0;
}

static int
exact_to_call(const char *file, const void *caller)
{
    if (file == NULL)
        return 1;
    int slash = 0;
    for (const char *p = file; *p; p++) {
        if (*p == '$')
            return 0;
        if (*p == '/')
            slash = 1;
    }
    if (!dl_iterate_phdr)
        return 0;
    /* recomputed each time: a dlopen may bring an object with DT_RPATH */
    rpath_anywhere = dl_iterate_phdr(rpath_cb, NULL);
    if (rpath_anywhere)
        return 0;
    if (slash)
        return 1;
    if (!dladdr1)
        return 0;
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm || !lm->l_ld)
        return 0;
    for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; d++)
        if (d->d_tag == DT_RUNPATH || (d->d_tag == DT_FLAGS_1 && (d->d_un.d_val & DF_1_NODEFLIB)))
            return 0;
    return 1;
}

struct after_ctx {
    const struct bridge *b;
    struct link_map *map;
    int mode;
};

static int
after_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    struct after_ctx *c = data;
    c->b->after_dlopen(c->map, c->mode);
    return 1; /* once, with the lock held */
}

static void
after_dlopen(const struct bridge *b, void *handle, int mode)
{
    struct after_ctx c = {b, (struct link_map *)handle, mode};
    if (dl_iterate_phdr)
        dl_iterate_phdr(after_cb, &c);
}

/* --- preload-only mode: no audit instance (LD_PRELOAD alone, or
 * /etc/ld.so.preload). The start-up sweep then runs in this instance's
 * constructor: after the constructors glibc orders before it (libc's, and
 * those of libraries that do not depend on anything loaded after us), so
 * the report's phase says "preload-constructor". Later dlopen()s are
 * sealed when the wrapper regains control; loads it does not see are not. */

static int preload_mode;

static void
preload_sweep_new(int mode)
{
    /* objects on the lists that are not in the table yet: this dlopen's */
    event_started_ns = now_ns();
    if (maps_read())
        return;
    int any = 0;
    const struct r_debug_extended *r = &sk_r_debug;
    for (long ns = 0; r && ns < 64; r = sk_r_debug.base.r_version >= 2 ? r->r_next : NULL, ns++)
        for (struct link_map *l = r->base.r_map; l; l = l->l_next) {
            if (obj_find(l))
                continue;
            struct obj *o = obj_new();
            if (!o)
                return;
            o->lm = l;
            o->base = l->l_addr;
            o->ld = (uintptr_t)l->l_ld;
            o->lmid = ns;
            o->by = BY_DLOPEN;
            o->dlmode = mode;
            decide(o, NULL);
            seal_object(o, PH_RETURNED, RELRO_UNKNOWN);
            any = 1;
        }
    if (any)
        report_event("load");
}

static int
preload_after_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    lock();
    preload_sweep_new(*(int *)data);
    unlock();
    return 1;
}

__attribute__((constructor)) static void
preload_constructor(void)
{
    if (cfg.inited || &sk_r_debug == NULL || sk_r_debug.base.r_version < 1)
        return;
    /* Only the instance in the base namespace is the preload: the audit
     * instance runs this constructor too, when the loader dlmopens it,
     * before la_version. */
    int in_base = 0;
    for (struct link_map *l = sk_r_debug.base.r_map; l; l = l->l_next)
        if ((uintptr_t)l->l_addr == (uintptr_t)&__ehdr_start)
            in_base = 1;
    if (!in_base || get_bridge() != NULL)
        return;
    config_init();
    lock();
    preload_mode = 1;
    startup_sweep(PH_PRELOAD);
    report_claim();
    if (!cfg.inherit)
        strip_environment();
    unlock();
}

/* dlopen() and dlmopen() are entered through a few instructions of
 * assembly that ask sk_dlopen_route() where to go and then *jump* there with
 * the caller's arguments and return address untouched. glibc's dlopen reads
 * its caller from that return address (RETURN_ADDRESS(0) in dlfcn/dlopen.c)
 * to pick the namespace, expand $ORIGIN and search the caller's RUNPATH; a C
 * wrapper could not guarantee that (a compiler need not make a tail call).
 * The route is either the real function (a plain jump: exact semantics) or
 * sk_dlopen_exact (a C function that calls the real dlopen and seals before
 * returning), taken only when exact_to_call() proved the caller's identity
 * does not matter for this file name. */

static void *
none_dlopen(const char *file, int mode)
{
    (void)file;
    (void)mode;
    return NULL;
}

static void *
none_dlmopen(Lmid_t lmid, const char *file, int mode)
{
    (void)lmid;
    (void)file;
    (void)mode;
    return NULL;
}

void *sk_dlopen_exact(const char *file, int mode);

void *
sk_dlopen_exact(const char *file, int mode)
{
    void *h = real_dlopen(file, mode);
    const struct bridge *b = get_bridge();
    if (b && b->active())
        after_dlopen(b, h, mode);
    else if (preload_mode && h && dl_iterate_phdr)
        dl_iterate_phdr(preload_after_cb, &mode);
    return h;
}

void *sk_dlopen_route(const char *file, int mode, const void *caller);

void *
sk_dlopen_route(const char *file, int mode, const void *caller)
{
    resolve_real();
    if (!real_dlopen)
        return (void *)none_dlopen;
    const struct bridge *b = get_bridge();
    int active = b && b->active();
    if (active)
        b->note_mode(mode);
    if ((active || preload_mode) && exact_to_call(file, caller))
        return (void *)sk_dlopen_exact;
    return (void *)real_dlopen;
}

void *sk_dlmopen_route(Lmid_t lmid, const char *file, int mode, const void *caller);

void *
sk_dlmopen_route(Lmid_t lmid, const char *file, int mode, const void *caller)
{
    (void)lmid;
    (void)file;
    (void)caller;
    resolve_real();
    if (!real_dlmopen)
        return (void *)none_dlmopen;
    const struct bridge *b = get_bridge();
    if (b && b->active())
        b->note_mode(mode);
    return (void *)real_dlmopen;
}

#if defined(__x86_64__)
__asm__(".text\n"
        ".globl dlopen\n"
        ".type dlopen, @function\n"
        "dlopen:\n"
        "  .byte 0xf3, 0x0f, 0x1e, 0xfa\n" /* endbr64 */
        "  push %rdi\n"
        "  push %rsi\n"
        "  push %rdx\n" /* three pushes: the stack is 16-byte aligned for the call */
        "  mov 24(%rsp), %rdx\n"
        "  call sk_dlopen_route\n"
        "  pop %rdx\n"
        "  pop %rsi\n"
        "  pop %rdi\n"
        "  jmp *%rax\n"
        ".size dlopen, .-dlopen\n"
        ".globl dlmopen\n"
        ".type dlmopen, @function\n"
        "dlmopen:\n"
        "  .byte 0xf3, 0x0f, 0x1e, 0xfa\n"
        "  push %rdi\n"
        "  push %rsi\n"
        "  push %rdx\n"
        "  mov 24(%rsp), %rcx\n"
        "  call sk_dlmopen_route\n"
        "  pop %rdx\n"
        "  pop %rsi\n"
        "  pop %rdi\n"
        "  jmp *%rax\n"
        ".size dlmopen, .-dlmopen\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl dlopen\n"
        ".type dlopen, %function\n"
        "dlopen:\n"
        "  hint 34\n" /* bti c: a valid target of indirect calls where BTI is enforced */
        "  stp x29, x30, [sp, -48]!\n"
        "  mov x29, sp\n"
        "  stp x0, x1, [sp, 16]\n"
        "  str x2, [sp, 32]\n"
        "  mov x2, x30\n"
        "  bl sk_dlopen_route\n"
        "  mov x16, x0\n"
        "  ldp x0, x1, [sp, 16]\n"
        "  ldr x2, [sp, 32]\n"
        "  ldp x29, x30, [sp], 48\n"
        "  br x16\n"
        ".size dlopen, .-dlopen\n"
        ".globl dlmopen\n"
        ".type dlmopen, %function\n"
        "dlmopen:\n"
        "  hint 34\n"
        "  stp x29, x30, [sp, -48]!\n"
        "  mov x29, sp\n"
        "  stp x0, x1, [sp, 16]\n"
        "  str x2, [sp, 32]\n"
        "  mov x3, x30\n"
        "  bl sk_dlmopen_route\n"
        "  mov x16, x0\n"
        "  ldp x0, x1, [sp, 16]\n"
        "  ldr x2, [sp, 32]\n"
        "  ldp x29, x30, [sp], 48\n"
        "  br x16\n"
        ".size dlmopen, .-dlmopen\n");
#endif

#pragma GCC visibility pop
