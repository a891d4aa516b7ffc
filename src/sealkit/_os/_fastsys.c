/*
 * sealkit._os._fastsys: syscall(2) for sealkit._os.syscalls, at C speed, the two
 * walks of the dynamic loader's list that must run no Python code, and the
 * audit's smaps readers, scanner, classifier and JSON writers (read_fd,
 * read_smaps_layout, smaps_columns, classify_kinds, maps_json_rows,
 * sealed_json_rows, further down; each has a Python twin it is held equal
 * to, which runs where the C one refuses its input).
 *
 * ctypes costs ~1 us per call on these machines and cffi ~0.5 us, which is
 * more than mmap + mseal themselves (benchmarks/bench_mseal.py measures it):
 * a Python program sealing fresh pages would run at ~2x the C loop. Errors
 * are returned in the kernel's convention (-errno), and sealkit._os.syscalls
 * stays the one place where they become exceptions. Optional: without a
 * compiler the build skips it and _os.syscalls falls back to ctypes.
 *
 * dl_iterate_phdr(3) calls back with glibc's dl_load_write_lock held for the
 * whole walk. Python code in a callback may hand the GIL to another thread;
 * if that thread imports an extension module, CPython calls dlopen with the
 * GIL held and blocks on the loader lock, while the walker waits for the
 * GIL: a deadlock. So the callbacks here call no Python API and allocate no
 * Python object (the GC could run finalisers): they copy into malloc'd C
 * memory, and the Python result is built after the walk returns. The GIL
 * stays held throughout: the callbacks need nothing from Python, and no
 * other Python thread runs while the loader's list is pinned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_mseal
#define SYS_mseal 462 /* the same number on every architecture (include/uapi/asm-generic/unistd.h) */
#endif

static PyObject *
fastsys_syscall(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long a[7] = {0, 0, 0, 0, 0, 0, 0};
    long ret;
    int err = 0;

    (void)self;
    if (nargs < 1 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "syscall(number, up to 6 arguments)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        /* Raises TypeError for non-ints and OverflowError outside [0, 2**64). */
        a[i] = PyLong_AsUnsignedLong(args[i]);
        if (a[i] == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    ret = syscall((long)a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    if (ret == -1)
        err = errno;
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(ret == -1 ? -(long)err : ret);
}

/* --- loaded_objects: copy the loader's list under its lock, build after --- */

struct object_copy {
    uintptr_t addr;
    char *name;
    ElfW(Phdr) *phdrs;
    size_t phnum;
};

struct walk {
    struct object_copy *items;
    size_t count, capacity;
    int failed; /* malloc failed: the walk stopped early */
};

static int
copy_object(struct dl_phdr_info *info, size_t size, void *data)
{
    struct walk *w = data;
    struct object_copy *item;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    size_t name_len = strlen(name);

    (void)size;
    if (w->count == w->capacity) {
        size_t capacity = w->capacity ? 2 * w->capacity : 64;
        struct object_copy *grown = realloc(w->items, capacity * sizeof *grown);
        if (grown == NULL)
            goto fail;
        w->items = grown;
        w->capacity = capacity;
    }
    item = &w->items[w->count];
    item->addr = (uintptr_t)info->dlpi_addr;
    item->phnum = info->dlpi_phnum;
    item->name = malloc(name_len + 1);
    item->phdrs = item->phnum ? malloc(item->phnum * sizeof(ElfW(Phdr))) : NULL;
    if (item->name == NULL || (item->phnum && item->phdrs == NULL)) {
        free(item->name);
        free(item->phdrs);
        goto fail;
    }
    memcpy(item->name, name, name_len + 1);
    if (item->phnum)
        memcpy(item->phdrs, info->dlpi_phdr, item->phnum * sizeof(ElfW(Phdr)));
    w->count++;
    return 0;
fail:
    w->failed = 1;
    return 1;
}

static PyObject *
build_object(const struct object_copy *item)
{
    PyObject *phdrs = PyTuple_New((Py_ssize_t)item->phnum);
    if (phdrs == NULL)
        return NULL;
    for (size_t i = 0; i < item->phnum; i++) {
        const ElfW(Phdr) *p = &item->phdrs[i];
        PyObject *t = Py_BuildValue(
            "(kkKKKKK)", (unsigned long)p->p_type, (unsigned long)p->p_flags,
            (unsigned long long)p->p_offset, (unsigned long long)p->p_vaddr,
            (unsigned long long)p->p_filesz, (unsigned long long)p->p_memsz,
            (unsigned long long)p->p_align);
        if (t == NULL) {
            Py_DECREF(phdrs);
            return NULL;
        }
        PyTuple_SET_ITEM(phdrs, (Py_ssize_t)i, t);
    }
    return Py_BuildValue("(y K N)", item->name, (unsigned long long)item->addr, phdrs);
}

static PyObject *
fastsys_loaded_objects(PyObject *self, PyObject *unused)
{
    struct walk w = {NULL, 0, 0, 0};
    PyObject *result = NULL;

    (void)self;
    (void)unused;
    dl_iterate_phdr(copy_object, &w); /* GIL held, no Python inside: see the top */
    if (w.failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyList_New((Py_ssize_t)w.count);
    if (result == NULL)
        goto done;
    for (size_t i = 0; i < w.count; i++) {
        PyObject *item = build_object(&w.items[i]);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }
done:
    for (size_t i = 0; i < w.count; i++) {
        free(w.items[i].name);
        free(w.items[i].phdrs);
    }
    free(w.items);
    return result;
}

/* --- seal_verified: re-check and mseal under the loader's lock --- */

/* struct procmap_query (include/uapi/linux/fs.h, Linux 6.11+), spelled out
 * so the build does not depend on the installed kernel headers. */
struct sk_procmap_query {
    uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags;
    uint64_t vma_page_size, vma_offset, inode;
    uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
    uint64_t vma_name_addr, build_id_addr;
};
#define SK_PROCMAP_QUERY _IOWR('f', 17, struct sk_procmap_query)
#define SK_VMA_WRITABLE 0x2
#define SK_VMA_EXECUTABLE 0x4
#define SK_VMA_SHARED 0x8
#define SK_NAME_MAX 4096

/* Per-range outcomes; the Python side turns them into report reasons. */
enum {
    SK_SEALED = 0,
    SK_NOT_MAPPED = 1,
    SK_PROTECTION = 2,
    SK_BACKING = 3,
    SK_OFFSET = 4,
    SK_SHARED = 5,
    SK_WX = 6,
    SK_NAME = 7,
    SK_QUERY_FAILED = 8, /* errno in the second field */
    SK_MSEAL_FAILED = 9, /* errno in the second field */
};

struct planned {
    uint64_t start, end, flags, dev_major, dev_minor, inode, offset;
    const char *name; /* NULL: name not checked; borrowed from the input bytes */
    int code, err;
};

struct seal_job {
    int fd;
    struct planned *ranges;
    Py_ssize_t count;
    char *name_buf;
    int ran;
};

/* Whether [r->start, r->end) is still exactly what was planned: covered by
 * VMAs of the same file (dev, inode) at consistent offsets (or anonymous, as
 * planned), with the planned protection, private, never writable+executable. */
static int
verify(int fd, const struct planned *r, char *name_buf, int *err)
{
    uint64_t addr = r->start;
    while (addr < r->end) {
        struct sk_procmap_query q;
        memset(&q, 0, sizeof q);
        q.size = sizeof q;
        q.query_flags = 0; /* the VMA covering addr, nothing further */
        q.query_addr = addr;
        if (r->name != NULL) {
            q.vma_name_addr = (uint64_t)(uintptr_t)name_buf;
            q.vma_name_size = SK_NAME_MAX;
        }
        if (ioctl(fd, SK_PROCMAP_QUERY, &q) != 0) {
            if (errno == ENOENT)
                return SK_NOT_MAPPED;
            *err = errno;
            return SK_QUERY_FAILED;
        }
        if (q.vma_start > addr)
            return SK_NOT_MAPPED;
        if ((q.vma_flags & SK_VMA_WRITABLE) && (q.vma_flags & SK_VMA_EXECUTABLE))
            return SK_WX;
        if (q.vma_flags & SK_VMA_SHARED)
            return SK_SHARED;
        if ((q.vma_flags & 0x7) != r->flags)
            return SK_PROTECTION;
        if (q.inode != r->inode || (r->inode != 0 && (q.dev_major != r->dev_major ||
                                                      q.dev_minor != r->dev_minor)))
            return SK_BACKING;
        if (r->inode != 0 && q.vma_offset + (addr - q.vma_start) != r->offset + (addr - r->start))
            return SK_OFFSET;
        if (r->name != NULL && (q.vma_name_size == 0 || strcmp(name_buf, r->name) != 0))
            return SK_NAME;
        addr = q.vma_end;
    }
    return SK_SEALED;
}

static int
seal_under_lock(struct dl_phdr_info *info, size_t size, void *data)
{
    struct seal_job *job = data;

    (void)info;
    (void)size;
    /* First object: the loader's lock is held; do everything now, then stop
     * the walk. No dlclose can unmap (glibc unmaps under dl_load_write_lock,
     * elf/dl-close.c) and dlopen maps only into free address space, so a
     * range verified here is still that range when it is sealed. */
    job->ran = 1;
    for (Py_ssize_t i = 0; i < job->count; i++) {
        struct planned *r = &job->ranges[i];
        r->err = 0;
        r->code = verify(job->fd, r, job->name_buf, &r->err);
        if (r->code != SK_SEALED)
            continue;
        if (syscall(SYS_mseal, (unsigned long)r->start, (unsigned long)(r->end - r->start), 0UL) != 0) {
            r->err = errno;
            r->code = SK_MSEAL_FAILED;
        }
    }
    return 1;
}

static PyObject *
fastsys_seal_verified(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *seq, *fast = NULL, *result = NULL;
    struct seal_job job = {0, NULL, 0, NULL, 0};

    (void)self;
    if (!PyArg_ParseTuple(args, "iO:seal_verified", &fd, &seq))
        return NULL;
    fast = PySequence_Fast(seq, "ranges must be a sequence");
    if (fast == NULL)
        return NULL;
    job.fd = fd;
    job.count = PySequence_Fast_GET_SIZE(fast);
    job.ranges = PyMem_Calloc(job.count ? (size_t)job.count : 1, sizeof *job.ranges);
    job.name_buf = PyMem_Malloc(SK_NAME_MAX);
    if (job.ranges == NULL || job.name_buf == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < job.count; i++) {
        struct planned *r = &job.ranges[i];
        unsigned long long v[7];
        PyObject *name;
        /* (start, end, vma_flags, dev_major, dev_minor, inode, offset, name|None);
         * the names stay alive: `fast` holds the tuples that hold them. */
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "KKKKKKKO", &v[0], &v[1],
                              &v[2], &v[3], &v[4], &v[5], &v[6], &name))
            goto done;
        if (name == Py_None) {
            r->name = NULL;
        } else if (PyBytes_Check(name)) {
            r->name = PyBytes_AS_STRING(name);
        } else {
            PyErr_SetString(PyExc_TypeError, "a range's name must be bytes or None");
            goto done;
        }
        r->start = v[0];
        r->end = v[1];
        r->flags = v[2];
        r->dev_major = v[3];
        r->dev_minor = v[4];
        r->inode = v[5];
        r->offset = v[6];
    }
    dl_iterate_phdr(seal_under_lock, &job); /* GIL held, no Python inside */
    if (!job.ran) {
        result = Py_NewRef(Py_None); /* no object to walk: nothing was done */
        goto done;
    }
    result = PyList_New(job.count);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < job.count; i++) {
        PyObject *t = Py_BuildValue("(ii)", job.ranges[i].code, job.ranges[i].err);
        if (t == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, t);
    }
done:
    PyMem_Free(job.ranges);
    PyMem_Free(job.name_buf);
    Py_XDECREF(fast);
    return result;
}

/*
 * smaps_columns(data, columns=True): the mappings of /proc/PID/smaps text
 * as columns, in one pass (sealkit._os.procfs.scan_smaps's fast path; the
 * benchmark is benchmarks/bench_audit.py); with columns false only how many
 * there are and which are sealed, with no object per mapping; with columns
 * 2 that count, unless a mapping is sealed: then the columns (the text is
 * read again from its start once the first sealed mapping is met, so a
 * process without seals, the common case, costs one pass and no object,
 * and one with seals no round trip through Python). It reads what the kernel prints
 * (fs/proc/task_mmu.c show_map_vma, show_smap_vma_flags): a header line, the
 * counters, a "VmFlags:" line, the next header. Only text of exactly that
 * shape is scanned here; for anything else (a header that is not
 * well-formed, a header without a VmFlags line, text after the last one, a
 * number wider than 64 bits, a mapping that ends before it starts) it
 * returns None and the Python scanner gives its answer or its error, so the
 * two paths never disagree. Linear in the text; every loop steps forward.
 */
static int
hexdigit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* [0-9a-f]+ at p, at most 16 digits: the position after it, or NULL. */
static const char *
scan_hex(const char *p, const char *end, unsigned long long *out)
{
    const char *s = p;
    unsigned long long v = 0;
    int d;

    while (p < end && (d = hexdigit((unsigned char)*p)) >= 0) {
        if (p - s >= 16)
            return NULL;
        v = (v << 4) | (unsigned long long)d;
        p++;
    }
    if (p == s)
        return NULL;
    *out = v;
    return p;
}

typedef struct {
    unsigned long long start, end, offset, inode;
    const char *perms, *dev, *path;
    Py_ssize_t dev_len, path_len;
} smaps_header;

/* One header line [p, e) (e at its '\n' or the end of the text), as
 * show_vma_header_prefix prints it: "start-end perms offset dev inode",
 * then a blank and the name, or nothing. 0 when not of that shape. */
static int
scan_header(const char *p, const char *e, smaps_header *h)
{
    const char *q;

    if ((p = scan_hex(p, e, &h->start)) == NULL || p >= e || *p++ != '-')
        return 0;
    if ((p = scan_hex(p, e, &h->end)) == NULL || p >= e || *p++ != ' ')
        return 0;
    if (e - p < 5 || (p[0] != 'r' && p[0] != '-') || (p[1] != 'w' && p[1] != '-')
        || (p[2] != 'x' && p[2] != '-') || (p[3] != 'p' && p[3] != 's') || p[4] != ' ')
        return 0;
    h->perms = p;
    p += 5;
    if ((p = scan_hex(p, e, &h->offset)) == NULL || p >= e || *p++ != ' ')
        return 0;
    h->dev = p;
    while (p < e && hexdigit((unsigned char)*p) >= 0)
        p++;
    if (p == h->dev || p >= e || *p++ != ':')
        return 0;
    q = p;
    while (p < e && hexdigit((unsigned char)*p) >= 0)
        p++;
    if (p == q || p >= e || *p != ' ')
        return 0;
    h->dev_len = p - h->dev;
    p++;
    q = p;
    h->inode = 0;
    while (p < e && *p >= '0' && *p <= '9') {
        if (p - q >= 19)
            return 0;
        h->inode = h->inode * 10 + (unsigned long long)(*p - '0');
        p++;
    }
    if (p == q)
        return 0;
    if (p == e) {
        h->path = p;
        h->path_len = 0;
        return 1;
    }
    if (*p != ' ' && *p != '\t')
        return 0;
    h->path = p + 1;
    h->path_len = e - (p + 1);
    return 1;
}

/* The name as procfs.parse_smaps leaves it: decoded (utf-8,
 * surrogateescape), leading white space (the kernel's padding) removed as
 * str.lstrip() removes it. */
static PyObject *
smaps_path(const char *p, Py_ssize_t n)
{
    Py_ssize_t skip = 0;
    unsigned char c;

    while (skip < n && p[skip] == ' ')
        skip++;
    if (skip == n)
        return PyUnicode_New(0, 0);
    c = (unsigned char)p[skip];
    if (c >= 0x80 || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) {
        /* maybe more white space, as str.isspace() knows it: let str say */
        PyObject *raw = PyUnicode_DecodeUTF8(p, n, "surrogateescape"), *out;
        if (raw == NULL)
            return NULL;
        out = PyObject_CallMethod(raw, "lstrip", NULL);
        Py_DECREF(raw);
        return out;
    }
    return PyUnicode_DecodeUTF8(p + skip, n - skip, "surrogateescape");
}

/* A short ASCII field (a device), decoded once per distinct value. */
static PyObject *
cached_ascii(PyObject *cache, const char *p, Py_ssize_t n)
{
    PyObject *key = PyBytes_FromStringAndSize(p, n), *value;

    if (key == NULL)
        return NULL;
    value = PyDict_GetItemWithError(cache, key);
    if (value != NULL) {
        Py_DECREF(key);
        return Py_NewRef(value);
    }
    if (PyErr_Occurred() || (value = PyUnicode_DecodeASCII(p, n, "strict")) == NULL
        || PyDict_SetItem(cache, key, value) < 0) {
        Py_DECREF(key);
        Py_XDECREF(value);
        return NULL;
    }
    Py_DECREF(key);
    return value;
}

/* The raw VmFlags text, one bytes object per distinct line. */
static PyObject *
cached_bytes(PyObject *cache, const char *p, Py_ssize_t n)
{
    PyObject *key = PyBytes_FromStringAndSize(p, n), *value;

    if (key == NULL)
        return NULL;
    value = PyDict_SetDefault(cache, key, key);
    Py_DECREF(key);
    return value == NULL ? NULL : Py_NewRef(value);
}

#define SMAPS_COLUMNS 9
#define FLAGS_TAG "\nVmFlags:"
#define FLAGS_TAG_LEN 9

/* The first FLAGS_TAG in [s, s + n), as memmem(s, n, FLAGS_TAG,
 * FLAGS_TAG_LEN) finds it, or NULL. Its 'V' is looked for with memchr: no
 * other smaps field name has one, so nearly every 'V' found starts the tag,
 * where glibc's memmem sets up a shift table on every call (a call per
 * mapping: this was a tenth of the audit's own CPU time on a process with
 * 65,000 mappings). */
static const char *
find_flags_tag(const char *s, Py_ssize_t n)
{
    const char *p = s + 1, *end = s + n;

    if (n < FLAGS_TAG_LEN)
        return NULL;
    while (end - p >= FLAGS_TAG_LEN - 1) {
        const char *v = memchr(p, 'V', (size_t)(end - p));

        if (v == NULL || end - v < FLAGS_TAG_LEN - 1)
            return NULL;
        if (v[-1] == '\n' && memcmp(v + 1, FLAGS_TAG + 2, FLAGS_TAG_LEN - 2) == 0)
            return v - 1;
        p = v + 1;
    }
    return NULL;
}

/* Whether a VmFlags line's text [p, p + n) holds the mnemonic "sl" (printed
 * "%c%c " per flag by show_smap_vma_flags), as " sl " or ending in " sl"
 * (a capture whose trailing blank was trimmed). */
static int
flags_sealed(const char *p, Py_ssize_t n)
{
    const char *end = p + n, *q = p;

    if (n >= 3 && memcmp(end - 3, " sl", 3) == 0)
        return 1;
    while (end - q >= 4) {
        const char *s = memchr(q + 1, 's', (size_t)(end - q - 3));

        if (s == NULL)
            return 0;
        if (s[-1] == ' ' && s[1] == 'l' && s[2] == ' ')
            return 1;
        q = s;
    }
    return 0;
}

static int
append_new(PyObject *list, PyObject *item)
{
    int rc;

    if (item == NULL)
        return -1;
    rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *
fastsys_smaps_columns(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const char *text, *end, *p, *e, *flags, *flags_end;
    Py_ssize_t size, row = 0;
    PyObject *cols[SMAPS_COLUMNS] = {NULL};
    PyObject *perms[16] = {NULL};
    PyObject *devs = NULL, *flagsets = NULL, *result = NULL, *arg;
    PyObject *last_name = NULL, *last_inode = NULL;
    const char *last_path = NULL;
    Py_ssize_t last_path_len = 0;
    unsigned long long last_inode_value = 0;
    smaps_header h;
    int c, build = 1, when_sealed = 0, overflow = 0;

    (void)self;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "smaps_columns(data, columns=True)");
        return NULL;
    }
    arg = args[0];
    if (nargs == 2 && PyLong_CheckExact(args[1])
        && PyLong_AsLongAndOverflow(args[1], &overflow) == 2 && !overflow) {
        when_sealed = 1; /* count, and the columns only once a mapping is sealed */
        build = 0;
    } else if (nargs == 2 && (build = PyObject_IsTrue(args[1])) < 0) {
        return NULL;
    }
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "data must be bytes, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    text = PyBytes_AS_STRING(arg);
    size = PyBytes_GET_SIZE(arg);
    end = text + size;
    for (c = 0; c < SMAPS_COLUMNS; c++)
        if ((cols[c] = PyList_New(0)) == NULL)
            goto fail;
    if ((devs = PyDict_New()) == NULL || (flagsets = PyDict_New()) == NULL)
        goto fail;
again:
    p = text;
    e = memchr(p, '\n', (size_t)size);
    if (e == NULL || !scan_header(p, e, &h))
        goto unusual;
    for (;;) {
        /* e is at the '\n' after the header: its VmFlags line comes next */
        flags = find_flags_tag(e, end - e);
        if (flags == NULL)
            goto unusual;
        flags += FLAGS_TAG_LEN;
        flags_end = memchr(flags, '\n', (size_t)(end - flags));
        if (flags_end == NULL)
            flags_end = end;
        if (h.end < h.start)
            goto unusual;
        if (build) {
            int k = (h.perms[0] == 'r') | (h.perms[1] == 'w') << 1 | (h.perms[2] == 'x') << 2
                    | (h.perms[3] == 's') << 3;
            if (perms[k] == NULL && (perms[k] = PyUnicode_DecodeASCII(h.perms, 4, "strict")) == NULL)
                goto fail;
            if (append_new(cols[0], PyLong_FromUnsignedLongLong(h.start)) < 0
                || append_new(cols[1], PyLong_FromUnsignedLongLong(h.end)) < 0
                || PyList_Append(cols[2], perms[k]) < 0
                || append_new(cols[3], PyLong_FromUnsignedLongLong(h.offset)) < 0
                || append_new(cols[4], cached_ascii(devs, h.dev, h.dev_len)) < 0
                || append_new(cols[7], cached_bytes(flagsets, flags, flags_end - flags)) < 0)
                goto fail;
            /* a file's mappings come in runs (its segments), or between
             * anonymous ones (thousands of pages of one file, in the
             * benchmark): the last name and inode of a file mapping are
             * decoded once for all that follow. last_path points into
             * `text`, which `arg` keeps alive. */
            if (h.path_len == 0) {
                if (append_new(cols[6], smaps_path(h.path, 0)) < 0) /* the empty str */
                    goto fail;
            } else {
                if (last_name == NULL || h.path_len != last_path_len
                    || memcmp(h.path, last_path, (size_t)h.path_len) != 0) {
                    Py_XSETREF(last_name, smaps_path(h.path, h.path_len));
                    if (last_name == NULL)
                        goto fail;
                    last_path = h.path;
                    last_path_len = h.path_len;
                }
                if (PyList_Append(cols[6], last_name) < 0)
                    goto fail;
            }
            if (h.inode == 0) {
                if (append_new(cols[5], PyLong_FromUnsignedLongLong(0)) < 0) /* a cached int */
                    goto fail;
            } else {
                if (last_inode == NULL || h.inode != last_inode_value) {
                    Py_XSETREF(last_inode, PyLong_FromUnsignedLongLong(h.inode));
                    if (last_inode == NULL)
                        goto fail;
                    last_inode_value = h.inode;
                }
                if (PyList_Append(cols[5], last_inode) < 0)
                    goto fail;
            }
        }
        {
            Py_ssize_t n = flags_end - flags;
            if (flags_sealed(flags, n)) {
                if (when_sealed && !build) {
                    /* the first sealed mapping: read it all again, into
                     * columns (the rows before it were only counted) */
                    build = 1;
                    row = 0;
                    goto again;
                }
                if (append_new(cols[8], PyLong_FromSsize_t(row)) < 0)
                    goto fail;
            }
        }
        row++;
        if (flags_end == end || flags_end + 1 == end)
            break; /* the text ends with the last VmFlags line */
        p = flags_end + 1;
        e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL)
            e = end;
        if (!scan_header(p, e, &h))
            goto unusual;
    }
    if (!build) {
        /* only how many mappings, and which are sealed */
        result = Py_BuildValue("(nO)", row, cols[8]);
        goto done;
    }
    if ((result = PyTuple_New(SMAPS_COLUMNS)) == NULL)
        goto fail;
    for (c = 0; c < SMAPS_COLUMNS; c++) {
        PyTuple_SET_ITEM(result, c, cols[c]);
        cols[c] = NULL;
    }
    goto done;
unusual:
    result = Py_NewRef(Py_None);
    goto done;
fail:
    result = NULL;
done:
    for (c = 0; c < SMAPS_COLUMNS; c++)
        Py_XDECREF(cols[c]);
    for (c = 0; c < 16; c++)
        Py_XDECREF(perms[c]);
    Py_XDECREF(devs);
    Py_XDECREF(flagsets);
    Py_XDECREF(last_name);
    Py_XDECREF(last_inode);
    return result;
}

/*
 * maps_json_rows(start, end, perms, offset, inode, path, vmflags, kinds,
 * sealed_only, text_of): the region lines of `sealkit maps --json`
 * (sealkit.host.maps.maps_json), written in C. text_of(kind, value) gives
 * the JSON text of a permission string (kind 0), a path (1) or a VmFlags
 * set (2); it is called once per distinct value, whose answer is kept.
 * Returns (text, mappings, sealed mappings, sealed bytes), or None when a
 * number, or the sum of the sealed sizes, does not fit 64 bits, or a mapping
 * ends before it starts (the Python writer then writes it). The text is
 * ASCII: every string in it came from text_of or is a kind, a fixed word, or
 * a number. text_of may change the columns: each row is written from the
 * objects the columns held when that row began.
 */
typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} outbuf;

static int
out_reserve(outbuf *o, Py_ssize_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 1 << 16;
    while (cap < o->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *grown = PyMem_Realloc(o->buf, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = grown;
    o->cap = cap;
    return 0;
}

/* text_of(kind, value), remembered per value in cache. A new reference:
 * the lookups run the value's __hash__ and __eq__, so nothing borrowed from
 * the cache is relied on. */
static PyObject *
text_of_cached(PyObject *cache, PyObject *text_of, int kind, PyObject *value)
{
    PyObject *found = PyDict_GetItemWithError(cache, value), *made;

    if (found != NULL)
        return Py_NewRef(found);
    if (PyErr_Occurred())
        return NULL;
    made = PyObject_CallFunction(text_of, "iO", kind, value);
    if (made == NULL)
        return NULL;
    if (PyDict_SetItem(cache, value, made) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}

/* A column item as an unsigned 64-bit number: 1, 0 (does not fit), -1 (error). */
static int
as_u64(PyObject *v, unsigned long long *out)
{
    if (!PyLong_CheckExact(v))
        return 0; /* a bool or another int subclass prints otherwise: Python's turn */
    *out = PyLong_AsUnsignedLongLong(v);
    if (*out == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    return 1;
}

#define MAPS_COLUMNS 8

/* Lower-case hexadecimal (Python's "x") and decimal digits of v at p: the
 * position after them (at most 16 and 20 characters). */
static char *
put_hex(char *p, unsigned long long v)
{
    char tmp[16];
    int n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *
put_dec(char *p, unsigned long long v)
{
    char tmp[20];
    int n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

#define PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

/* The ASCII bytes and length of str s (text_of's answers and kinds must be
 * ASCII): 0, or -1 with ValueError set. */
static int
ascii_of(PyObject *s, const char **p, Py_ssize_t *n)
{
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s)) {
        PyErr_SetString(PyExc_ValueError, "maps_json_rows: text must be ASCII str");
        return -1;
    }
    *p = (const char *)PyUnicode_1BYTE_DATA(s);
    *n = PyUnicode_GET_LENGTH(s);
    return 0;
}

/* One region line: texts are text_of's answers for its permissions, path and
 * flags. 0, or -1 with an exception set. The numbers are written by hand
 * (snprintf was a third of the writer's time): "0x%llx" and "%llu". */
static int
write_row(outbuf *o, unsigned long long start, unsigned long long end, unsigned long long offset,
          unsigned long long inode, int sealed, PyObject *const *texts, PyObject *kind)
{
    const char *t[4];
    Py_ssize_t n[4], most = 4 + 2 * 16 + 3 * 20 + 160;
    char *p;

    for (int k = 0; k < 4; k++) {
        if (ascii_of(k < 3 ? texts[k] : kind, &t[k], &n[k]) < 0)
            return -1;
        if (n[k] > PY_SSIZE_T_MAX / 8 - most) {
            PyErr_NoMemory();
            return -1;
        }
        most += n[k];
    }
    if (out_reserve(o, most) < 0)
        return -1;
    p = o->buf + o->len;
    if (o->len)
        p = PUT(p, ",\n  ");
    p = PUT(p, "{\"start\": \"0x");
    p = put_hex(p, start);
    p = PUT(p, "\", \"end\": \"0x");
    p = put_hex(p, end);
    p = PUT(p, "\", \"size\": ");
    p = put_dec(p, end - start);
    p = PUT(p, ", \"perms\": ");
    memcpy(p, t[0], (size_t)n[0]);
    p += n[0];
    if (sealed)
        p = PUT(p, ", \"sealed\": true, \"kind\": \"");
    else
        p = PUT(p, ", \"sealed\": false, \"kind\": \"");
    memcpy(p, t[3], (size_t)n[3]);
    p += n[3];
    p = PUT(p, "\", \"path\": ");
    memcpy(p, t[1], (size_t)n[1]);
    p += n[1];
    p = PUT(p, ", \"offset\": ");
    p = put_dec(p, offset);
    p = PUT(p, ", \"inode\": ");
    p = put_dec(p, inode);
    p = PUT(p, ", \"vmflags\": ");
    memcpy(p, t[2], (size_t)n[2]);
    p += n[2];
    *p++ = '}';
    o->len = p - o->buf;
    return 0;
}

static PyObject *
fastsys_maps_json_rows(PyObject *self, PyObject *args)
{
    PyObject *given[MAPS_COLUMNS], *seqs[MAPS_COLUMNS] = {NULL}, *text_of;
    PyObject *caches[3] = {NULL}, *sl = NULL, *result = NULL, *text;
    int sealed_only;
    Py_ssize_t n = 0, count = 0, sealed_count = 0, i;
    unsigned long long sealed_bytes = 0;
    outbuf o = {NULL, 0, 0};
    int c;

    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOOpO:maps_json_rows", &given[0], &given[1], &given[2],
                          &given[3], &given[4], &given[5], &given[6], &given[7], &sealed_only,
                          &text_of))
        return NULL;
    for (c = 0; c < MAPS_COLUMNS; c++) {
        if ((seqs[c] = PySequence_Fast(given[c], "maps_json_rows: columns must be sequences")) == NULL)
            goto fail;
        if (c == 0)
            n = PySequence_Fast_GET_SIZE(seqs[c]);
        else if (PySequence_Fast_GET_SIZE(seqs[c]) != n) {
            PyErr_SetString(PyExc_ValueError, "maps_json_rows: columns of different lengths");
            goto fail;
        }
    }
    for (c = 0; c < 3; c++)
        if ((caches[c] = PyDict_New()) == NULL)
            goto fail;
    if ((sl = PyUnicode_InternFromString("sl")) == NULL)
        goto fail;
    for (i = 0; i < n; i++) {
        PyObject *const *col[MAPS_COLUMNS];
        unsigned long long start, end, offset, inode;
        PyObject *held[4], *texts[3] = {NULL, NULL, NULL};
        int sealed = 0, r, k;

        /* text_of, and the values' __hash__, __eq__ and __contains__, run
         * Python code, which may resize a list (moving its items) or
         * replace an item (freeing it): the columns are looked at afresh
         * each row, and the row's objects are held before any of it runs. */
        for (c = 0; c < MAPS_COLUMNS; c++) {
            if (PySequence_Fast_GET_SIZE(seqs[c]) != n) {
                PyErr_SetString(PyExc_RuntimeError, "maps_json_rows: a column changed size");
                goto fail;
            }
            col[c] = PySequence_Fast_ITEMS(seqs[c]);
        }
        if ((r = as_u64(col[0][i], &start)) <= 0 || (r = as_u64(col[1][i], &end)) <= 0
            || (r = as_u64(col[3][i], &offset)) <= 0 || (r = as_u64(col[4][i], &inode)) <= 0) {
            if (r < 0)
                goto fail;
            goto unusual;
        }
        if (end < start)
            goto unusual;
        count++;
        held[0] = Py_NewRef(col[2][i]); /* perms */
        held[1] = Py_NewRef(col[5][i]); /* path */
        held[2] = Py_NewRef(col[6][i]); /* flags */
        held[3] = Py_NewRef(col[7][i]); /* kind */
        r = 0;
        if (held[2] != Py_None)
            r = sealed = PySequence_Contains(held[2], sl);
        if (r < 0)
            ; /* the error is set */
        else if (sealed && sealed_bytes > ULLONG_MAX - (end - start))
            r = 1; /* a sum past 64 bits: Python's integers write it */
        else if (!sealed && sealed_only)
            r = 2; /* counted, not listed */
        else {
            if (sealed) {
                sealed_count++;
                sealed_bytes += end - start;
            }
            if ((texts[0] = text_of_cached(caches[0], text_of, 0, held[0])) == NULL
                || (texts[1] = text_of_cached(caches[1], text_of, 1, held[1])) == NULL
                || (texts[2] = text_of_cached(caches[2], text_of, 2, held[2])) == NULL)
                r = -1;
            else
                r = write_row(&o, start, end, offset, inode, sealed, texts, held[3]);
        }
        for (k = 0; k < 3; k++)
            Py_XDECREF(texts[k]);
        for (k = 0; k < 4; k++)
            Py_DECREF(held[k]);
        if (r < 0)
            goto fail;
        if (r == 1)
            goto unusual;
    }
    text = PyUnicode_DecodeASCII(o.buf ? o.buf : "", o.len, "strict");
    if (text == NULL)
        goto fail;
    result = Py_BuildValue("(NnnK)", text, count, sealed_count, sealed_bytes);
    goto done;
unusual:
    result = Py_NewRef(Py_None);
    goto done;
fail:
    result = NULL;
done:
    PyMem_Free(o.buf);
    for (c = 0; c < MAPS_COLUMNS; c++)
        Py_XDECREF(seqs[c]);
    for (c = 0; c < 3; c++)
        Py_XDECREF(caches[c]);
    Py_XDECREF(sl);
    return result;
}

/*
 * sealed_json_rows(sealed, text_of): the "sealed" list of one process in
 * `sealkit audit --json` (sealkit.host.outputs.audit_json_text), written in
 * C: for each (start, end, perms, kind, path) tuple, the text
 * {"start": "0x..", "end": "0x..", "size": N, "perms": P, "kind": "K",
 * "path": Q}, joined by ", ". text_of(0, perms) and text_of(1, path) give P
 * and Q (once per distinct value); kinds are written as they are (the
 * caller passes only known kinds). Returns the text, or None for anything
 * else: a row that is not an exact tuple of 5, a number that is not an
 * exact int within 64 bits, a mapping that ends before it starts (the
 * Python writer then writes it). `sealed` must be a tuple (immutable); each
 * row is held while text_of runs.
 *
 * With `kinds` (a tuple of str: sealkit.host.classify.KINDS) and
 * `row_type`, it also sums what the JSON record says of the list: it
 * returns (text, counts, sizes), the number of rows and the bytes they
 * cover for each kind in `kinds` order, and None unless every row is
 * exactly a `row_type` whose kind is one of `kinds` (and no sum passes 64
 * bits). One pass instead of the four the record's fields took in Python.
 */
#define MAX_KINDS 16

static PyObject *
fastsys_sealed_json_rows(PyObject *self, PyObject *args)
{
    PyObject *sealed, *text_of, *kinds = NULL, *row_type = NULL, *caches[2] = {NULL, NULL};
    PyObject *result = NULL;
    outbuf o = {NULL, 0, 0};
    Py_ssize_t n, i, nkinds = 0, last = 0;
    unsigned long long counts[MAX_KINDS] = {0}, sizes[MAX_KINDS] = {0};

    (void)self;
    if (!PyArg_ParseTuple(args, "O!O|O!O:sealed_json_rows", &PyTuple_Type, &sealed, &text_of,
                          &PyTuple_Type, &kinds, &row_type))
        return NULL;
    if (kinds != NULL) {
        nkinds = PyTuple_GET_SIZE(kinds);
        if (nkinds < 1 || nkinds > MAX_KINDS || row_type == NULL || !PyType_Check(row_type)) {
            PyErr_SetString(PyExc_ValueError,
                            "sealed_json_rows: kinds must be 1 to 16 str, with a row type");
            return NULL;
        }
        for (i = 0; i < nkinds; i++)
            if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(kinds, i))) {
                PyErr_SetString(PyExc_ValueError, "sealed_json_rows: kinds must be str");
                return NULL;
            }
    }
    n = PyTuple_GET_SIZE(sealed);
    for (int c = 0; c < 2; c++)
        if ((caches[c] = PyDict_New()) == NULL)
            goto fail;
    for (i = 0; i < n; i++) {
        PyObject *row = PyTuple_GET_ITEM(sealed, i), *texts[2] = {NULL, NULL};
        unsigned long long start, end;
        const char *t[3];
        Py_ssize_t len[3], most = 2 + 2 * 16 + 20 + 120;
        int r;
        char *p;

        if (!PyTuple_CheckExact(row) && !(PyTuple_Check(row) && Py_TYPE(row)->tp_base == &PyTuple_Type))
            goto unusual;
        if (PyTuple_GET_SIZE(row) != 5)
            goto unusual;
        if ((r = as_u64(PyTuple_GET_ITEM(row, 0), &start)) <= 0
            || (r = as_u64(PyTuple_GET_ITEM(row, 1), &end)) <= 0) {
            if (r < 0)
                goto fail;
            goto unusual;
        }
        if (end < start)
            goto unusual;
        if (kinds != NULL) {
            PyObject *kind = PyTuple_GET_ITEM(row, 3);
            Py_ssize_t k = last, tried;

            if (Py_TYPE(row) != (PyTypeObject *)row_type || !PyUnicode_CheckExact(kind))
                goto unusual;
            for (tried = 0; tried < nkinds; tried++, k = (k + 1) % nkinds) {
                PyObject *known = PyTuple_GET_ITEM(kinds, k);
                int eq = known == kind ? 1 : PyUnicode_Compare(known, kind) == 0;

                if (eq)
                    break;
            }
            if (PyErr_Occurred())
                goto fail;
            if (tried == nkinds || sizes[k] > ULLONG_MAX - (end - start))
                goto unusual;
            counts[k]++;
            sizes[k] += end - start;
            last = k;
        }
        Py_INCREF(row); /* text_of runs Python code: the row stays alive */
        r = -1;
        if ((texts[0] = text_of_cached(caches[0], text_of, 0, PyTuple_GET_ITEM(row, 2))) != NULL
            && (texts[1] = text_of_cached(caches[1], text_of, 1, PyTuple_GET_ITEM(row, 4))) != NULL
            && ascii_of(texts[0], &t[0], &len[0]) == 0 && ascii_of(texts[1], &t[1], &len[1]) == 0
            && ascii_of(PyTuple_GET_ITEM(row, 3), &t[2], &len[2]) == 0) {
            r = 0;
            for (int k = 0; k < 3 && r == 0; k++) {
                if (len[k] > PY_SSIZE_T_MAX / 8 - most) {
                    PyErr_NoMemory();
                    r = -1;
                } else {
                    most += len[k];
                }
            }
            if (r == 0 && out_reserve(&o, most) < 0)
                r = -1;
        }
        if (r == 0) {
            p = o.buf + o.len;
            if (i)
                p = PUT(p, ", ");
            p = PUT(p, "{\"start\": \"0x");
            p = put_hex(p, start);
            p = PUT(p, "\", \"end\": \"0x");
            p = put_hex(p, end);
            p = PUT(p, "\", \"size\": ");
            p = put_dec(p, end - start);
            p = PUT(p, ", \"perms\": ");
            memcpy(p, t[0], (size_t)len[0]);
            p += len[0];
            p = PUT(p, ", \"kind\": \"");
            memcpy(p, t[2], (size_t)len[2]);
            p += len[2];
            p = PUT(p, "\", \"path\": ");
            memcpy(p, t[1], (size_t)len[1]);
            p += len[1];
            *p++ = '}';
            o.len = p - o.buf;
        }
        Py_XDECREF(texts[0]);
        Py_XDECREF(texts[1]);
        Py_DECREF(row);
        if (r < 0)
            goto fail;
    }
    result = PyUnicode_DecodeASCII(o.buf ? o.buf : "", o.len, "strict");
    if (result != NULL && kinds != NULL) {
        PyObject *text = result, *c = PyList_New(nkinds), *z = PyList_New(nkinds);

        result = NULL;
        if (c != NULL && z != NULL) {
            for (i = 0; i < nkinds; i++) {
                PyObject *a = PyLong_FromUnsignedLongLong(counts[i]);
                PyObject *b = PyLong_FromUnsignedLongLong(sizes[i]);

                if (a == NULL || b == NULL) {
                    Py_XDECREF(a);
                    Py_XDECREF(b);
                    break;
                }
                PyList_SET_ITEM(c, i, a);
                PyList_SET_ITEM(z, i, b);
            }
            if (i == nkinds)
                result = PyTuple_Pack(3, text, c, z);
        }
        Py_DECREF(text);
        Py_XDECREF(c);
        Py_XDECREF(z);
    }
    goto done;
unusual:
    result = Py_NewRef(Py_None);
    goto done;
fail:
    result = NULL;
done:
    PyMem_Free(o.buf);
    Py_XDECREF(caches[0]);
    Py_XDECREF(caches[1]);
    return result;
}

/*
 * read_fd(fd, chunk, size_limit, deadline, clock_every, first): a /proc
 * file read to its end into one bytes object: sealkit._os.procfs.
 * _read_verified's loop, in C, after its first read (`first`, the bytes it
 * returned, which start the buffer; the first read stays os.read, so the
 * first piece is seen where it always was). The Python loop keeps every read's piece and joins them: for
 * a process with 65,000 mappings, 13,000 pieces joined into 48 MB of fresh
 * memory, about 30 ms on top of the 190 ms the kernel spends generating
 * the text. Here the pieces land in one buffer that starts at 64 MiB of
 * address space, above glibc's largest mmap threshold (32 MiB), so it is
 * its own mapping: only the pages written are ever touched, growing it
 * (past 64 MiB) is an mremap, and so is trimming it to the length read; no
 * byte is copied. Where 64 MiB of address space is refused (strict
 * overcommit, ulimit -v) it starts at 256 KiB and grows by doubling. Each read(2) asks for `chunk` bytes with the GIL
 * released, as os.read does.
 *
 * The same bounds as the Python loop: past size_limit bytes (0: none) it
 * stops with status 1; after every clock_every-th read (counting the first)
 * it looks at CLOCK_MONOTONIC (time.monotonic) and stops with status 2
 * once past deadline (< 0: none). Returns (data, 0), (None, 1) or
 * (None, 2); a failed read raises OSError with its errno (EINTR is retried
 * once signal handlers ran, as os.read does).
 */
#define READ_FD_START ((Py_ssize_t)64 << 20)

static PyObject *
fastsys_read_fd(PyObject *self, PyObject *args)
{
    int fd;
    Py_ssize_t chunk, size_limit, clock_every, len, cap = READ_FD_START, calls = 1, most;
    double deadline;
    PyObject *buf;
    const char *first;

    (void)self;
    if (!PyArg_ParseTuple(args, "inndny#:read_fd", &fd, &chunk, &size_limit, &deadline,
                          &clock_every, &first, &len))
        return NULL;
    if (chunk <= 0 || chunk > (1 << 24) || size_limit < 0 || clock_every <= 0
        || len > READ_FD_START / 2) {
        PyErr_SetString(PyExc_ValueError, "read_fd: bad chunk, size_limit, clock_every or first");
        return NULL;
    }
    /* The buffer never needs more than size_limit + chunk bytes: the loop
     * stops once past size_limit. Growing past that (doubling 256 MiB to
     * 512) could be refused where the Python loop's pieces fit, and turn its
     * "larger than" error into a MemoryError. */
    most = size_limit && size_limit <= PY_SSIZE_T_MAX - chunk ? size_limit + chunk : PY_SSIZE_T_MAX;
    if (most < len + chunk)
        most = len + chunk; /* a first piece past the limit: room for one read */
    if (cap > most)
        cap = most;
    if ((buf = PyBytes_FromStringAndSize(NULL, cap)) == NULL) {
        /* 64 MiB of address space refused (strict overcommit, a ulimit -v):
         * start small and grow, which copies, as the Python loop would */
        PyErr_Clear();
        cap = (Py_ssize_t)1 << 18;
        while (cap < len + chunk)
            cap *= 2;
        if (cap > most)
            cap = most;
        if ((buf = PyBytes_FromStringAndSize(NULL, cap)) == NULL)
            return NULL;
    }
    memcpy(PyBytes_AS_STRING(buf), first, (size_t)len);
    for (;;) {
        ssize_t got;
        int err = 0;

        if (cap - len < chunk) {
            if (cap > PY_SSIZE_T_MAX / 2) {
                Py_DECREF(buf);
                return PyErr_NoMemory();
            }
            cap = cap * 2 < most ? cap * 2 : most;
            if (cap - len < chunk)
                cap = len + chunk; /* cannot happen: len <= size_limit here */
            if (_PyBytes_Resize(&buf, cap) < 0)
                return NULL; /* buf is gone, MemoryError is set */
        }
        Py_BEGIN_ALLOW_THREADS
        got = read(fd, PyBytes_AS_STRING(buf) + len, (size_t)chunk);
        if (got < 0)
            err = errno;
        Py_END_ALLOW_THREADS
        if (got < 0) {
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    Py_DECREF(buf);
                    return NULL;
                }
                continue;
            }
            Py_DECREF(buf);
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (got == 0)
            break;
        len += got;
        calls++;
        if (size_limit && len > size_limit) {
            Py_DECREF(buf);
            return Py_BuildValue("(Oi)", Py_None, 1);
        }
        if (deadline >= 0 && calls % clock_every == 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((double)now.tv_sec + (double)now.tv_nsec * 1e-9 > deadline) {
                Py_DECREF(buf);
                return Py_BuildValue("(Oi)", Py_None, 2);
            }
        }
    }
    if (_PyBytes_Resize(&buf, len) < 0)
        return NULL;
    return Py_BuildValue("(Ni)", buf, 0);
}

/*
 * read_smaps_layout(fd, chunk, size_limit, deadline, clock_every, first): an
 * smaps file read on to its end after its first piece (as read_fd), keeping
 * only what the audit reads of it: each mapping's header line and its
 * VmFlags line, the counters between them dropped as the text streams by.
 * For a process with 65,000 mappings that is about 7 MB instead of 48: the
 * 48 MB were faulted in, and freed, for nothing but the counters (about 25
 * ms of the 190 the kernel spends on the text). The rolling buffer holds
 * one read and the mapping it is in (it grows for a longer mapping, within
 * size_limit + chunk).
 *
 * What it keeps is smaps text too ("HEADER\nVmFlags:FLAGS\n" for each
 * mapping), and smaps_columns reads it exactly as it reads the whole text:
 * each step here is smaps_columns's step (a header line of the kernel's
 * shape, that mapping's end not before its start, the first "\nVmFlags:"
 * after it, its line, the next header or the end), and for text of any
 * other shape, where smaps_columns would return None, this returns status
 * 3 and keeps nothing: the caller reads the file again whole, and the
 * Python scanner gives its answer or its error from all of it.
 *
 * The bounds and errors are read_fd's: past size_limit bytes read (0: none)
 * status 1; after every clock_every-th read (counting the first) past
 * deadline (< 0: none) status 2; a failed read raises OSError (EINTR
 * retried once signal handlers ran). Returns (kept, 0), (None, 1), (None,
 * 2) or (None, 3). Linear in the text: every search resumes where the
 * last one stopped.
 *
 * With `counted` true it returns (kept, 0, mappings, sealed) for a whole
 * read: what smaps_columns(kept, False) would say (how many mappings, and
 * whether one is sealed: flags_sealed on each VmFlags line, as that scan
 * does), learnt on the way, so that the sweep scans nothing more of a
 * process without seals; (None, status, 0, False) otherwise.
 */
static PyObject *
fastsys_read_smaps_layout(PyObject *self, PyObject *args)
{
    int fd, eof = 0;
    Py_ssize_t chunk, size_limit, clock_every, first_len, cap, len, most, total, calls = 1;
    Py_ssize_t pos = 0, he = -1, fl = -1, look = 0;
    double deadline;
    const char *first;
    char *buf = NULL;
    outbuf o = {NULL, 0, 0};
    PyObject *result = NULL;
    smaps_header h;
    int status = 0, counted = 0, sealed = 0;
    Py_ssize_t mappings = 0;

    (void)self;
    if (!PyArg_ParseTuple(args, "inndny#|p:read_smaps_layout", &fd, &chunk, &size_limit,
                          &deadline, &clock_every, &first, &first_len, &counted))
        return NULL;
    if (chunk <= 0 || chunk > (1 << 24) || size_limit < 0 || clock_every <= 0
        || first_len > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError,
                        "read_smaps_layout: bad chunk, size_limit, clock_every or first");
        return NULL;
    }
    most = size_limit && size_limit <= PY_SSIZE_T_MAX - chunk ? size_limit + chunk : PY_SSIZE_T_MAX;
    cap = (Py_ssize_t)1 << 18;
    while (cap < first_len + chunk)
        cap *= 2;
    if ((buf = PyMem_Malloc((size_t)cap)) == NULL)
        return PyErr_NoMemory();
    memcpy(buf, first, (size_t)first_len);
    len = total = first_len;
    if (size_limit && total > size_limit) {
        status = 1;
        goto stopped;
    }
    for (;;) {
        /* every whole mapping in [pos, len): copy its two lines to o */
        for (;;) {
            const char *r = buf + pos, *found;
            Py_ssize_t avail = len - pos, fe;

            if (avail == 0) {
                if (eof)
                    goto finished;
                break;
            }
            if (he < 0) {
                found = memchr(r + look, '\n', (size_t)(avail - look));
                if (found == NULL) {
                    if (eof)
                        goto unusual; /* a last line that is not a whole header line */
                    look = avail;
                    break;
                }
                he = found - r;
                if (!scan_header(r, found, &h) || h.end < h.start)
                    goto unusual;
                look = he; /* the tag may start at the header's own '\n' */
            }
            if (fl < 0) {
                found = find_flags_tag(r + look, avail - look);
                if (found == NULL) {
                    if (eof)
                        goto unusual; /* a header without a VmFlags line */
                    /* a tag cut by the end of the read starts in its last 8 bytes */
                    if (avail - (FLAGS_TAG_LEN - 1) > look)
                        look = avail - (FLAGS_TAG_LEN - 1);
                    break;
                }
                fl = found - r + FLAGS_TAG_LEN;
                look = fl;
            }
            found = memchr(r + look, '\n', (size_t)(avail - look));
            if (found == NULL) {
                if (!eof) {
                    look = avail;
                    break;
                }
                fe = avail; /* the text ends with this VmFlags line */
            } else {
                fe = found - r;
            }
            if (out_reserve(&o, he + FLAGS_TAG_LEN + (fe - fl) + 1) < 0)
                goto fail;
            memcpy(o.buf + o.len, r, (size_t)he);
            memcpy(o.buf + o.len + he, FLAGS_TAG, FLAGS_TAG_LEN);
            memcpy(o.buf + o.len + he + FLAGS_TAG_LEN, r + fl, (size_t)(fe - fl));
            o.len += he + FLAGS_TAG_LEN + (fe - fl);
            o.buf[o.len++] = '\n';
            mappings++;
            if (!sealed)
                sealed = flags_sealed(r + fl, fe - fl);
            pos += fe < avail ? fe + 1 : fe;
            he = fl = -1;
            look = 0;
        }
        /* keep the mapping being read at the front; room for one more read */
        if (pos > 0) {
            memmove(buf, buf + pos, (size_t)(len - pos));
            len -= pos;
            pos = 0;
        }
        if (cap - len < chunk) {
            Py_ssize_t grown_cap = cap > PY_SSIZE_T_MAX / 2 ? PY_SSIZE_T_MAX : cap * 2;
            char *grown;
            if (grown_cap > most)
                grown_cap = most;
            if (grown_cap - len < chunk)
                grown_cap = len + chunk; /* len <= size_limit here: within most */
            if ((grown = PyMem_Realloc(buf, (size_t)grown_cap)) == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            buf = grown;
            cap = grown_cap;
        }
        {
            ssize_t got;
            int err = 0;

            Py_BEGIN_ALLOW_THREADS
            got = read(fd, buf + len, (size_t)chunk);
            if (got < 0)
                err = errno;
            Py_END_ALLOW_THREADS
            if (got < 0) {
                if (err == EINTR) {
                    if (PyErr_CheckSignals() < 0)
                        goto fail;
                    continue;
                }
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                goto fail;
            }
            if (got == 0) {
                eof = 1;
                continue;
            }
            len += got;
            total += got;
            calls++;
            if (size_limit && total > size_limit) {
                status = 1;
                goto stopped;
            }
            if (deadline >= 0 && calls % clock_every == 0) {
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if ((double)now.tv_sec + (double)now.tv_nsec * 1e-9 > deadline) {
                    status = 2;
                    goto stopped;
                }
            }
        }
    }
finished:
    result = PyBytes_FromStringAndSize(o.buf ? o.buf : "", o.len);
    if (result != NULL)
        result = counted ? Py_BuildValue("(NinO)", result, 0, mappings, sealed ? Py_True : Py_False)
                         : Py_BuildValue("(Ni)", result, 0);
    goto done;
unusual:
    status = 3;
stopped:
    result = counted ? Py_BuildValue("(OinO)", Py_None, status, (Py_ssize_t)0, Py_False)
                     : Py_BuildValue("(Oi)", Py_None, status);
    goto done;
fail:
    result = NULL;
done:
    PyMem_Free(buf);
    PyMem_Free(o.buf);
    return result;
}

/*
 * classify_kinds(start, end, perms, path, dev, inode, vmflags, wanted, facts, kinds):
 * sealkit.host.classify's rules (the module docstring; _Process.kinds is
 * the reference this follows line by line) for each mapping in `wanted`
 * (None: every one), in C. What depends on a file's program headers is
 * asked of Python once per file: facts(i) for a file mapping i answers 0
 * (not an ELF object placed by the loader), 1 or 2 (program headers
 * unknown; 1: the file also has an executable mapping), or the tuple
 * (first_vaddr, top, load_lo, load_hi, bss_lo, bss_hi, relro, candidates,
 * nearest) of classify._Process._facts. `kinds` is classify.KINDS: the
 * answer is a list of its strings.
 *
 * Returns None (and Python classifies) for anything not of the shape the
 * scanner makes: a column item that is not an exact int within 64 bits, an
 * exact str (permissions of length 4), or None / an exact set for the
 * flags; a wanted index out of range; a number in the facts outside 64
 * bits, or an index outside the mappings. The columns are copied into C
 * arrays before any Python code (facts) runs, so nothing facts does to
 * them matters here; every loop is bounded by the number of mappings, the
 * facts' lengths, or a bisection. Arithmetic on addresses is done in 128
 * bits (a bias may be negative, bias + top may pass 2**64): built only
 * where the compiler has __int128.
 */
#ifdef __SIZEOF_INT128__
typedef __int128 i128;

enum { K_TEXT, K_RODATA, K_RELRO, K_DATA, K_FILE, K_HEAP, K_STACK, K_ANON, K_SHM, K_SYSTEM,
       K_GUARD, K_COUNT };

/* perms and path bits of one mapping */
#define M_W 0x01
#define M_X 0x02
#define M_S 0x04
#define M_NONE3 0x08  /* perms start with "---" */
#define M_GD 0x10     /* VmFlags has gd */
#define M_EMPTY 0x20  /* path "" */
#define M_BRACKET 0x40 /* path starts with "[" */
#define M_SYSTEM 0x80
#define M_HEAP 0x100
#define M_STACKNAME 0x200 /* path starts with "[stack" */
#define M_SHMPATH 0x400   /* path starts with one of classify._SHM_PATHS */

enum { F_NOT_ELF, F_UNKNOWN, F_UNKNOWN_EXEC, F_ELF };

typedef struct {
    Py_ssize_t dev;
    unsigned long long inode;
    int state; /* F_NOT_ELF, F_UNKNOWN, F_UNKNOWN_EXEC, F_ELF */
    i128 first_vaddr, top, relro_lo, relro_hi;
    int has_relro;
    Py_ssize_t nload, nbss, ncand;
    i128 *load_lo, *load_hi, *bss_lo, *bss_hi; /* one allocation: load_lo */
    Py_ssize_t *cand, *nearest;                 /* one allocation: cand */
} file_facts;

typedef struct {
    Py_ssize_t n;
    unsigned long long *start, *end, *inode;
    Py_ssize_t *dev; /* a small id per distinct device string */
    int *bits;
    Py_ssize_t *head;
    /* (dev id, inode) -> index into facts, open addressing */
    Py_ssize_t *slots, nslots, nfacts, capfacts;
    file_facts *facts;
    PyObject *callback;
} cls_state;

/* Whether exact str s starts with the ASCII text p (of length n). */
static int
str_starts(PyObject *s, const char *p, Py_ssize_t n)
{
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);

    if (PyUnicode_GET_LENGTH(s) < n)
        return 0;
    for (Py_ssize_t k = 0; k < n; k++)
        if (PyUnicode_READ(kind, data, k) != (Py_UCS4)(unsigned char)p[k])
            return 0;
    return 1;
}

static int
str_is(PyObject *s, const char *p)
{
    Py_ssize_t n = (Py_ssize_t)strlen(p);
    return PyUnicode_GET_LENGTH(s) == n && str_starts(s, p, n);
}

static int
path_bits(PyObject *s)
{
    static const char *const system[] = {"[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]",
                                         "[uprobes]", "[sigpage]", "[vectors]"};
    static const char *const shm[] = {"/dev/shm/", "/SYSV", "/memfd:", "/dev/zero",
                                      "[anon_shmem"};
    int bits = 0;
    size_t k;

    if (PyUnicode_GET_LENGTH(s) == 0)
        return M_EMPTY;
    if (str_starts(s, "[", 1)) {
        bits |= M_BRACKET;
        for (k = 0; k < sizeof system / sizeof *system; k++)
            if (str_is(s, system[k]))
                bits |= M_SYSTEM;
        if (str_is(s, "[heap]"))
            bits |= M_HEAP;
        if (str_starts(s, "[stack", 6))
            bits |= M_STACKNAME;
    }
    for (k = 0; k < sizeof shm / sizeof *shm; k++)
        if (str_starts(s, shm[k], (Py_ssize_t)strlen(shm[k])))
            bits |= M_SHMPATH;
    return bits;
}

/* An exact int in [-2**63, 2**64): 1 with *out set, 0 (not so), -1 (error). */
static int
exact_i128(PyObject *v, i128 *out)
{
    int overflow = 0;
    long long s;

    if (!PyLong_CheckExact(v))
        return 0;
    s = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (s == -1 && PyErr_Occurred())
        return -1;
    if (overflow == 0) {
        *out = (i128)s;
        return 1;
    }
    if (overflow < 0)
        return 0;
    {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return -1;
            PyErr_Clear();
            return 0;
        }
        *out = (i128)u;
        return 1;
    }
}

/* A list of exact ints within 64 bits into a C array (malloc'd by the
 * caller, `most` long): its length, -2 (not so), -1 (error). */
static Py_ssize_t
int_list(PyObject *list, i128 *into, Py_ssize_t most)
{
    Py_ssize_t n;

    if (!PyList_CheckExact(list))
        return -2;
    n = PyList_GET_SIZE(list);
    if (n > most)
        return -2;
    for (Py_ssize_t k = 0; k < n; k++) {
        int r = exact_i128(PyList_GET_ITEM(list, k), &into[k]);
        if (r <= 0)
            return r < 0 ? -1 : -2;
    }
    return n;
}

/* Python's bisect_right, step for step (so an unsorted list gives the
 * same answer too). */
static Py_ssize_t
bisect_i128(const i128 *a, Py_ssize_t n, i128 x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < a[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static Py_ssize_t
bisect_ssize(const Py_ssize_t *a, Py_ssize_t n, Py_ssize_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < a[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

#define MAX_SPANS 64 /* classify.MAX_LOADS: more loads read as unknown there */

/* Parse facts(i)'s ELF tuple into f: 1, 0 (not of the shape: Python's
 * turn), -1 (error). */
static int
parse_elf_facts(cls_state *st, PyObject *t, file_facts *f)
{
    PyObject *relro, *cand, *near;
    i128 *spans, tmp[2];
    Py_ssize_t n;

    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 9)
        return 0;
    for (int k = 0; k < 2; k++) {
        int r = exact_i128(PyTuple_GET_ITEM(t, k), k ? &f->top : &f->first_vaddr);
        if (r <= 0)
            return r;
    }
    if ((spans = PyMem_Malloc(4 * MAX_SPANS * sizeof *spans)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    f->load_lo = spans;
    f->load_hi = spans + MAX_SPANS;
    f->bss_lo = spans + 2 * MAX_SPANS;
    f->bss_hi = spans + 3 * MAX_SPANS;
    {
        i128 *into[4] = {f->load_lo, f->load_hi, f->bss_lo, f->bss_hi};
        Py_ssize_t len[4];
        for (int k = 0; k < 4; k++) {
            len[k] = int_list(PyTuple_GET_ITEM(t, 2 + k), into[k], MAX_SPANS);
            if (len[k] < 0)
                return len[k] == -1 ? -1 : 0;
        }
        if (len[0] != len[1] || len[2] != len[3])
            return 0;
        f->nload = len[0];
        f->nbss = len[2];
    }
    relro = PyTuple_GET_ITEM(t, 6);
    f->has_relro = relro != Py_None;
    if (f->has_relro) {
        if (!PyTuple_CheckExact(relro) || PyTuple_GET_SIZE(relro) != 2)
            return 0;
        for (int k = 0; k < 2; k++) {
            int r = exact_i128(PyTuple_GET_ITEM(relro, k), &tmp[k]);
            if (r <= 0)
                return r;
        }
        f->relro_lo = tmp[0];
        f->relro_hi = tmp[1];
    }
    cand = PyTuple_GET_ITEM(t, 7);
    near = PyTuple_GET_ITEM(t, 8);
    if (!PyList_CheckExact(cand) || !PyList_CheckExact(near)
        || PyList_GET_SIZE(cand) != PyList_GET_SIZE(near) || PyList_GET_SIZE(cand) > st->n)
        return 0;
    n = PyList_GET_SIZE(cand);
    if ((f->cand = PyMem_Malloc((size_t)(2 * n + 1) * sizeof *f->cand)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    f->nearest = f->cand + n;
    f->ncand = n;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t c = PyLong_CheckExact(PyList_GET_ITEM(cand, k))
                           ? PyLong_AsSsize_t(PyList_GET_ITEM(cand, k)) : -2;
        Py_ssize_t m = PyLong_CheckExact(PyList_GET_ITEM(near, k))
                           ? PyLong_AsSsize_t(PyList_GET_ITEM(near, k)) : -2;
        if ((c == -1 || m == -1) && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return -1;
            PyErr_Clear();
            return 0;
        }
        /* candidates index the mappings; nearest is one of them or -1 */
        if (c < 0 || c >= st->n || m < -1 || m >= st->n)
            return 0;
        f->cand[k] = c;
        f->nearest[k] = m;
    }
    return 1;
}

/* The facts of mapping i's file, asked of Python once per (device, inode):
 * an index into st->facts, -1 (an error is set) or -2 (not of the shape:
 * Python's turn). */
static Py_ssize_t
facts_of(cls_state *st, Py_ssize_t i)
{
    Py_ssize_t dev = st->dev[i], s, idx;
    unsigned long long inode = st->inode[i];
    file_facts *f;
    PyObject *answer;
    int r;

    if (st->nfacts * 2 >= st->nslots) {
        /* grow the table (a power of two, at most twice the files seen) */
        Py_ssize_t nslots = st->nslots ? st->nslots * 2 : 64, *slots;
        if (nslots > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof *slots
            || (slots = PyMem_Malloc((size_t)nslots * sizeof *slots)) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (s = 0; s < nslots; s++)
            slots[s] = -1;
        for (idx = 0; idx < st->nfacts; idx++) {
            f = &st->facts[idx];
            s = (Py_ssize_t)(((size_t)f->dev * 0x9E3779B97F4A7C15ULL ^ f->inode * 0xC2B2AE3D27D4EB4FULL)
                             & (size_t)(nslots - 1));
            while (slots[s] >= 0)
                s = (s + 1) & (nslots - 1);
            slots[s] = idx;
        }
        PyMem_Free(st->slots);
        st->slots = slots;
        st->nslots = nslots;
    }
    s = (Py_ssize_t)(((size_t)dev * 0x9E3779B97F4A7C15ULL ^ inode * 0xC2B2AE3D27D4EB4FULL)
                     & (size_t)(st->nslots - 1));
    while ((idx = st->slots[s]) >= 0) {
        if (st->facts[idx].dev == dev && st->facts[idx].inode == inode)
            return idx;
        s = (s + 1) & (st->nslots - 1);
    }
    if (st->nfacts == st->capfacts) {
        Py_ssize_t cap = st->capfacts ? st->capfacts * 2 : 16;
        file_facts *grown;
        if (cap > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof *grown
            || (grown = PyMem_Realloc(st->facts, (size_t)cap * sizeof *grown)) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        st->facts = grown;
        st->capfacts = cap;
    }
    idx = st->nfacts;
    f = &st->facts[idx];
    memset(f, 0, sizeof *f);
    f->dev = dev;
    f->inode = inode;
    /* registered before the call, so the arrays are freed on every path */
    st->nfacts++;
    st->slots[s] = idx;
    answer = PyObject_CallFunction(st->callback, "n", i);
    if (answer == NULL)
        return -1;
    if (PyLong_CheckExact(answer)) {
        /* any other int, however large, is not of the shape: Python's turn */
        int overflow = 0;
        long v = PyLong_AsLongAndOverflow(answer, &overflow);
        r = overflow == 0 && (v == 0 || v == 1 || v == 2);
        f->state = v == 0 ? F_NOT_ELF : v == 1 ? F_UNKNOWN_EXEC : F_UNKNOWN;
        if (v == -1 && PyErr_Occurred())
            r = -1;
    } else {
        f->state = F_ELF;
        r = parse_elf_facts(st, answer, f);
    }
    Py_DECREF(answer);
    return r == 1 ? idx : r == 0 ? -2 : -1;
}

/* classify._Process.object_bias: 1 with *bias set, 0 (none), -2 (Python's turn). */
static int
object_bias(cls_state *st, Py_ssize_t i, const file_facts *f, i128 *bias)
{
    Py_ssize_t pos, near;

    if (f->ncand == 0 || f->nearest[f->ncand - 1] < 0)
        return 0;
    pos = bisect_ssize(f->cand, f->ncand, i) - 1;
    if (pos < 0 || (near = f->nearest[pos]) < 0)
        return 0;
    *bias = (i128)st->start[near] - f->first_vaddr;
    return (i128)st->start[i] < *bias + f->top;
}

static int
same_file(const cls_state *st, Py_ssize_t a, Py_ssize_t b)
{
    return st->dev[a] == st->dev[b] && st->inode[a] == st->inode[b];
}

/* classify._Process.file_kind: a kind, or -1 (error) / -2 (Python's turn). */
static int
file_kind(cls_state *st, Py_ssize_t i)
{
    Py_ssize_t idx = facts_of(st, i), k;
    const file_facts *f;
    int bits = st->bits[i];
    i128 bias, rel;

    if (idx < 0)
        return (int)idx;
    f = &st->facts[idx];
    if (f->state == F_NOT_ELF)
        return K_FILE;
    if (f->state == F_ELF) {
        if (object_bias(st, i, f, &bias) != 1)
            return K_FILE;
        rel = (i128)st->start[i] - bias;
        k = bisect_i128(f->load_lo, f->nload, rel);
        if (!(k > 0 && f->load_hi[k - 1] > rel))
            return K_FILE;
        if (bits & M_X)
            return K_TEXT;
        if (bits & M_W)
            return K_DATA;
        if (f->has_relro && f->relro_lo <= rel && (i128)st->end[i] - bias <= f->relro_hi)
            return K_RELRO;
        return K_RODATA;
    }
    if (bits & M_X)
        return K_TEXT;
    if (bits & M_W)
        return K_DATA;
    k = i + 1;
    if (k < st->n && st->start[k] == st->end[i] && same_file(st, k, i) && (st->bits[k] & M_W))
        return K_RELRO;
    return f->state == F_UNKNOWN_EXEC ? K_RODATA : K_FILE;
}

#define IS_FILE(st, j) ((st)->inode[j] != 0 && !((st)->bits[j] & M_BRACKET))

/* classify._Process.anon_kind (with _head_says, remembered per head in
 * says/says_bias/says_file): a kind, or -1 / -2. */
static int
anon_kind(cls_state *st, Py_ssize_t i, int *says, i128 *says_bias, Py_ssize_t *says_file)
{
    Py_ssize_t j = st->head[i], slot = j + 1, k;
    const file_facts *f;
    i128 lo, hi;

    if (says[slot] < 0) {
        int kind = K_ANON;
        if (j >= 0 && st->end[j] == st->start[j + 1] && IS_FILE(st, j) && !(st->bits[j] & M_S)) {
            Py_ssize_t idx = facts_of(st, j);
            if (idx < 0)
                return (int)idx;
            f = &st->facts[idx];
            if (f->state == F_UNKNOWN || f->state == F_UNKNOWN_EXEC)
                kind = st->bits[j] & M_W ? K_DATA : K_ANON;
            else if (f->state == F_ELF && object_bias(st, j, f, &says_bias[slot]) == 1) {
                kind = K_COUNT; /* place each piece against .bss */
                says_file[slot] = idx;
            }
        }
        says[slot] = kind;
    }
    if (says[slot] != K_COUNT)
        return says[slot];
    f = &st->facts[says_file[slot]];
    lo = (i128)st->start[i] - says_bias[slot];
    hi = (i128)st->end[i] - says_bias[slot];
    k = bisect_i128(f->bss_lo, f->nbss, lo);
    return k > 0 && f->bss_hi[k - 1] >= hi ? K_DATA : K_ANON;
}

static int
kind_of(cls_state *st, Py_ssize_t i, int *says, i128 *says_bias, Py_ssize_t *says_file)
{
    int bits = st->bits[i];

    if (bits & M_EMPTY) {
        if (bits & M_GD)
            return K_STACK;
        if (bits & M_S)
            return st->inode[i] != 0 ? K_FILE : K_SHM;
        if (bits & M_NONE3)
            return K_GUARD;
        if (st->inode[i] != 0)
            return file_kind(st, i);
        return anon_kind(st, i, says, says_bias, says_file);
    }
    if (bits & M_SYSTEM)
        return K_SYSTEM;
    if (bits & M_HEAP)
        return K_HEAP;
    if (bits & M_STACKNAME)
        return K_STACK;
    if (bits & M_GD)
        return K_STACK;
    if (bits & M_S)
        return (bits & M_SHMPATH) || !IS_FILE(st, i) ? K_SHM : K_FILE;
    if (bits & M_NONE3)
        return K_GUARD;
    if (IS_FILE(st, i))
        return file_kind(st, i);
    return anon_kind(st, i, says, says_bias, says_file);
}

#define CLS_CACHE 64

/* Copy the columns into st: 1, 0 (not of the shape), -1 (error). No Python
 * code runs here (exact ints, strs and sets only). */
static int
load_columns(cls_state *st, PyObject *const *cols)
{
    PyObject *devs = NULL, *dev_seen[CLS_CACHE] = {NULL}, *flags_seen[CLS_CACHE] = {NULL};
    Py_ssize_t n = st->n, i, dev_id[CLS_CACHE];
    int flags_gd[CLS_CACHE], r = 0;

    for (int c = 0; c < 7; c++)
        if ((!PyList_CheckExact(cols[c]) && !PyTuple_CheckExact(cols[c]))
            || PySequence_Fast_GET_SIZE(cols[c]) != n)
            return 0;
    if ((devs = PyDict_New()) == NULL)
        goto fail;
    for (i = 0; i < n; i++) {
        PyObject *perms, *path, *dev, *flags, *v[3];
        unsigned long long *into[3] = {&st->start[i], &st->end[i], &st->inode[i]};
        int bits;

        /* An allocation may run the garbage collector, and so finalisers:
         * look at the lists afresh each row; the row's objects are held */
        for (int c = 0; c < 7; c++)
            if (PySequence_Fast_GET_SIZE(cols[c]) != n)
                goto unusual;
        perms = PySequence_Fast_GET_ITEM(cols[2], i);
        path = PySequence_Fast_GET_ITEM(cols[3], i);
        dev = PySequence_Fast_GET_ITEM(cols[4], i);
        flags = PySequence_Fast_GET_ITEM(cols[6], i);
        v[0] = PySequence_Fast_GET_ITEM(cols[0], i);
        v[1] = PySequence_Fast_GET_ITEM(cols[1], i);
        v[2] = PySequence_Fast_GET_ITEM(cols[5], i);
        for (int k = 0; k < 3; k++) {
            if (!PyLong_CheckExact(v[k]))
                goto unusual;
            *into[k] = PyLong_AsUnsignedLongLong(v[k]);
            if (*into[k] == (unsigned long long)-1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                    goto fail;
                PyErr_Clear();
                goto unusual;
            }
        }
        if (!PyUnicode_CheckExact(perms) || PyUnicode_GET_LENGTH(perms) != 4
            || !PyUnicode_CheckExact(path) || !PyUnicode_CheckExact(dev))
            goto unusual;
        {
            int kind = PyUnicode_KIND(perms);
            const void *data = PyUnicode_DATA(perms);
            Py_UCS4 p0 = PyUnicode_READ(kind, data, 0), p1 = PyUnicode_READ(kind, data, 1);
            Py_UCS4 p2 = PyUnicode_READ(kind, data, 2), p3 = PyUnicode_READ(kind, data, 3);
            bits = (p1 == 'w' ? M_W : 0) | (p2 == 'x' ? M_X : 0) | (p3 == 's' ? M_S : 0)
                   | (p0 == '-' && p1 == '-' && p2 == '-' ? M_NONE3 : 0);
        }
        bits |= path_bits(path);
        /* the device's id and the flags' "gd", remembered per object (held,
         * so an address is never reused while remembered) */
        {
            size_t slot = ((uintptr_t)dev >> 4) & (CLS_CACHE - 1);
            if (dev_seen[slot] != dev) {
                PyObject *id = PyDict_GetItemWithError(devs, dev);
                if (id == NULL) {
                    if (PyErr_Occurred())
                        goto fail;
                    if ((id = PyLong_FromSsize_t(PyDict_GET_SIZE(devs))) == NULL)
                        goto fail;
                    if (PyDict_SetItem(devs, dev, id) < 0) {
                        Py_DECREF(id);
                        goto fail;
                    }
                    Py_DECREF(id); /* the dict holds it */
                }
                dev_id[slot] = PyLong_AsSsize_t(id);
                Py_XSETREF(dev_seen[slot], Py_NewRef(dev));
            }
            st->dev[i] = dev_id[slot];
            slot = ((uintptr_t)flags >> 4) & (CLS_CACHE - 1);
            if (flags_seen[slot] != flags) {
                /* "gd" in flags, for None or a set of exact strs (comparing
                 * strs runs no Python code; anything else is Python's turn) */
                int gd = 0;
                Py_XSETREF(flags_seen[slot], Py_NewRef(flags)); /* alive while iterated */
                flags_gd[slot] = -1;
                if (flags != Py_None) {
                    PyObject *it, *item;
                    if (!PyFrozenSet_CheckExact(flags) && !PySet_CheckExact(flags))
                        goto unusual;
                    if ((it = PyObject_GetIter(flags)) == NULL)
                        goto fail;
                    while ((item = PyIter_Next(it)) != NULL) {
                        int odd = !PyUnicode_CheckExact(item);
                        if (!odd && str_is(item, "gd"))
                            gd = 1;
                        Py_DECREF(item);
                        if (odd) {
                            Py_DECREF(it);
                            goto unusual;
                        }
                    }
                    Py_DECREF(it);
                    if (PyErr_Occurred())
                        goto fail;
                }
                flags_gd[slot] = gd;
            }
            if (flags_gd[slot] == 1)
                bits |= M_GD;
        }
        st->bits[i] = bits;
    }
    /* the head of each mapping's anonymous run (classify._Process.run_head) */
    for (i = 0; i < n; i++) {
        Py_ssize_t j = i - 1;
        if (j >= 0 && st->end[j] == st->start[j + 1] && (st->bits[j] & M_EMPTY)
            && st->inode[j] == 0 && !(st->bits[j] & M_S))
            st->head[i] = st->head[j];
        else
            st->head[i] = j;
    }
    r = 1;
    goto done;
unusual:
    r = 0;
    goto done;
fail:
    r = -1;
done:
    Py_XDECREF(devs);
    for (int c = 0; c < CLS_CACHE; c++) {
        Py_XDECREF(dev_seen[c]);
        Py_XDECREF(flags_seen[c]);
    }
    return r;
}

static PyObject *
fastsys_classify_kinds(PyObject *self, PyObject *args)
{
    PyObject *cols[7], *wanted, *callback, *names, *result = NULL, *list = NULL;
    cls_state st;
    int *says = NULL;
    i128 *says_bias = NULL;
    Py_ssize_t *says_file = NULL, count, k;
    char *block = NULL;
    unsigned char *found = NULL;
    int r;

    (void)self;
    memset(&st, 0, sizeof st);
    if (!PyArg_ParseTuple(args, "OOOOOOOOOO:classify_kinds", &cols[0], &cols[1], &cols[2],
                          &cols[3], &cols[4], &cols[5], &cols[6], &wanted, &callback, &names))
        return NULL;
    if (!PyTuple_CheckExact(names) || PyTuple_GET_SIZE(names) != K_COUNT)
        return Py_NewRef(Py_None);
    if (!PyList_CheckExact(cols[0]) && !PyTuple_CheckExact(cols[0]))
        return Py_NewRef(Py_None); /* columns: lists or tuples */
    if (wanted != Py_None && !PyList_CheckExact(wanted))
        return Py_NewRef(Py_None);
    st.n = PySequence_Fast_GET_SIZE(cols[0]);
    st.callback = callback;
    {
        /* start, end, inode, dev, head: 8 bytes each; bits: an int; says*: per head + 1 */
        size_t per = 5 * 8 + sizeof(int) + sizeof(int) + sizeof(i128) + sizeof(Py_ssize_t);
        if ((size_t)st.n + 1 > ((size_t)PY_SSIZE_T_MAX - 64) / per)
            return PyErr_NoMemory();
        block = PyMem_Malloc(((size_t)st.n + 1) * per + 64);
        if (block == NULL)
            return PyErr_NoMemory();
    }
    {
        size_t m = (size_t)st.n + 1;
        char *p = block;
        says_bias = (i128 *)p;
        p += m * sizeof(i128);
        st.start = (unsigned long long *)p;
        p += m * 8;
        st.end = (unsigned long long *)p;
        p += m * 8;
        st.inode = (unsigned long long *)p;
        p += m * 8;
        st.dev = (Py_ssize_t *)p;
        p += m * 8;
        st.head = (Py_ssize_t *)p;
        p += m * 8;
        says_file = (Py_ssize_t *)p;
        p += m * sizeof(Py_ssize_t);
        st.bits = (int *)p;
        p += m * sizeof(int);
        says = (int *)p;
    }
    r = load_columns(&st, cols);
    if (r <= 0) {
        result = r < 0 ? NULL : Py_NewRef(Py_None);
        goto done;
    }
    for (k = 0; k <= st.n; k++)
        says[k] = -1;
    count = wanted == Py_None ? st.n : PyList_GET_SIZE(wanted);
    /* The kinds are kept in C until every facts() call is done: a list made
     * now would hold NULL items while Python code runs, and that code can
     * reach it (gc.get_objects(), a finaliser) and crash on them. */
    if ((found = PyMem_Malloc((size_t)count + 1)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (k = 0; k < count; k++) {
        Py_ssize_t i = k;
        int kind;
        if (wanted != Py_None) {
            /* facts() runs Python code, which could change the list: look afresh */
            PyObject *item;
            if (k >= PyList_GET_SIZE(wanted))
                goto unusual;
            item = PyList_GET_ITEM(wanted, k);
            if (!PyLong_CheckExact(item))
                goto unusual;
            i = PyLong_AsSsize_t(item);
            if (i == -1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                    goto done;
                PyErr_Clear();
                goto unusual;
            }
            if (i < 0 || i >= st.n)
                goto unusual;
        }
        kind = kind_of(&st, i, says, says_bias, says_file);
        if (kind == -1)
            goto done;
        if (kind < 0)
            goto unusual;
        found[k] = (unsigned char)kind;
    }
    /* no Python code runs from here until the list is full */
    if ((list = PyList_New(count)) == NULL)
        goto done;
    for (k = 0; k < count; k++)
        PyList_SET_ITEM(list, k, Py_NewRef(PyTuple_GET_ITEM(names, found[k])));
    result = Py_NewRef(list);
    goto done;
unusual:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(list);
    PyMem_Free(found);
    for (k = 0; k < st.nfacts; k++) {
        PyMem_Free(st.facts[k].load_lo);
        PyMem_Free(st.facts[k].cand);
    }
    PyMem_Free(st.facts);
    PyMem_Free(st.slots);
    PyMem_Free(block);
    return result;
}
#endif /* __SIZEOF_INT128__ */

static PyMethodDef fastsys_methods[] = {
    {"syscall", (PyCFunction)(void (*)(void))fastsys_syscall, METH_FASTCALL,
     "syscall(number, *args) -> int: the result, or -errno on failure."},
    {"loaded_objects", fastsys_loaded_objects, METH_NOARGS,
     "loaded_objects() -> [(name, addr, phdrs)]: dl_iterate_phdr, copied in C."},
    {"seal_verified", fastsys_seal_verified, METH_VARARGS,
     "seal_verified(maps_fd, ranges) -> [(code, errno)] | None: under the loader's lock, "
     "re-check each range with PROCMAP_QUERY and mseal it if unchanged."},
    {"smaps_columns", (PyCFunction)(void (*)(void))fastsys_smaps_columns, METH_FASTCALL,
     "smaps_columns(data, columns=True) -> (start, end, perms, offset, dev, inode, path, flags, "
     "sealed) | None: the mappings of well-formed smaps text as columns; with columns false "
     "only (mappings, sealed); with columns 2 (mappings, []) when none is sealed, else the "
     "columns."},
    {"read_fd", fastsys_read_fd, METH_VARARGS,
     "read_fd(fd, chunk, size_limit, deadline, clock_every, first) -> (data | None, status): "
     "a file read on to its end after its first piece, into one bytes object, within bounds."},
    {"sealed_json_rows", fastsys_sealed_json_rows, METH_VARARGS,
     "sealed_json_rows(sealed, text_of, kinds=None, row_type=None) -> text | (text, counts, "
     "sizes) | None: one process's sealed list of sealkit audit --json (with its sums per "
     "kind when kinds are given)."},
    {"read_smaps_layout", fastsys_read_smaps_layout, METH_VARARGS,
     "read_smaps_layout(fd, chunk, size_limit, deadline, clock_every, first, counted=False) -> "
     "(kept | None, status[, mappings, sealed]): an smaps file read on to its end, keeping each "
     "mapping's header and VmFlags lines."},
    {"maps_json_rows", fastsys_maps_json_rows, METH_VARARGS,
     "maps_json_rows(start, end, perms, offset, inode, path, vmflags, kinds, sealed_only, text_of) "
     "-> (text, mappings, sealed, sealed_bytes) | None: the region lines of sealkit maps --json."},
#ifdef __SIZEOF_INT128__
    {"classify_kinds", fastsys_classify_kinds, METH_VARARGS,
     "classify_kinds(start, end, perms, path, dev, inode, vmflags, wanted, facts, kinds) "
     "-> [kind] | None: sealkit.host.classify's rules for the common shapes, in C."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastsys_module = {
    PyModuleDef_HEAD_INIT, "_fastsys", "syscall(2) and loader walks at C speed for sealkit._os.", -1,
    fastsys_methods, NULL, NULL, NULL, NULL,
};

/* COUNTED_FORMS: this source has the forms the audit asks for since issue
 * 13 (read_smaps_layout's `counted`, smaps_columns(data, 2),
 * sealed_json_rows's kinds and row type). Python uses them only where it is
 * set: an extension built from an older source (an editable install pulled
 * but not rebuilt) has the same function names with fewer arguments, and is
 * used as it was. */
PyMODINIT_FUNC
PyInit__fastsys(void)
{
    PyObject *m = PyModule_Create(&fastsys_module);

    if (m != NULL && PyModule_AddIntConstant(m, "COUNTED_FORMS", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
