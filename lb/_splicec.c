/*
 * C speed-up for the splice pump of lb/tcp.py (TCP mode): one readable event's work in one call.
 *
 * lb/tcp.py's _SpliceFlow holds the reference path (two os.splice calls from Python, each of
 * which releases and re-takes the GIL around a non-blocking system call that does not block);
 * this module does the same two system calls with the GIL held, and the flow uses it when it
 * is built. Without it (no C compiler, or RUMOR_PURE_PYTHON set) the os.splice path runs.
 *
 *   pump(src_fd, pipe_w, pipe_r, dst_fd, size) -> (n_in, left)
 *       splice up to ``size`` bytes src_fd -> pipe_w, then as much as possible pipe_r ->
 *       dst_fd. ``n_in`` is what entered the pipe: > 0, 0 at end of file, -1 when the source
 *       had nothing (EAGAIN/EINTR). ``left`` is what stays in the pipe because the
 *       destination is full (EAGAIN); 0 when everything went on. Any other error raises OSError
 *       (the connection is failed by the caller, so the bytes in the pipe do not matter).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>     /* defines _GNU_SOURCE, which splice() needs */
#include <errno.h>
#include <fcntl.h>

static PyObject *
pump(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "pump(src_fd, pipe_w, pipe_r, dst_fd, size)");
        return NULL;
    }
    long v[5];
    for (int i = 0; i < 5; i++) {
        v[i] = PyLong_AsLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    int sfd = (int)v[0], pw = (int)v[1], pr = (int)v[2], dfd = (int)v[3];
    size_t size = (size_t)v[4];
    const unsigned int flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
    ssize_t n = splice(sfd, NULL, pw, NULL, size, flags);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return Py_BuildValue("(ii)", -1, 0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    ssize_t left = n;
    while (left > 0) {
        ssize_t m = splice(pr, NULL, dfd, NULL, (size_t)left, flags);
        if (m < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (m == 0)
            break;
        left -= m;
    }
    return Py_BuildValue("(nn)", n, left);
}

static PyMethodDef methods[] = {
    {"pump", (PyCFunction)(void (*)(void))pump, METH_FASTCALL,
     "pump(src_fd, pipe_w, pipe_r, dst_fd, size) -> (n_in, left): splice in, then out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_splicec", "splice pump for lb/tcp.py", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__splicec(void)
{
    return PyModule_Create(&module);
}
