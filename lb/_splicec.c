/*
 * C speed-up for the splice pump of lb/tcp.py (TCP mode): a readable event handled in C.
 *
 * lb/tcp.py's _SpliceFlow holds the reference path (on_readable: two os.splice calls from
 * Python, each of which releases and re-takes the GIL around a non-blocking system call);
 * this module does the same with the GIL held, and the flow uses it when it is built. Without
 * it (no C compiler, or RUMOR_PURE_PYTHON set) the os.splice path runs.
 *
 *   Pump(src_fd, pipe_w, pipe_r, dst_fd, size, slow)
 *       a callable object that the event loop calls directly as the source's reader
 *       callback (no Python frame per event): splice up to ``size`` bytes src_fd -> pipe_w,
 *       then as much as possible pipe_r -> dst_fd. The common case, some bytes in and all
 *       of them out (or nothing to read: EAGAIN), only adds to ``moved``; anything else calls back
 *       ``slow(n_in, left)`` in Python: (0, 0) end of file, (n, left) destination full with
 *       ``left`` bytes in the pipe, (-1, errno) an error. ``take()`` returns ``moved`` and
 *       sets it to 0 (the flow adds it to the byte counters when they are read).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>     /* defines _GNU_SOURCE, which splice() needs */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>

#define FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)

/* splice pipe_r -> dst_fd until the pipe is empty or dst is full; returns what is left, or
 * -errno on an error */
static ssize_t
drain(int pr, int dfd, ssize_t left)
{
    while (left > 0) {
        ssize_t m = splice(pr, NULL, dfd, NULL, (size_t)left, FLAGS);
        if (m < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -errno;
        }
        if (m == 0)
            break;
        left -= m;
    }
    return left;
}

typedef struct {
    PyObject_HEAD
    int sfd, pw, pr, dfd;
    size_t size;
    long long moved;
    PyObject *slow;
    vectorcallfunc vectorcall;
} Pump;

static PyObject *
Pump_step(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Pump *p = (Pump *)op;
    ssize_t n = splice(p->sfd, NULL, p->pw, NULL, p->size, FLAGS);
    ssize_t a, b;
    if (n > 0) {
        p->moved += n;
        ssize_t left = drain(p->pr, p->dfd, n);
        if (left == 0)
            Py_RETURN_NONE;                 /* the common case */
        if (left > 0) {
            a = n;
            b = left;
        } else {
            a = -1;
            b = -left;
        }
    } else if (n == 0) {
        a = 0;
        b = 0;
    } else if (errno == EAGAIN || errno == EINTR) {
        Py_RETURN_NONE;
    } else {
        a = -1;
        b = errno;
    }
    return PyObject_CallFunction(p->slow, "nn", a, b);
}

static PyObject *
Pump_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    int sfd, pw, pr, dfd;
    Py_ssize_t size;
    PyObject *slow;
    if (!PyArg_ParseTuple(args, "iiiinO:Pump", &sfd, &pw, &pr, &dfd, &size, &slow))
        return NULL;
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "Pump: slow must be callable");
        return NULL;
    }
    Pump *p = (Pump *)type->tp_alloc(type, 0);
    if (p == NULL)
        return NULL;
    p->sfd = sfd;
    p->pw = pw;
    p->pr = pr;
    p->dfd = dfd;
    p->size = size > 0 ? (size_t)size : 65536;
    p->moved = 0;
    Py_INCREF(slow);
    p->slow = slow;
    p->vectorcall = Pump_step;
    return (PyObject *)p;
}

static int
Pump_traverse(Pump *p, visitproc visit, void *arg)
{
    Py_VISIT(p->slow);
    return 0;
}

static int
Pump_clear(Pump *p)
{
    Py_CLEAR(p->slow);
    return 0;
}

static void
Pump_dealloc(Pump *p)
{
    PyObject_GC_UnTrack(p);
    Pump_clear(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyObject *
Pump_take(Pump *p, PyObject *Py_UNUSED(ignored))
{
    long long m = p->moved;
    p->moved = 0;
    return PyLong_FromLongLong(m);
}

static PyMethodDef Pump_methods[] = {
    {"take", (PyCFunction)Pump_take, METH_NOARGS,
     "take() -> bytes moved since the last take()"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lb._splicec.Pump",
    .tp_basicsize = sizeof(Pump),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Pump(src_fd, pipe_w, pipe_r, dst_fd, size, slow): one readable event's "
              "splices, as a reader callback",
    .tp_new = Pump_new,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_traverse = (traverseproc)Pump_traverse,
    .tp_clear = (inquiry)Pump_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Pump, vectorcall),
    .tp_methods = Pump_methods,
};

static PyMethodDef methods[] = {
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_splicec", "splice pump for lb/tcp.py", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__splicec(void)
{
    if (PyType_Ready(&PumpType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&PumpType);
    if (PyModule_AddObject(m, "Pump", (PyObject *)&PumpType) < 0) {
        Py_DECREF(&PumpType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
