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
 *   serve(fd, max, size, exact, miss) -> int   recv + the resolver's level-1 cache hits
 *       answered here + send, in one call per wake-up (see udpc_serve below).
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
udpc_recv_impl(int fd, int max, int size)
{
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
udpc_recv(PyObject *self, PyObject *args)
{
    int fd, max, size;
    if (!PyArg_ParseTuple(args, "iii:recv", &fd, &max, &size))
        return NULL;
    return udpc_recv_impl(fd, max, size);
}

/* sendmmsg every message, in chunks; returns how many the kernel took. A full socket buffer
 * (EAGAIN, ENOBUFS) drops the rest, as UDP may; a message that fails alone is skipped. */
static Py_ssize_t
send_all(int fd, struct mmsghdr *msgs, int total)
{
    Py_ssize_t sent = 0;
    int pos = 0;
    while (pos < total) {
        int n;
        do {
            n = sendmmsg(fd, msgs + pos, (unsigned int)(total - pos), MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                break;
            pos += 1;
            continue;
        }
        sent += n;
        pos += n;
    }
    return sent;
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
        sent += send_all(fd, msgs, k);
        pos += k;
    }
    Py_DECREF(seq);
    return PyLong_FromSsize_t(sent);
}

/* serve(): the whole hot path of a wake-up for answers already cached by exact query bytes.
 *
 * ``exact`` is the resolver's level-1 index (dnsserver/resolver.py, Resolver._exact): the query
 * bytes after the ID -> its cache entry (an object with ``n``, ``hits`` and ``tails``). For
 * each datagram this does what Resolver.handle does at level 1, and nothing else: when the
 * entry is there and the packet of its turn is already assembled, the answer is the client's ID
 * followed by that packet (sent from the entry's own bytes, no copy), and ``hits`` goes up by
 * one (the rotation and the counters read it). Anything else (no entry, a forwarded name, a
 * rotation not yet assembled) goes to ``miss(data, sockaddr)``, the Python path, which answers
 * it exactly as before and returns the bytes to send or None. The caller checks the catalog
 * index (and flushes the cache when it moved) before calling, so no answer here is stale.
 *
 *   serve(fd, max, size, exact, miss) -> int   datagrams received (0 when none was queued)
 */
#define SERVE_MAX 256           /* datagrams per serve() call at most (its arrays are on the stack) */

static PyObject *str_n, *str_hits, *str_tails;

static PyObject *
udpc_serve(PyObject *self, PyObject *args)
{
    int fd, max, size;
    PyObject *exact, *miss;
    if (!PyArg_ParseTuple(args, "iiiO!O:serve", &fd, &max, &size, &PyDict_Type, &exact, &miss))
        return NULL;
    if (max > SERVE_MAX)
        max = SERVE_MAX;
    PyObject *pkts = udpc_recv_impl(fd, max, size);
    if (pkts == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(pkts);
    struct mmsghdr msgs[SERVE_MAX];
    struct iovec iov[SERVE_MAX][2];
    PyObject *keep[SERVE_MAX];          /* the answer bytes each message points into */
    int k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(pkts, i);
        PyObject *data = PyTuple_GET_ITEM(pair, 0);
        PyObject *addr = PyTuple_GET_ITEM(pair, 1);
        Py_ssize_t dlen = PyBytes_GET_SIZE(data);
        const char *d = PyBytes_AS_STRING(data);
        PyObject *tail = NULL;          /* new reference when found */
        if (dlen > 2) {
            PyObject *key = PyBytes_FromStringAndSize(d + 2, dlen - 2);
            if (key == NULL)
                goto fail;
            PyObject *e = PyDict_GetItemWithError(exact, key);      /* borrowed */
            Py_DECREF(key);
            if (e == NULL && PyErr_Occurred())
                goto fail;
            if (e != NULL) {
                Py_INCREF(e);
                PyObject *on = PyObject_GetAttr(e, str_n);
                PyObject *oh = on ? PyObject_GetAttr(e, str_hits) : NULL;
                PyObject *ot = oh ? PyObject_GetAttr(e, str_tails) : NULL;
                if (ot == NULL) {
                    Py_XDECREF(on);
                    Py_XDECREF(oh);
                    Py_DECREF(e);
                    goto fail;
                }
                long en = PyLong_AsLong(on);
                long long hits = PyLong_AsLongLong(oh);
                if (PyErr_Occurred()) {
                    PyErr_Clear();
                    en = 0;             /* not what we know: let the Python path answer */
                }
                if (en >= 1 && PyList_Check(ot)) {
                    long long r = en == 1 ? 0 : (hits + 1) % en;
                    if (r < PyList_GET_SIZE(ot)) {
                        PyObject *t = PyList_GET_ITEM(ot, (Py_ssize_t)r);
                        if (PyBytes_CheckExact(t)) {
                            PyObject *nh = PyLong_FromLongLong(hits + 1);
                            if (nh == NULL || PyObject_SetAttr(e, str_hits, nh) < 0) {
                                Py_XDECREF(nh);
                                Py_DECREF(on);
                                Py_DECREF(oh);
                                Py_DECREF(ot);
                                Py_DECREF(e);
                                goto fail;
                            }
                            Py_DECREF(nh);
                            tail = t;
                            Py_INCREF(tail);
                        }
                    }
                }
                Py_DECREF(on);
                Py_DECREF(oh);
                Py_DECREF(ot);
                Py_DECREF(e);
            }
        }
        if (tail != NULL) {
            iov[k][0].iov_base = (void *)d;              /* the client's ID */
            iov[k][0].iov_len = 2;
            iov[k][1].iov_base = PyBytes_AS_STRING(tail);
            iov[k][1].iov_len = (size_t)PyBytes_GET_SIZE(tail);
            msgs[k].msg_hdr.msg_iovlen = 2;
        } else {
            tail = PyObject_CallFunctionObjArgs(miss, data, addr, NULL);
            if (tail == NULL) {
                PyErr_WriteUnraisable(miss);              /* miss() never raises; if it did */
                continue;
            }
            if (!PyBytes_CheckExact(tail)) {              /* None: nothing to send */
                Py_DECREF(tail);
                continue;
            }
            iov[k][0].iov_base = PyBytes_AS_STRING(tail);
            iov[k][0].iov_len = (size_t)PyBytes_GET_SIZE(tail);
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        msgs[k].msg_hdr.msg_iov = iov[k];
        msgs[k].msg_hdr.msg_name = PyBytes_AS_STRING(addr);
        msgs[k].msg_hdr.msg_namelen = (socklen_t)PyBytes_GET_SIZE(addr);
        msgs[k].msg_hdr.msg_control = NULL;
        msgs[k].msg_hdr.msg_controllen = 0;
        msgs[k].msg_hdr.msg_flags = 0;
        keep[k] = tail;
        k++;
    }
    send_all(fd, msgs, k);
    for (int j = 0; j < k; j++)
        Py_DECREF(keep[j]);
    Py_DECREF(pkts);
    return PyLong_FromSsize_t(n);
fail:
    for (int j = 0; j < k; j++)
        Py_DECREF(keep[j]);
    Py_DECREF(pkts);
    return NULL;
}

static PyMethodDef udpc_methods[] = {
    {"recv", udpc_recv, METH_VARARGS,
     "recv(fd, max, size) -> [(data, sockaddr bytes)]: the datagrams queued now (recvmmsg, never waits)."},
    {"serve", udpc_serve, METH_VARARGS,
     "serve(fd, max, size, exact, miss) -> int: receive, answer level-1 cache hits, send."},
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
    str_n = PyUnicode_InternFromString("n");
    str_hits = PyUnicode_InternFromString("hits");
    str_tails = PyUnicode_InternFromString("tails");
    if (str_n == NULL || str_hits == NULL || str_tails == NULL)
        return NULL;
    return PyModule_Create(&udpc_module);
}
