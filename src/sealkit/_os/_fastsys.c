/*
 * sealkit._os._fastsys: syscall(2) for sealkit._os.syscalls, at C speed, the two
 * walks of the dynamic loader's list that must run no Python code, and the
 * audit's smaps reader, scanner and `maps --json` row writer (read_fd,
 * smaps_columns, maps_json_rows, further down).
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
 * there are and which are sealed, with no object per mapping. It reads what the kernel prints
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
    smaps_header h;
    int c, build = 1;

    (void)self;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "smaps_columns(data, columns=True)");
        return NULL;
    }
    arg = args[0];
    if (nargs == 2 && (build = PyObject_IsTrue(args[1])) < 0)
        return NULL;
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
    p = text;
    e = memchr(p, '\n', (size_t)size);
    if (e == NULL || !scan_header(p, e, &h))
        goto unusual;
    for (;;) {
        /* e is at the '\n' after the header: its VmFlags line comes next */
        flags = memmem(e, (size_t)(end - e), FLAGS_TAG, FLAGS_TAG_LEN);
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
                || append_new(cols[5], PyLong_FromUnsignedLongLong(h.inode)) < 0
                || append_new(cols[6], smaps_path(h.path, h.path_len)) < 0
                || append_new(cols[7], cached_bytes(flagsets, flags, flags_end - flags)) < 0)
                goto fail;
        }
        {
            Py_ssize_t n = flags_end - flags;
            if ((n >= 4 && memmem(flags, (size_t)n, " sl ", 4) != NULL)
                || (n >= 3 && memcmp(flags_end - 3, " sl", 3) == 0)) {
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

static int
out_add(outbuf *o, const char *p, Py_ssize_t n)
{
    if (out_reserve(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, p, (size_t)n);
    o->len += n;
    return 0;
}

/* The ASCII text of str s (text_of's answers and kinds must be ASCII). */
static int
out_str(outbuf *o, PyObject *s)
{
    if (!PyUnicode_Check(s) || !PyUnicode_IS_ASCII(s)) {
        PyErr_SetString(PyExc_ValueError, "maps_json_rows: text must be ASCII str");
        return -1;
    }
    return out_add(o, (const char *)PyUnicode_1BYTE_DATA(s), PyUnicode_GET_LENGTH(s));
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

/* One region line: texts are text_of's answers for its permissions, path and
 * flags. 0, or -1 with an exception set. */
static int
write_row(outbuf *o, char *num, size_t size, unsigned long long start, unsigned long long end,
          unsigned long long offset, unsigned long long inode, int sealed, PyObject *const *texts,
          PyObject *kind)
{
    if (o->len && out_add(o, ",\n  ", 4) < 0)
        return -1;
    snprintf(num, size, "{\"start\": \"0x%llx\", \"end\": \"0x%llx\", \"size\": %llu, \"perms\": ",
             start, end, end - start);
    if (out_add(o, num, (Py_ssize_t)strlen(num)) < 0 || out_str(o, texts[0]) < 0)
        return -1;
    if (out_add(o, sealed ? ", \"sealed\": true, \"kind\": \"" : ", \"sealed\": false, \"kind\": \"",
                sealed ? 27 : 28) < 0
        || out_str(o, kind) < 0 || out_add(o, "\", \"path\": ", 11) < 0 || out_str(o, texts[1]) < 0)
        return -1;
    snprintf(num, size, ", \"offset\": %llu, \"inode\": %llu, \"vmflags\": ", offset, inode);
    if (out_add(o, num, (Py_ssize_t)strlen(num)) < 0 || out_str(o, texts[2]) < 0
        || out_add(o, "}", 1) < 0)
        return -1;
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
    char num[160];
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
                r = write_row(&o, num, sizeof num, start, end, offset, inode, sealed, texts,
                              held[3]);
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
     "only (mappings, sealed)."},
    {"read_fd", fastsys_read_fd, METH_VARARGS,
     "read_fd(fd, chunk, size_limit, deadline, clock_every, first) -> (data | None, status): "
     "a file read on to its end after its first piece, into one bytes object, within bounds."},
    {"maps_json_rows", fastsys_maps_json_rows, METH_VARARGS,
     "maps_json_rows(start, end, perms, offset, inode, path, vmflags, kinds, sealed_only, text_of) "
     "-> (text, mappings, sealed, sealed_bytes) | None: the region lines of sealkit maps --json."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastsys_module = {
    PyModuleDef_HEAD_INIT, "_fastsys", "syscall(2) and loader walks at C speed for sealkit._os.", -1,
    fastsys_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastsys(void)
{
    return PyModule_Create(&fastsys_module);
}
