/*
 * C speed-up for gossip/lzw.py: the same GIF-style LZW (LSB first, literal width 8) that Go's
 * compress/lzw reads and writes, and that memberlist uses for its compress wrapper.
 *
 * gossip/lzw.py holds the reference implementation and the description of the format; this
 * module must produce byte-for-byte the same output for every input (tests/unit/gossip/
 * test_lzw.py compares the two on the captured vectors and on generated data). Nothing here
 * raises on bad data: decompress() returns a status that lzw.py turns into its own exceptions.
 *
 *   compress(data) -> bytes
 *   decompress(data, max_size) -> (status, bytes | None, code, hi)
 *       status 0: ok, the bytes are the output
 *       status 1: the output would pass max_size
 *       status 2: the stream ends without the end code
 *       status 3: invalid code ``code`` (next free code ``hi``)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define LZW_CLEAR 256
#define LZW_EOF 257
#define LZW_MAX_CODE 4095

/* Open-addressing table for the encoder: key = (prefix code << 8) | literal, at most 3838
 * entries between clears, so 8192 slots keep probes short. A slot holds key + 1 (0 = empty). */
#define ENC_SLOTS 8192
#define ENC_MASK (ENC_SLOTS - 1)

typedef struct {
    uint32_t key[ENC_SLOTS];
    uint16_t val[ENC_SLOTS];
} enc_table;

typedef struct {
    unsigned char *out;
    Py_ssize_t len;
    uint64_t bits;
    int nbits;
} bitwriter;

static inline void put_code(bitwriter *w, uint32_t code, int width)
{
    w->bits |= (uint64_t)code << w->nbits;
    w->nbits += width;
    while (w->nbits >= 8) {
        w->out[w->len++] = (unsigned char)(w->bits & 0xFF);
        w->bits >>= 8;
        w->nbits -= 8;
    }
}

/* The encoder's code counter: the next free code, the current code width, and the code at
 * which the width grows. */
typedef struct {
    uint32_t hi;
    int width;
    uint32_t overflow;
} counter;

/* Emit ``code`` and take the next free code, widening at 512/1024/2048. When the table is
 * full (4095), emit a clear at the current width and start over; returns 1 then. */
static inline int emit_next(bitwriter *w, counter *c, uint32_t code)
{
    put_code(w, code, c->width);
    c->hi += 1;
    if (c->hi == c->overflow) {
        c->width += 1;
        c->overflow <<= 1;
    }
    if (c->hi == LZW_MAX_CODE) {
        put_code(w, LZW_CLEAR, c->width);
        c->hi = LZW_EOF;
        c->width = 9;
        c->overflow = 512;
        return 1;
    }
    return 0;
}

static inline uint32_t slot_of(uint32_t key)
{
    return (key * 2654435761u) >> (32 - 13);
}

static PyObject *lzwc_compress(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *src = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    /* At most one 12-bit code per input byte, plus clear codes (one per 3838 bytes), the
     * leading clear and the end code. */
    Py_ssize_t cap = n * 2 + 16;
    PyObject *result = PyBytes_FromStringAndSize(NULL, cap);
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    bitwriter w = {(unsigned char *)PyBytes_AS_STRING(result), 0, 0, 0};
    put_code(&w, LZW_CLEAR, 9);
    if (n == 0) {
        put_code(&w, LZW_EOF, 9);
    } else {
        enc_table *t = PyMem_Malloc(sizeof(enc_table));
        if (t == NULL) {
            Py_DECREF(result);
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        memset(t->key, 0, sizeof(t->key));
        counter c = {LZW_EOF, 9, 512};
        uint32_t code = src[0];
        for (Py_ssize_t i = 1; i < n; i++) {
            uint32_t lit = src[i];
            uint32_t key = (code << 8) | lit;
            uint32_t s = slot_of(key);
            int found = 0;
            while (t->key[s] != 0) {
                if (t->key[s] == key + 1) {
                    found = 1;
                    break;
                }
                s = (s + 1) & ENC_MASK;
            }
            if (found) {
                code = t->val[s];
                continue;
            }
            /* Emit the current string's code; the literal starts the next string. */
            int cleared = emit_next(&w, &c, code);
            code = lit;
            if (cleared) {
                memset(t->key, 0, sizeof(t->key));
                continue;
            }
            t->key[s] = key + 1;
            t->val[s] = (uint16_t)c.hi;
        }
        /* Close: the pending code (which may widen or clear), then the end code. */
        emit_next(&w, &c, code);
        put_code(&w, LZW_EOF, c.width);
        PyMem_Free(t);
    }
    if (w.nbits > 0)
        w.out[w.len++] = (unsigned char)(w.bits & 0xFF);
    PyBuffer_Release(&view);
    if (_PyBytes_Resize(&result, w.len) < 0)
        return NULL;
    return result;
}

static PyObject *status(int st, PyObject *out, long code, long hi)
{
    if (out == NULL) {
        Py_INCREF(Py_None);
        out = Py_None;
    }
    PyObject *r = Py_BuildValue("(iNll)", st, out, code, hi);
    return r;
}

static PyObject *lzwc_decompress(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t max_size;
    if (!PyArg_ParseTuple(args, "y*n", &view, &max_size))
        return NULL;
    const unsigned char *src = (const unsigned char *)view.buf;
    Py_ssize_t total_bits = view.len * 8;
    /* table entry = a run of the output already written: [start, start + len) */
    Py_ssize_t *start = PyMem_Malloc(sizeof(Py_ssize_t) * 4096);
    Py_ssize_t *elen = PyMem_Malloc(sizeof(Py_ssize_t) * 4096);
    Py_ssize_t cap = view.len * 4 + 64;
    if (cap > max_size + 1)
        cap = max_size + 1;
    if (cap < 64)
        cap = 64;
    unsigned char *out = PyMem_Malloc(cap);
    if (start == NULL || elen == NULL || out == NULL) {
        PyMem_Free(start);
        PyMem_Free(elen);
        PyMem_Free(out);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_ssize_t size = 0;
    int width = 9;
    uint32_t mask = 0x1FF;
    uint32_t hi = LZW_EOF;
    uint32_t overflow = 512;
    Py_ssize_t last_start = 0, last_len = 0; /* last_len 0: right after a clear */
    Py_ssize_t pos = 0;
    int st = 0;
    long bad_code = 0, bad_hi = 0;
    for (;;) {
        if (pos + width > total_bits) {
            st = 2;
            break;
        }
        Py_ssize_t i = pos >> 3;
        uint32_t window = src[i];
        if (i + 1 < view.len)
            window |= (uint32_t)src[i + 1] << 8;
        if (i + 2 < view.len)
            window |= (uint32_t)src[i + 2] << 16;
        uint32_t code = (window >> (pos & 7)) & mask;
        pos += width;
        Py_ssize_t e_start, e_len;
        int kwk = 0;
        if (code < hi) {
            if (code == LZW_CLEAR) {
                width = 9;
                mask = 0x1FF;
                hi = LZW_EOF;
                overflow = 512;
                last_len = 0;
                continue;
            }
            if (code == LZW_EOF)
                break;
            if (code < 256) {
                e_start = -1 - (Py_ssize_t)code; /* a literal, not in the output yet */
                e_len = 1;
            } else {
                e_start = start[code];
                e_len = elen[code];
            }
        } else if (code == hi && last_len > 0) {
            kwk = 1;
            e_start = last_start;
            e_len = last_len + 1;
        } else if (code == LZW_EOF) {
            break;
        } else {
            st = 3;
            bad_code = (long)code;
            bad_hi = (long)hi;
            break;
        }
        if (size + e_len > max_size) {
            st = 1;
            break;
        }
        if (size + e_len > cap) {
            Py_ssize_t ncap = cap * 2;
            while (ncap < size + e_len)
                ncap *= 2;
            if (ncap > max_size)
                ncap = max_size;
            unsigned char *nout = PyMem_Realloc(out, ncap);
            if (nout == NULL) {
                PyMem_Free(start);
                PyMem_Free(elen);
                PyMem_Free(out);
                PyBuffer_Release(&view);
                return PyErr_NoMemory();
            }
            out = nout;
            cap = ncap;
        }
        Py_ssize_t here = size;
        if (kwk) {
            memcpy(out + here, out + last_start, (size_t)last_len);
            out[here + last_len] = out[last_start];
        } else if (e_start < 0) {
            out[here] = (unsigned char)(-1 - e_start);
        } else {
            memcpy(out + here, out + e_start, (size_t)e_len);
        }
        size += e_len;
        /* The new entry is the previous expansion plus this one's first byte, which in the
         * output is simply the previous run extended by one byte. After a clear there is no
         * previous expansion and nothing is defined (slot 257 is never read). */
        if (last_len > 0) {
            start[hi] = last_start;
            elen[hi] = last_len + 1;
        }
        last_start = here;
        last_len = e_len;
        hi += 1;
        if (hi >= overflow) {
            if (hi > LZW_MAX_CODE) {
                hi = LZW_MAX_CODE;
                width = 12;
                mask = 0xFFF;
            } else {
                width += 1;
                mask = (mask << 1) | 1;
                overflow <<= 1;
            }
        }
    }
    PyMem_Free(start);
    PyMem_Free(elen);
    PyBuffer_Release(&view);
    if (st != 0) {
        PyMem_Free(out);
        return status(st, NULL, bad_code, bad_hi);
    }
    PyObject *res = PyBytes_FromStringAndSize((const char *)out, size);
    PyMem_Free(out);
    if (res == NULL)
        return NULL;
    return status(0, res, 0, 0);
}

static PyMethodDef lzwc_methods[] = {
    {"compress", lzwc_compress, METH_O, "compress(data) -> bytes (Go compress/lzw, LSB, 8)"},
    {"decompress", lzwc_decompress, METH_VARARGS,
     "decompress(data, max_size) -> (status, bytes | None, code, hi)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef lzwc_module = {
    PyModuleDef_HEAD_INIT, "gossip._lzwc", "C speed-up for gossip.lzw", -1, lzwc_methods,
};

PyMODINIT_FUNC PyInit__lzwc(void)
{
    return PyModule_Create(&lzwc_module);
}
