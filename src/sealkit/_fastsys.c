/*
 * sealkit._fastsys: syscall(2) for sealkit._syscalls, at C speed.
 *
 * ctypes costs ~1 us per call on these machines and cffi ~0.5 us, which is
 * more than mmap + mseal themselves (benchmarks/bench_mseal.py measures it):
 * a Python program sealing fresh pages would run at ~2x the C loop. This
 * module is the whole fast path: one function, no policy. Errors are
 * returned in the kernel's convention (-errno), and sealkit._syscalls stays
 * the one place where they become exceptions. Optional: without a compiler
 * the build skips it and _syscalls falls back to ctypes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <unistd.h>

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

static PyMethodDef fastsys_methods[] = {
    {"syscall", (PyCFunction)(void (*)(void))fastsys_syscall, METH_FASTCALL,
     "syscall(number, *args) -> int: the result, or -errno on failure."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastsys_module = {
    PyModuleDef_HEAD_INIT, "_fastsys", "syscall(2) at C speed for sealkit._syscalls.", -1,
    fastsys_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastsys(void)
{
    return PyModule_Create(&fastsys_module);
}
