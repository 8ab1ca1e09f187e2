/* Block loops of the order-dependent cache policies (lru-v6.8, usage-v2) in C.
 *
 * The Python policies (lru_v6_8.py, usage_v2.py) are the reference; native.py calls these
 * loops on numpy buffers and tests/model/test_cache_native.py compares the two. Entries are
 * small ints ("ids") chosen by the caller: the block's distinct keys, then the resident
 * entries the block does not name. Every buffer's type, contiguity, writability and length
 * and every id the loops index with are checked here, before anything is written.
 * Outcome codes are gictools.model.cache.outcome.Outcome's, passed in by native.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int8_t HIT, MISS, EVICT, NOFILL, RECYCLE;
static int codes_set; /* the loops refuse to run before set_codes() */

/* A 1-D C-contiguous buffer of itemsize `size` whose format is one of `formats`. */
static int
get_buf(PyObject *o, Py_buffer *b, const char *name, const char *formats, Py_ssize_t size,
        int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, b, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: not a %scontiguous buffer", name,
                     writable ? "writable " : "");
        return -1;
    }
    const char *f = b->format ? b->format : "B";
    if (*f == '@' || *f == '=')
        f++;
    if (b->ndim != 1 || b->itemsize != size || strlen(f) != 1 || !strchr(formats, *f)) {
        PyErr_Format(PyExc_ValueError, "%s: expected a 1-D array of %zd-byte %s items", name,
                     size, formats);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

#define I64 "ql" /* int64: numpy says 'l' on LP64, 'q' elsewhere */
#define LEN(b) ((b).len / (b).itemsize)

static int
check_ids(const char *name, const int64_t *a, Py_ssize_t n, int64_t lo, int64_t nid)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (a[i] < lo || a[i] >= nid) {
            PyErr_Format(PyExc_ValueError, "%s: id %lld out of range %lld..%lld", name,
                         (long long)a[i], (long long)lo, (long long)nid - 1);
            return -1;
        }
    return 0;
}

static int
check_outputs(Py_ssize_t n, Py_ssize_t cap, Py_buffer *out, Py_buffer *victim)
{
    if (!codes_set) {
        PyErr_SetString(PyExc_RuntimeError, "set_codes() was not called");
        return -1;
    }
    if (cap < 0) {
        PyErr_Format(PyExc_ValueError, "capacity %zd < 0", cap);
        return -1;
    }
    if (LEN(*out) != n || LEN(*victim) != n) {
        PyErr_SetString(PyExc_ValueError, "out/victim must have one item per event");
        return -1;
    }
    return 0;
}

/* lru_block(inverse, fillable, order, cap, out, victim) -> bytes: the final ids, LRU
 * first (int64). lru-v6.8: vgic_its_check_cache moves a hit to the head;
 * vgic_its_cache_translation reuses the tail when full. An intrusive doubly linked list
 * over ids: prv/nxt, -1 ends it. */
static PyObject *
lru_block(PyObject *self, PyObject *args)
{
    PyObject *oi, *of, *oo, *oout, *ov;
    Py_ssize_t cap;
    Py_buffer inv, fill, ord, out, vic;
    PyObject *res = NULL;
    int64_t *prv = NULL, *nxt = NULL;
    uint8_t *inc = NULL;
    if (!PyArg_ParseTuple(args, "OOOnOO", &oi, &of, &oo, &cap, &oout, &ov))
        return NULL;
    if (get_buf(oi, &inv, "inverse", I64, 8, 0) < 0)
        return NULL;
    if (get_buf(of, &fill, "fillable", "B?b", 1, 0) < 0)
        goto r1;
    if (get_buf(oo, &ord, "order", I64, 8, 0) < 0)
        goto r2;
    if (get_buf(oout, &out, "out", "b", 1, 1) < 0)
        goto r3;
    if (get_buf(ov, &vic, "victim", I64, 8, 1) < 0)
        goto r4;
    Py_ssize_t n = LEN(inv), nid = LEN(fill), k = LEN(ord);
    const int64_t *x_of = inv.buf, *order = ord.buf;
    const uint8_t *fillable = fill.buf;
    int8_t *o = out.buf;
    int64_t *victim = vic.buf;
    if (check_outputs(n, cap, &out, &vic) < 0 || check_ids("inverse", x_of, n, 0, nid) < 0 ||
        check_ids("order", order, k, 0, nid) < 0)
        goto r5;
    prv = PyMem_Malloc(sizeof(int64_t) * (nid + 1));
    nxt = PyMem_Malloc(sizeof(int64_t) * (nid + 1));
    inc = PyMem_Calloc(nid + 1, 1);
    if (!prv || !nxt || !inc) {
        PyErr_NoMemory();
        goto r5;
    }
    int64_t lru = -1, mru = -1;
    for (Py_ssize_t j = 0; j < k; j++) {
        int64_t x = order[j];
        if (inc[x]) {
            PyErr_SetString(PyExc_ValueError, "order repeats an id");
            goto r5;
        }
        inc[x] = 1;
        prv[x] = mru;
        nxt[x] = -1;
        if (mru >= 0)
            nxt[mru] = x;
        else
            lru = x;
        mru = x;
    }
    Py_ssize_t size = k;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t x = x_of[i];
        if (inc[x]) { /* hit: unlink, relink at the head */
            o[i] = HIT;
            if (x == mru)
                continue;
            int64_t p = prv[x], q = nxt[x]; /* q >= 0: x is not the head */
            if (p >= 0)
                nxt[p] = q;
            else
                lru = q;
            prv[q] = p;
            prv[x] = mru;
            nxt[x] = -1;
            nxt[mru] = x;
            mru = x;
            continue;
        }
        if (!fillable[x]) { /* the slow path failed: nothing is cached */
            o[i] = NOFILL;
            continue;
        }
        if (size >= cap) {
            if (cap == 0) {
                o[i] = MISS;
                continue;
            }
            int64_t v = lru; /* the tail */
            lru = nxt[v];
            if (lru >= 0)
                prv[lru] = -1;
            else
                mru = -1;
            nxt[v] = -1;
            inc[v] = 0;
            victim[i] = v;
            o[i] = EVICT;
        }
        else {
            size++;
            o[i] = MISS;
        }
        prv[x] = mru;
        nxt[x] = -1;
        if (mru >= 0)
            nxt[mru] = x;
        else
            lru = x;
        mru = x;
        inc[x] = 1;
    }
    res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int64_t) * size);
    if (res) {
        int64_t *fin = (int64_t *)PyBytes_AS_STRING(res);
        Py_ssize_t m = 0;
        for (int64_t x = lru; x >= 0 && m < size; x = nxt[x])
            fin[m++] = x;
    }
r5:
    PyMem_Free(prv);
    PyMem_Free(nxt);
    PyMem_Free(inc);
    PyBuffer_Release(&vic);
r4:
    PyBuffer_Release(&out);
r3:
    PyBuffer_Release(&ord);
r2:
    PyBuffer_Release(&fill);
r1:
    PyBuffer_Release(&inv);
    return res;
}

/* usage_block(inverse, fillable, ent_id, ent_use, cap, out, victim) -> (ids, uses): the
 * final list tail first, as int64 bytes (id -1: an invalidated entry still linked).
 * usage-v2 (series v2 patch 13/23): a hit bumps the entry's counter; a fill into a full
 * cache scans from the head: the first empty entry wins at once, else the smallest
 * counter, ties to the tail; the new entry is linked at the head with the largest counter
 * the scan read (an empty entry's stale one included). Slots hold (id, usage); order
 * lists the slots tail first. */
static PyObject *
usage_block(PyObject *self, PyObject *args)
{
    PyObject *oi, *of, *oid, *ouse, *oout, *ov;
    Py_ssize_t cap;
    Py_buffer inv, fill, eid, euse, out, vic;
    PyObject *res = NULL, *ids = NULL, *uses = NULL;
    int64_t *slot_of = NULL, *sid = NULL, *suse = NULL, *order = NULL;
    if (!PyArg_ParseTuple(args, "OOOOnOO", &oi, &of, &oid, &ouse, &cap, &oout, &ov))
        return NULL;
    if (get_buf(oi, &inv, "inverse", I64, 8, 0) < 0)
        return NULL;
    if (get_buf(of, &fill, "fillable", "B?b", 1, 0) < 0)
        goto r1;
    if (get_buf(oid, &eid, "ent_id", I64, 8, 0) < 0)
        goto r2;
    if (get_buf(ouse, &euse, "ent_use", I64, 8, 0) < 0)
        goto r3;
    if (get_buf(oout, &out, "out", "b", 1, 1) < 0)
        goto r4;
    if (get_buf(ov, &vic, "victim", I64, 8, 1) < 0)
        goto r5;
    Py_ssize_t n = LEN(inv), nid = LEN(fill), m = LEN(eid);
    const int64_t *x_of = inv.buf, *ent_id = eid.buf, *ent_use = euse.buf;
    const uint8_t *fillable = fill.buf;
    int8_t *o = out.buf;
    int64_t *victim = vic.buf;
    if (check_outputs(n, cap, &out, &vic) < 0 || check_ids("inverse", x_of, n, 0, nid) < 0 ||
        check_ids("ent_id", ent_id, m, -1, nid) < 0)
        goto r6;
    if (LEN(euse) != m) {
        PyErr_SetString(PyExc_ValueError, "ent_use does not match ent_id");
        goto r6;
    }
    /* slots: the entries, then at most one new one per event up to the capacity */
    Py_ssize_t nslot = cap > m ? (cap - m < n ? cap : m + n) : m;
    slot_of = PyMem_Malloc(sizeof(int64_t) * (nid + 1));
    sid = PyMem_Malloc(sizeof(int64_t) * (nslot + 1));
    suse = PyMem_Malloc(sizeof(int64_t) * (nslot + 1));
    order = PyMem_Malloc(sizeof(int64_t) * (nslot + 1));
    if (!slot_of || !sid || !suse || !order) {
        PyErr_NoMemory();
        goto r6;
    }
    for (Py_ssize_t j = 0; j < nid; j++)
        slot_of[j] = -1;
    for (Py_ssize_t j = 0; j < m; j++) {
        int64_t x = ent_id[j];
        if (x >= 0) {
            if (slot_of[x] >= 0) {
                PyErr_SetString(PyExc_ValueError, "ent_id repeats an id");
                goto r6;
            }
            slot_of[x] = j;
        }
        sid[j] = x;
        suse[j] = ent_use[j];
        order[j] = j;
    }
    Py_ssize_t cnt = m;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t x = x_of[i], s0 = slot_of[x];
        if (s0 >= 0) {
            suse[s0]++;
            o[i] = HIT;
            continue;
        }
        if (!fillable[x]) {
            o[i] = NOFILL;
            continue;
        }
        int64_t usage = 0, s;
        if (cnt >= cap) {
            if (cap == 0) {
                o[i] = MISS;
                continue;
            }
            Py_ssize_t vp = -1;
            int64_t best = 0;
            for (Py_ssize_t p = cnt - 1; p >= 0; p--) { /* from the head */
                int64_t u = suse[order[p]];
                if (u > usage) /* read before the empty check: a stale counter counts */
                    usage = u;
                if (sid[order[p]] < 0) { /* an empty entry wins at once */
                    vp = p;
                    break;
                }
                if (vp < 0 || u <= best) {
                    best = u;
                    vp = p;
                }
            }
            s = order[vp];
            if (sid[s] < 0)
                o[i] = RECYCLE;
            else {
                slot_of[sid[s]] = -1;
                victim[i] = sid[s];
                o[i] = EVICT;
            }
            memmove(order + vp, order + vp + 1, sizeof(int64_t) * (cnt - 1 - vp));
            order[cnt - 1] = s;
        }
        else {
            if (cnt >= nslot) { /* cannot happen: nslot counts every possible growth */
                PyErr_SetString(PyExc_SystemError, "usage_block: slots exhausted");
                goto r6;
            }
            s = order[cnt] = cnt;
            cnt++;
            o[i] = MISS;
        }
        sid[s] = x;
        suse[s] = usage;
        slot_of[x] = s;
    }
    ids = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int64_t) * cnt);
    uses = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int64_t) * cnt);
    if (ids && uses) {
        int64_t *fi = (int64_t *)PyBytes_AS_STRING(ids), *fu = (int64_t *)PyBytes_AS_STRING(uses);
        for (Py_ssize_t p = 0; p < cnt; p++) {
            fi[p] = sid[order[p]];
            fu[p] = suse[order[p]];
        }
        res = PyTuple_Pack(2, ids, uses);
    }
    Py_XDECREF(ids);
    Py_XDECREF(uses);
r6:
    PyMem_Free(slot_of);
    PyMem_Free(sid);
    PyMem_Free(suse);
    PyMem_Free(order);
    PyBuffer_Release(&vic);
r5:
    PyBuffer_Release(&out);
r4:
    PyBuffer_Release(&euse);
r3:
    PyBuffer_Release(&eid);
r2:
    PyBuffer_Release(&fill);
r1:
    PyBuffer_Release(&inv);
    return res;
}

/* set_codes(hit, miss, evict, nofill, recycle): the Outcome values, from Python's table */
static PyObject *
set_codes(PyObject *self, PyObject *args)
{
    if (!PyArg_ParseTuple(args, "bbbbb", &HIT, &MISS, &EVICT, &NOFILL, &RECYCLE))
        return NULL;
    codes_set = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"lru_block", lru_block, METH_VARARGS, "lru-v6.8 over one block (see native.py)"},
    {"usage_block", usage_block, METH_VARARGS, "usage-v2 over one block (see native.py)"},
    {"set_codes", set_codes, METH_VARARGS, "the Outcome codes the loops write"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_blocks",
    .m_doc = "Block loops of lru-v6.8 and usage-v2 (native.py)",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__blocks(void)
{
    return PyModule_Create(&module);
}
