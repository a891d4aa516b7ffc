/*
 * sealkit._os._fastsys: syscall(2) for sealkit._os.syscalls, at C speed, and the two
 * walks of the dynamic loader's list that must run no Python code.
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

static PyMethodDef fastsys_methods[] = {
    {"syscall", (PyCFunction)(void (*)(void))fastsys_syscall, METH_FASTCALL,
     "syscall(number, *args) -> int: the result, or -errno on failure."},
    {"loaded_objects", fastsys_loaded_objects, METH_NOARGS,
     "loaded_objects() -> [(name, addr, phdrs)]: dl_iterate_phdr, copied in C."},
    {"seal_verified", fastsys_seal_verified, METH_VARARGS,
     "seal_verified(maps_fd, ranges) -> [(code, errno)] | None: under the loader's lock, "
     "re-check each range with PROCMAP_QUERY and mseal it if unchanged."},
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
