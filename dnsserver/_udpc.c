/*
 * Batched UDP receive and send for dnsserver/server.py: recvmmsg(2) and sendmmsg(2), and a
 * thread that answers cache hits off the event loop (Server, below).
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
#include <fcntl.h>
#include <sys/time.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
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

/* Server: cache hits answered on a thread of its own, off the event loop and without the GIL.
 *
 * Server(fd, size, answer_max, max_entries, buckets_ns, sample, max_bytes=32 MiB) starts a POSIX thread that
 * blocks in recvmmsg(2) on ``fd`` (a blocking UDP socket) and, for each datagram whose bytes
 * after the ID are a key of its table at the current generation, sends the client's ID followed
 * by the stored packet of the entry's turn (one sendmmsg per batch). It never touches a Python
 * object: the table holds C copies of the packets, and everything else goes to Python. Every
 * other datagram (no entry, an entry of an older generation, one too short or too long) is
 * queued for Python with its raw sockaddr, and ``eventfd`` (which the event loop watches)
 * becomes readable; ``take()`` returns the queued datagrams.
 *
 * Exactness: ``generation`` rises by one with ``bump()``, which the embedder calls on every
 * catalog change (synchronously, in the change). An entry answers only while its generation is
 * the current one, read under the table lock after the datagram was received, so a query sent
 * after a change returned can never get an answer built before it (dnsserver/server.py,
 * ``_ThreadUDP``). The Python path stays the reference: it answers whatever is queued to it.
 *
 *   put(key, generation, tails, turn, owner) -> bool   store an answer (False: not stored:
 *       generation already old, a packet longer than answer_max, or the table full: at
 *       max_entries, or its keys and packets at max_bytes)
 *   take() -> list[(bytes data, bytes sockaddr)]       the queued datagrams (resets eventfd)
 *   hits() -> list[(owner, int)]    hits answered here since the last call, per owner
 *   clear() -> list[(owner, int)]   empty the table (returning its uncounted hits)
 *   latency() -> (sum_ns, [count per bucket])  of the sampled batches since the last call
 *   tick(n) -> int     Python answered n datagrams: how many of them the sampling times
 *   dropped -> int                  datagrams dropped because the queue for Python was full
 *   bump(), generation, eventfd, stop() (joins the thread; the caller closes fd afterwards)
 */
#define T_BATCH 64
#define T_QUEUE_MAX 4096
#define T_MAX_BUCKETS 32

typedef struct tentry {
    struct tentry *next;
    uint64_t hash;
    uint64_t gen;
    uint64_t turn;              /* the rotation: answer (turn + 1) % n, as Resolver.handle */
    uint64_t uncounted;         /* hits not yet returned by hits() */
    PyObject *owner;            /* strong reference; touched only with the GIL held */
    size_t klen;
    size_t bytes;               /* key + packets: what the table's byte budget counts */
    int n;
    unsigned char *key;
    size_t *tlen;
    unsigned char **tails;
} tentry;

typedef struct tmiss {
    struct tmiss *next;
    size_t len;
    socklen_t alen;
    struct sockaddr_storage addr;
    unsigned char data[];
} tmiss;

typedef struct {
    PyObject_HEAD
    PyObject *graveyard;        /* [(owner, hits)] of replaced entries, for hits() */
    int fd, efd, size, answer_max, started, stopped, sample, nbuckets;
    pthread_t thread;
    pthread_mutex_t lock;
    _Atomic uint64_t gen;
    atomic_int stop;
    /* the table (under lock) */
    tentry **buckets;
    size_t nbuck, count, max_entries, bytes, max_bytes;
    /* the queue for Python (under lock) */
    tmiss *qhead, *qtail;
    size_t qlen;
    uint64_t dropped;
    /* sampled latency (under lock) */
    uint64_t lat_sum, lat[T_MAX_BUCKETS + 1], bounds[T_MAX_BUCKETS];
    uint64_t turn_all;          /* datagrams answered here, for the sampling */
    /* the thread's own buffers */
    unsigned char *rslab, *sslab;
    struct mmsghdr rmsgs[T_BATCH], smsgs[T_BATCH];
    struct iovec riov[T_BATCH], siov[T_BATCH];
    struct sockaddr_storage raddr[T_BATCH];
} Server;

static uint64_t
t_hash(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;                /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void
t_free_entry(tentry *e)
{
    for (int i = 0; i < e->n; i++)
        PyMem_RawFree(e->tails[i]);
    PyMem_RawFree(e->tails);
    PyMem_RawFree(e->tlen);
    PyMem_RawFree(e->key);
    PyMem_RawFree(e);
}

static uint64_t
t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *
t_run(void *arg)
{
    Server *s = arg;
    size_t rslot = (size_t)s->size + 1, sslot = (size_t)s->answer_max + 2;
    for (int i = 0; i < T_BATCH; i++) {
        s->riov[i].iov_base = s->rslab + (size_t)i * rslot;
        s->riov[i].iov_len = rslot;
        memset(&s->rmsgs[i].msg_hdr, 0, sizeof(struct msghdr));
        s->rmsgs[i].msg_hdr.msg_iov = &s->riov[i];
        s->rmsgs[i].msg_hdr.msg_iovlen = 1;
        s->rmsgs[i].msg_hdr.msg_name = &s->raddr[i];
        s->rmsgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
    }
    int used = 0;               /* slots the last recvmmsg filled (their namelen changed) */
    while (!atomic_load(&s->stop)) {
        for (int i = 0; i < used; i++)
            s->rmsgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        used = 0;
        /* Blocks for the first datagram, then takes what else is queued (never waits more). */
        int n = recvmmsg(s->fd, s->rmsgs, T_BATCH, MSG_WAITFORONE, NULL);
        if (atomic_load(&s->stop))
            break;
        if (n <= 0) {
            if (n < 0 && errno == EBADF)
                break;
            continue;       /* EAGAIN (the receive timeout), EINTR, ECONNREFUSED from ICMP */
        }
        used = n;
        uint64_t t0 = t_now();
        int k = 0, signal = 0;
        pthread_mutex_lock(&s->lock);
        uint64_t before = s->turn_all;
        uint64_t gen = atomic_load(&s->gen);
        for (int i = 0; i < n; i++) {
            unsigned char *d = s->riov[i].iov_base;
            size_t len = s->rmsgs[i].msg_len;
            tentry *e = NULL;
            if (len > 2 && len <= (size_t)s->size) {
                uint64_t h = t_hash(d + 2, len - 2);
                for (e = s->buckets[h & (s->nbuck - 1)]; e != NULL; e = e->next)
                    if (e->hash == h && e->klen == len - 2 && memcmp(e->key, d + 2, len - 2) == 0)
                        break;
                if (e != NULL && e->gen != gen)
                    e = NULL;
            }
            if (e != NULL) {
                e->turn++;
                e->uncounted++;
                int r = e->n == 1 ? 0 : (int)(e->turn % (uint64_t)e->n);
                unsigned char *out = s->sslab + (size_t)k * sslot;
                out[0] = d[0];
                out[1] = d[1];
                memcpy(out + 2, e->tails[r], e->tlen[r]);
                s->siov[k].iov_base = out;
                s->siov[k].iov_len = e->tlen[r] + 2;
                memset(&s->smsgs[k].msg_hdr, 0, sizeof(struct msghdr));
                s->smsgs[k].msg_hdr.msg_iov = &s->siov[k];
                s->smsgs[k].msg_hdr.msg_iovlen = 1;
                s->smsgs[k].msg_hdr.msg_name = &s->raddr[i];
                s->smsgs[k].msg_hdr.msg_namelen = s->rmsgs[i].msg_hdr.msg_namelen;
                k++;
                continue;
            }
            if (s->qlen >= T_QUEUE_MAX) {
                s->dropped++;
                continue;
            }
            tmiss *m = malloc(sizeof(tmiss) + len);
            if (m == NULL) {
                s->dropped++;
                continue;
            }
            m->next = NULL;
            m->len = len;
            m->alen = s->rmsgs[i].msg_hdr.msg_namelen;
            memcpy(&m->addr, &s->raddr[i], m->alen);
            memcpy(m->data, d, len);
            if (s->qtail)
                s->qtail->next = m;
            else {
                s->qhead = m;
                signal = 1;         /* the queue was empty: wake the event loop */
            }
            s->qtail = m;
            s->qlen++;
        }
        s->turn_all += (uint64_t)k;
        /* how many sampled turns the batch holds: each stands for ``sample`` queries */
        uint64_t timed = s->sample > 0 ? s->turn_all / (uint64_t)s->sample
                                         - before / (uint64_t)s->sample : 0;
        if (signal) {
            uint64_t one = 1;
            ssize_t w = write(s->efd, &one, sizeof one);
            (void)w;
        }
        pthread_mutex_unlock(&s->lock);
        if (k > 0)
            send_all(s->fd, s->smsgs, k);
        if (timed) {
            uint64_t dt = t_now() - t0, w = (uint64_t)s->sample * timed;
            int b = 0;
            while (b < s->nbuckets && s->bounds[b] < dt)
                b++;
            pthread_mutex_lock(&s->lock);
            s->lat_sum += dt * w;
            s->lat[b] += w;
            pthread_mutex_unlock(&s->lock);
        }
    }
    return NULL;
}

static void
server_dealloc(PyObject *self)
{
    Server *s = (Server *)self;
    if (s->started && !s->stopped) {
        /* stop() was not called: the fd may be closed (even reused) by now, so no shutdown();
         * the thread sees the flag within its receive timeout */
        atomic_store(&s->stop, 1);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(s->thread, NULL);
        Py_END_ALLOW_THREADS
        s->stopped = 1;
    }
    if (s->buckets) {
        for (size_t b = 0; b < s->nbuck; b++) {
            tentry *e = s->buckets[b];
            while (e) {
                tentry *nx = e->next;
                Py_XDECREF(e->owner);
                t_free_entry(e);
                e = nx;
            }
        }
        PyMem_RawFree(s->buckets);
    }
    tmiss *m = s->qhead;
    while (m) {
        tmiss *nx = m->next;
        free(m);
        m = nx;
    }
    Py_XDECREF(s->graveyard);
    if (s->efd >= 0)
        close(s->efd);
    PyMem_RawFree(s->rslab);
    PyMem_RawFree(s->sslab);
    if (s->started)
        pthread_mutex_destroy(&s->lock);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
server_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    int fd, size, answer_max, sample;
    Py_ssize_t max_entries;
    PyObject *bounds;
    Py_ssize_t max_bytes = 32 << 20;
    static char *names[] = {"fd", "size", "answer_max", "max_entries", "buckets_ns", "sample",
                            "max_bytes", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiinOi|n:Server", names, &fd, &size,
                                     &answer_max, &max_entries, &bounds, &sample, &max_bytes))
        return NULL;
    if (size < 1 || size > 65535 || answer_max < 12 || answer_max > 65535 || max_entries < 1
            || max_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "Server(): size, answer_max or max_entries out of range");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(bounds, "buckets_ns: a sequence of ints");
    if (seq == NULL)
        return NULL;
    Py_ssize_t nb = PySequence_Fast_GET_SIZE(seq);
    if (nb > T_MAX_BUCKETS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "Server(): too many latency buckets");
        return NULL;
    }
    Server *s = (Server *)type->tp_alloc(type, 0);
    if (s == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    s->efd = -1;
    s->fd = fd;
    s->graveyard = PyList_New(0);
    if (s->graveyard == NULL) {
        Py_DECREF(seq);
        Py_DECREF(s);
        return NULL;
    }
    s->size = size;
    s->answer_max = answer_max;
    s->sample = sample;
    s->nbuckets = (int)nb;
    for (Py_ssize_t i = 0; i < nb; i++) {
        unsigned long long v = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (PyErr_Occurred()) {
            Py_DECREF(seq);
            Py_DECREF(s);
            return NULL;
        }
        s->bounds[i] = v;
    }
    Py_DECREF(seq);
    s->max_entries = (size_t)max_entries;
    s->max_bytes = (size_t)max_bytes;
    s->nbuck = 16;
    while (s->nbuck < s->max_entries * 2)
        s->nbuck <<= 1;
    s->buckets = PyMem_RawCalloc(s->nbuck, sizeof(tentry *));
    s->rslab = PyMem_RawMalloc((size_t)T_BATCH * ((size_t)size + 1));
    s->sslab = PyMem_RawMalloc((size_t)T_BATCH * ((size_t)answer_max + 2));
    if (s->buckets == NULL || s->rslab == NULL || s->sslab == NULL) {
        Py_DECREF(s);
        return PyErr_NoMemory();
    }
    atomic_store(&s->gen, 1);
    /* The thread blocks in recvmmsg (a non-blocking fd would make it spin), with a receive
     * timeout so that it looks at its stop flag at least once a second even if nothing wakes
     * it (stop() does, with shutdown(); a dealloc without stop() cannot). */
    struct timeval tv = {1, 0};
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0
            || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(s);
        return NULL;
    }
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->started = 1;
    int err = pthread_create(&s->thread, NULL, t_run, s);
    if (err != 0) {
        s->started = 0;
        pthread_mutex_destroy(&s->lock);
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static PyObject *
server_stop(PyObject *self, PyObject *unused)
{
    Server *s = (Server *)self;
    if (s->started && !s->stopped) {
        atomic_store(&s->stop, 1);
        shutdown(s->fd, SHUT_RD);       /* wakes the blocked recvmmsg (it returns 0) */
        Py_BEGIN_ALLOW_THREADS
        pthread_join(s->thread, NULL);
        Py_END_ALLOW_THREADS
        s->stopped = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *
server_bump(PyObject *self, PyObject *unused)
{
    Server *s = (Server *)self;
    return PyLong_FromUnsignedLongLong(atomic_fetch_add(&s->gen, 1) + 1);
}

static PyObject *
server_put(PyObject *self, PyObject *args)
{
    Server *s = (Server *)self;
    Py_buffer key;
    unsigned long long gen, turn;
    PyObject *tails, *owner;
    if (!PyArg_ParseTuple(args, "y*KO!KO:put", &key, &gen, &PyList_Type, &tails, &turn, &owner))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(tails);
    if (n < 1 || n > 1024 || key.len < 1) {
        PyBuffer_Release(&key);
        Py_RETURN_FALSE;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(tails, i);
        if (!PyBytes_CheckExact(t) || PyBytes_GET_SIZE(t) > s->answer_max - 2) {
            PyBuffer_Release(&key);
            Py_RETURN_FALSE;
        }
    }
    tentry *e = PyMem_RawCalloc(1, sizeof(tentry));
    if (e == NULL) {
        PyBuffer_Release(&key);
        return PyErr_NoMemory();
    }
    e->n = (int)n;
    e->klen = (size_t)key.len;
    e->key = PyMem_RawMalloc(e->klen);
    e->tlen = PyMem_RawCalloc((size_t)n, sizeof(size_t));
    e->tails = PyMem_RawCalloc((size_t)n, sizeof(unsigned char *));
    int bad = e->key == NULL || e->tlen == NULL || e->tails == NULL;
    for (Py_ssize_t i = 0; !bad && i < n; i++) {
        PyObject *t = PyList_GET_ITEM(tails, i);
        e->tlen[i] = (size_t)PyBytes_GET_SIZE(t);
        e->tails[i] = PyMem_RawMalloc(e->tlen[i] + 1);
        if (e->tails[i] == NULL)
            bad = 1;
        else
            memcpy(e->tails[i], PyBytes_AS_STRING(t), e->tlen[i]);
    }
    if (bad) {
        if (e->tails == NULL || e->tlen == NULL)
            e->n = 0;
        t_free_entry(e);
        PyBuffer_Release(&key);
        return PyErr_NoMemory();
    }
    memcpy(e->key, key.buf, e->klen);
    PyBuffer_Release(&key);
    e->bytes = e->klen;
    for (int i = 0; i < e->n; i++)
        e->bytes += e->tlen[i];
    e->hash = t_hash(e->key, e->klen);
    e->gen = gen;
    e->turn = turn;
    Py_INCREF(owner);
    e->owner = owner;
    PyObject *old_owner = NULL;
    uint64_t old_hits = 0;
    int stored = 1;
    pthread_mutex_lock(&s->lock);
    if (gen != atomic_load(&s->gen)) {
        stored = 0;                     /* built before a change: never served */
    } else {
        tentry **pp = &s->buckets[e->hash & (s->nbuck - 1)];
        while (*pp && !((*pp)->hash == e->hash && (*pp)->klen == e->klen
                        && memcmp((*pp)->key, e->key, e->klen) == 0))
            pp = &(*pp)->next;
        if (*pp && s->bytes - (*pp)->bytes + e->bytes > s->max_bytes) {
            stored = 0;
        } else if (*pp) {                /* replace */
            tentry *old = *pp;
            s->bytes = s->bytes - old->bytes + e->bytes;
            e->next = old->next;
            *pp = e;
            old_owner = old->owner;
            old_hits = old->uncounted;
            old->owner = NULL;
            t_free_entry(old);
        } else if (s->count >= s->max_entries || s->bytes + e->bytes > s->max_bytes) {
            stored = 0;
        } else {
            s->bytes += e->bytes;
            e->next = s->buckets[e->hash & (s->nbuck - 1)];
            s->buckets[e->hash & (s->nbuck - 1)] = e;
            s->count++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (!stored) {
        Py_DECREF(owner);
        e->owner = NULL;
        t_free_entry(e);
        Py_RETURN_FALSE;
    }
    if (old_owner != NULL) {
        /* the replaced entry's hits go out with the next hits() or clear() */
        PyObject *pair = old_hits ? Py_BuildValue("(OK)", old_owner,
                                                  (unsigned long long)old_hits) : NULL;
        if (pair != NULL && PyList_Append(s->graveyard, pair) < 0)
            PyErr_Clear();
        else if (pair == NULL)
            PyErr_Clear();
        Py_XDECREF(pair);
        Py_DECREF(old_owner);
    }
    Py_RETURN_TRUE;
}

static PyObject *
t_collect(Server *s, int clear)
{
    PyObject *out = s->graveyard;       /* hits of replaced entries first */
    s->graveyard = PyList_New(0);
    if (s->graveyard == NULL) {
        s->graveyard = out;
        return NULL;
    }
    tentry *freed = NULL;
    pthread_mutex_lock(&s->lock);
    for (size_t b = 0; b < s->nbuck; b++) {
        for (tentry *e = s->buckets[b]; e != NULL; e = e->next) {
            if (e->uncounted) {
                PyObject *pair = Py_BuildValue("(OK)", e->owner, (unsigned long long)e->uncounted);
                if (pair == NULL || PyList_Append(out, pair) < 0) {
                    Py_XDECREF(pair);
                    pthread_mutex_unlock(&s->lock);
                    Py_DECREF(out);
                    return NULL;
                }
                Py_DECREF(pair);
                e->uncounted = 0;
            }
        }
        if (clear) {
            tentry *e = s->buckets[b];
            while (e) {
                tentry *nx = e->next;
                e->next = freed;
                freed = e;
                e = nx;
            }
            s->buckets[b] = NULL;
        }
    }
    if (clear)
        s->count = s->bytes = 0;
    pthread_mutex_unlock(&s->lock);
    while (freed) {
        tentry *nx = freed->next;
        Py_XDECREF(freed->owner);
        t_free_entry(freed);
        freed = nx;
    }
    return out;
}

static PyObject *
server_hits(PyObject *self, PyObject *unused)
{
    return t_collect((Server *)self, 0);
}

static PyObject *
server_clear(PyObject *self, PyObject *unused)
{
    return t_collect((Server *)self, 1);
}

static PyObject *
server_take(PyObject *self, PyObject *unused)
{
    Server *s = (Server *)self;
    pthread_mutex_lock(&s->lock);
    tmiss *m = s->qhead;
    s->qhead = s->qtail = NULL;
    s->qlen = 0;
    uint64_t v;
    ssize_t r = read(s->efd, &v, sizeof v);     /* reset: the queue is empty now */
    (void)r;
    pthread_mutex_unlock(&s->lock);
    PyObject *out = PyList_New(0);
    while (m) {
        tmiss *nx = m->next;
        if (out != NULL) {
            PyObject *pair = Py_BuildValue("(y#y#)", (const char *)m->data, (Py_ssize_t)m->len,
                                           (const char *)&m->addr, (Py_ssize_t)m->alen);
            if (pair == NULL || PyList_Append(out, pair) < 0) {
                Py_CLEAR(out);
            }
            Py_XDECREF(pair);
        }
        free(m);
        m = nx;
    }
    return out;
}

static PyObject *
server_latency(PyObject *self, PyObject *unused)
{
    Server *s = (Server *)self;
    uint64_t lat[T_MAX_BUCKETS + 1], sum;
    pthread_mutex_lock(&s->lock);
    sum = s->lat_sum;
    s->lat_sum = 0;
    memcpy(lat, s->lat, sizeof lat);
    memset(s->lat, 0, sizeof s->lat);
    pthread_mutex_unlock(&s->lock);
    PyObject *counts = PyList_New(s->nbuckets + 1);
    if (counts == NULL)
        return NULL;
    for (int i = 0; i <= s->nbuckets; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(lat[i]);
        if (v == NULL) {
            Py_DECREF(counts);
            return NULL;
        }
        PyList_SET_ITEM(counts, i, v);
    }
    return Py_BuildValue("(KN)", (unsigned long long)sum, counts);
}

static PyObject *
server_tick(PyObject *self, PyObject *arg)
{
    /* Python answered n datagrams: they count in the one sampling sequence (one datagram in
     * ``sample`` is timed, whichever side answered it); returns how many of them are timed. */
    Server *s = (Server *)self;
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || s->sample <= 0)
        return PyLong_FromLong(0);
    pthread_mutex_lock(&s->lock);
    uint64_t before = s->turn_all;
    s->turn_all += (uint64_t)n;
    uint64_t timed = s->turn_all / (uint64_t)s->sample - before / (uint64_t)s->sample;
    pthread_mutex_unlock(&s->lock);
    return PyLong_FromUnsignedLongLong(timed);
}

static PyObject *
server_get_generation(PyObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(atomic_load(&((Server *)self)->gen));
}

static PyObject *
server_get_eventfd(PyObject *self, void *closure)
{
    return PyLong_FromLong(((Server *)self)->efd);
}

static PyObject *
server_get_dropped(PyObject *self, void *closure)
{
    Server *s = (Server *)self;
    pthread_mutex_lock(&s->lock);
    uint64_t d = s->dropped;
    pthread_mutex_unlock(&s->lock);
    return PyLong_FromUnsignedLongLong(d);
}

static PyObject *
server_get_size(PyObject *self, void *closure)
{
    Server *s = (Server *)self;
    pthread_mutex_lock(&s->lock);
    size_t c = s->count;
    pthread_mutex_unlock(&s->lock);
    return PyLong_FromSize_t(c);
}

static PyMethodDef server_methods[] = {
    {"put", server_put, METH_VARARGS,
     "put(key, generation, tails, turn, owner) -> bool: store an answer for the thread."},
    {"take", server_take, METH_NOARGS, "take() -> [(data, sockaddr)]: datagrams for Python."},
    {"hits", server_hits, METH_NOARGS, "hits() -> [(owner, n)]: hits answered since last call."},
    {"clear", server_clear, METH_NOARGS, "clear() -> [(owner, n)]: empty the table."},
    {"latency", server_latency, METH_NOARGS,
     "latency() -> (sum_ns, counts): of the sampled batches since the last call."},
    {"tick", server_tick, METH_O,
     "tick(n) -> int: n datagrams answered by Python; how many of them are timed."},
    {"bump", server_bump, METH_NOARGS, "bump() -> int: a catalog change; the new generation."},
    {"stop", server_stop, METH_NOARGS, "stop(): end the thread and wait for it."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef server_getset[] = {
    {"generation", server_get_generation, NULL, "the current generation", NULL},
    {"eventfd", server_get_eventfd, NULL, "readable while datagrams wait for take()", NULL},
    {"dropped", server_get_dropped, NULL, "datagrams dropped: the queue for Python was full", NULL},
    {"entries", server_get_size, NULL, "answers stored", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot server_slots[] = {
    {Py_tp_new, server_new},
    {Py_tp_dealloc, server_dealloc},
    {Py_tp_methods, server_methods},
    {Py_tp_getset, server_getset},
    {Py_tp_doc, "Server(fd, size, answer_max, max_entries, buckets_ns, sample): cache hits "
                "answered on a C thread (see dnsserver/_udpc.c)."},
    {0, NULL},
};

static PyType_Spec server_spec = {
    "dnsserver._udpc.Server", sizeof(Server), 0, Py_TPFLAGS_DEFAULT, server_slots,
};

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
    PyObject *m = PyModule_Create(&udpc_module);
    if (m == NULL)
        return NULL;
    PyObject *t = PyType_FromSpec(&server_spec);
    if (t == NULL || PyModule_AddObject(m, "Server", t) < 0) {
        Py_XDECREF(t);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
