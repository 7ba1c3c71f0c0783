/*
 * Batched UDP receive and send for dnsserver/server.py: recvmmsg(2) and sendmmsg(2).
 *
 * The DNS server's batched UDP path (server.py, ``_BatchUDP``) drains its socket with one
 * system call per wake-up instead of one per datagram plus a last one that says EAGAIN, and
 * sends a batch's answers with one system call. Peers travel as the raw sockaddr bytes the
 * kernel gave (never converted to a Python (host, port) tuple and back). server.py holds the
 * pure-Python reference of both functions (``_py_recv``, ``_py_send``, with socket.recvfrom /
 * sendto); tests/unit/dnsserver/test_udp_batch.py checks that both give the same answers.
 *
 * Neither function ever waits: recv takes what is queued now (MSG_DONTWAIT) and returns at once,
 * an empty list when nothing is; a batch never waits to fill.
 *
 *   recv(fd, max, size) -> list[(bytes data, bytes sockaddr)]   at most max datagrams
 *       (1..1024), each cut to size + 1 bytes (so one longer than size stays too long);
 *       [] when none is queued; OSError for any other error before the first datagram
 *       (e.g. ECONNREFUSED from an earlier ICMP error; the caller logs it and reads again).
 *   send(fd, [(bytes data, bytes sockaddr), ...]) -> int  datagrams the kernel took; the rest
 *       (socket buffer full, EAGAIN) are dropped as UDP allows. A datagram that fails alone
 *       (e.g. EINVAL for a bad address) is skipped and counted as not sent.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define MAX_BATCH 1024

/* Receive slots: one area of max * size bytes, grown on demand; the module holds the GIL
 * while it uses it (one event loop thread calls it). */
static unsigned char *slab;
static size_t slab_size;
static struct mmsghdr rmsgs[MAX_BATCH];
static struct iovec riov[MAX_BATCH];
static struct sockaddr_storage raddr[MAX_BATCH];

static PyObject *
udpc_recv(PyObject *self, PyObject *args)
{
    int fd, max, size;
    if (!PyArg_ParseTuple(args, "iii:recv", &fd, &max, &size))
        return NULL;
    if (max < 1)
        max = 1;
    if (max > MAX_BATCH)
        max = MAX_BATCH;
    if (size < 1 || size > 65535) {
        PyErr_SetString(PyExc_ValueError, "recv(): size must be 1-65535");
        return NULL;
    }
    /* Each slot holds size + 1 bytes: a datagram longer than size arrives cut to size + 1, still
     * longer than size, so the caller drops it as oversized exactly as it would the whole. */
    size_t slot = (size_t)size + 1;
    size_t need = (size_t)max * slot;
    if (need > slab_size) {
        unsigned char *p = PyMem_RawRealloc(slab, need);
        if (p == NULL)
            return PyErr_NoMemory();
        slab = p;
        slab_size = need;
    }
    for (int i = 0; i < max; i++) {
        riov[i].iov_base = slab + (size_t)i * slot;
        riov[i].iov_len = slot;
        memset(&rmsgs[i].msg_hdr, 0, sizeof(struct msghdr));
        rmsgs[i].msg_hdr.msg_iov = &riov[i];
        rmsgs[i].msg_hdr.msg_iovlen = 1;
        rmsgs[i].msg_hdr.msg_name = &raddr[i];
        rmsgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        rmsgs[i].msg_len = 0;
    }
    int n;
    do {
        n = recvmmsg(fd, rmsgs, (unsigned int)max, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)riov[i].iov_base,
                                                   (Py_ssize_t)rmsgs[i].msg_len);
        PyObject *addr = PyBytes_FromStringAndSize((const char *)&raddr[i],
                                                   (Py_ssize_t)rmsgs[i].msg_hdr.msg_namelen);
        PyObject *pair = (data && addr) ? PyTuple_Pack(2, data, addr) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(addr);
        if (pair == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, pair);
    }
    return out;
}

static PyObject *
udpc_send(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO:send", &fd, &items))
        return NULL;
    PyObject *seq = PySequence_Fast(items, "send() wants a sequence of (data, addr) pairs");
    if (seq == NULL)
        return NULL;
    Py_ssize_t total = PySequence_Fast_GET_SIZE(seq);
    PyObject **elems = PySequence_Fast_ITEMS(seq);
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    Py_ssize_t sent = 0, pos = 0;
    while (pos < total) {
        int k = 0;
        while (k < 64 && pos + k < total) {
            PyObject *pair = elems[pos + k];
            char *dbuf, *abuf;
            Py_ssize_t dlen, alen;
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
                    || PyBytes_AsStringAndSize(PyTuple_GET_ITEM(pair, 0), &dbuf, &dlen) < 0
                    || PyBytes_AsStringAndSize(PyTuple_GET_ITEM(pair, 1), &abuf, &alen) < 0) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "send() wants (bytes, bytes) pairs");
                Py_DECREF(seq);
                return NULL;
            }
            if (alen > (Py_ssize_t)sizeof(struct sockaddr_storage)) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_ValueError, "send(): address too long");
                return NULL;
            }
            iov[k].iov_base = dbuf;
            iov[k].iov_len = (size_t)dlen;
            memset(&msgs[k].msg_hdr, 0, sizeof(struct msghdr));
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            msgs[k].msg_hdr.msg_name = abuf;
            msgs[k].msg_hdr.msg_namelen = (socklen_t)alen;
            k++;
        }
        int n;
        do {
            n = sendmmsg(fd, msgs, (unsigned int)k, MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                break;                      /* the socket buffer is full: drop the rest */
            pos += 1;                       /* this one fails alone (bad address...): skip it */
            continue;
        }
        sent += n;
        pos += n;
    }
    Py_DECREF(seq);
    return PyLong_FromSsize_t(sent);
}

static PyMethodDef udpc_methods[] = {
    {"recv", udpc_recv, METH_VARARGS,
     "recv(fd, max, size) -> [(data, sockaddr bytes)]: the datagrams queued now (recvmmsg, never waits)."},
    {"send", udpc_send, METH_VARARGS,
     "send(fd, [(data, sockaddr bytes)]) -> int: sendmmsg the answers; returns how many went."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef udpc_module = {
    PyModuleDef_HEAD_INIT, "_udpc",
    "recvmmsg/sendmmsg for the DNS server's UDP socket (see dnsserver/server.py).", -1,
    udpc_methods,
};

PyMODINIT_FUNC
PyInit__udpc(void)
{
    return PyModule_Create(&udpc_module);
}
