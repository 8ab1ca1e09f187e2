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

/* What both loops take and check: the events' ids (inverse), which ids may fill
 * (fillable), the capacity and the two outputs; each loop then takes its own inputs with
 * block_take. block_close releases every buffer taken, whatever failed. */
struct block {
    Py_buffer held[6];
    int nheld;
    Py_ssize_t n, nid, cap;
    const int64_t *x_of;
    const uint8_t *fillable;
    int8_t *o;
    int64_t *victim;
};

static Py_buffer *
block_take(struct block *b, PyObject *o, const char *name, const char *formats, Py_ssize_t size,
           int writable)
{
    Py_buffer *v = &b->held[b->nheld];
    if (get_buf(o, v, name, formats, size, writable) < 0)
        return NULL;
    b->nheld++;
    return v;
}

static int
block_open(struct block *b, PyObject *oi, PyObject *of, PyObject *oout, PyObject *ov,
           Py_ssize_t cap)
{
    Py_buffer *inv, *fill, *out, *vic;
    b->nheld = 0;
    if (!(inv = block_take(b, oi, "inverse", I64, 8, 0)) ||
        !(fill = block_take(b, of, "fillable", "B?b", 1, 0)) ||
        !(out = block_take(b, oout, "out", "b", 1, 1)) ||
        !(vic = block_take(b, ov, "victim", I64, 8, 1)))
        return -1;
    b->n = LEN(*inv);
    b->nid = LEN(*fill);
    b->cap = cap;
    b->x_of = inv->buf;
    b->fillable = fill->buf;
    b->o = out->buf;
    b->victim = vic->buf;
    if (!codes_set) {
        PyErr_SetString(PyExc_RuntimeError, "set_codes() was not called");
        return -1;
    }
    if (cap < 0) {
        PyErr_Format(PyExc_ValueError, "capacity %zd < 0", cap);
        return -1;
    }
    if (LEN(*out) != b->n || LEN(*vic) != b->n) {
        PyErr_SetString(PyExc_ValueError, "out/victim must have one item per event");
        return -1;
    }
    return check_ids("inverse", b->x_of, b->n, 0, b->nid);
}

static void
block_close(struct block *b)
{
    while (b->nheld > 0)
        PyBuffer_Release(&b->held[--b->nheld]);
}

/* A miss that caches nothing writes its outcome and says 1: the slow path failed (NOFILL),
 * or the cache holds no entry at all (capacity 0: a plain MISS). Else 0: the caller fills. */
static inline int
miss_uncached(struct block *b, Py_ssize_t i, int64_t x)
{
    if (!b->fillable[x]) {
        b->o[i] = NOFILL;
        return 1;
    }
    if (b->cap == 0) {
        b->o[i] = MISS;
        return 1;
    }
    return 0;
}

/* n int64 (one spare: PyMem_Malloc(0) is not an error but says nothing useful) */
static int64_t *
ids_alloc(Py_ssize_t n)
{
    return PyMem_Malloc(sizeof(int64_t) * (n + 1));
}

/* A new bytes object of n int64, *data pointing at them */
static PyObject *
ids_bytes(Py_ssize_t n, int64_t **data)
{
    PyObject *r = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int64_t) * n);
    if (r)
        *data = (int64_t *)PyBytes_AS_STRING(r);
    return r;
}

/* An intrusive doubly linked list over ids, LRU at one end and MRU at the other: prv/nxt,
 * -1 ends it. */
struct list {
    int64_t *prv, *nxt;
    int64_t lru, mru;
};

static inline void
list_push_mru(struct list *l, int64_t x)
{
    l->prv[x] = l->mru;
    l->nxt[x] = -1;
    if (l->mru >= 0)
        l->nxt[l->mru] = x;
    else
        l->lru = x;
    l->mru = x;
}

static inline void
list_unlink(struct list *l, int64_t x)
{
    int64_t p = l->prv[x], q = l->nxt[x];
    if (p >= 0)
        l->nxt[p] = q;
    else
        l->lru = q;
    if (q >= 0)
        l->prv[q] = p;
    else
        l->mru = p;
}

/* lru_block(inverse, fillable, order, cap, out, victim) -> bytes: the final ids, LRU
 * first (int64). lru-v6.8: vgic_its_check_cache moves a hit to the head (MRU);
 * vgic_its_cache_translation reuses the tail (LRU) when full. */
static PyObject *
lru_block(PyObject *self, PyObject *args)
{
    PyObject *oi, *of, *oo, *oout, *ov;
    Py_ssize_t cap;
    struct block b;
    struct list l = {NULL, NULL, -1, -1};
    Py_buffer *ord;
    PyObject *res = NULL;
    uint8_t *inc = NULL;
    if (!PyArg_ParseTuple(args, "OOOnOO", &oi, &of, &oo, &cap, &oout, &ov))
        return NULL;
    if (block_open(&b, oi, of, oout, ov, cap) < 0 ||
        !(ord = block_take(&b, oo, "order", I64, 8, 0)))
        goto done;
    Py_ssize_t k = LEN(*ord);
    const int64_t *order = ord->buf;
    if (check_ids("order", order, k, 0, b.nid) < 0)
        goto done;
    l.prv = ids_alloc(b.nid);
    l.nxt = ids_alloc(b.nid);
    inc = PyMem_Calloc(b.nid + 1, 1);
    if (!l.prv || !l.nxt || !inc) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        if (inc[order[j]]) {
            PyErr_SetString(PyExc_ValueError, "order repeats an id");
            goto done;
        }
        inc[order[j]] = 1;
        list_push_mru(&l, order[j]);
    }
    Py_ssize_t size = k;
    for (Py_ssize_t i = 0; i < b.n; i++) {
        int64_t x = b.x_of[i];
        if (inc[x]) {
            b.o[i] = HIT;
            list_unlink(&l, x);
            list_push_mru(&l, x);
            continue;
        }
        if (miss_uncached(&b, i, x))
            continue;
        if (size >= cap) {
            int64_t v = l.lru;
            list_unlink(&l, v);
            inc[v] = 0;
            b.victim[i] = v;
            b.o[i] = EVICT;
        }
        else {
            size++;
            b.o[i] = MISS;
        }
        list_push_mru(&l, x);
        inc[x] = 1;
    }
    int64_t *fin;
    if ((res = ids_bytes(size, &fin))) {
        Py_ssize_t m = 0;
        for (int64_t x = l.lru; x >= 0 && m < size; x = l.nxt[x])
            fin[m++] = x;
    }
done:
    PyMem_Free(l.prv);
    PyMem_Free(l.nxt);
    PyMem_Free(inc);
    block_close(&b);
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
    struct block b;
    Py_buffer *eid, *euse;
    PyObject *res = NULL, *ids = NULL, *uses = NULL;
    int64_t *slot_of = NULL, *sid = NULL, *suse = NULL, *order = NULL;
    if (!PyArg_ParseTuple(args, "OOOOnOO", &oi, &of, &oid, &ouse, &cap, &oout, &ov))
        return NULL;
    if (block_open(&b, oi, of, oout, ov, cap) < 0 ||
        !(eid = block_take(&b, oid, "ent_id", I64, 8, 0)) ||
        !(euse = block_take(&b, ouse, "ent_use", I64, 8, 0)))
        goto done;
    Py_ssize_t n = b.n, m = LEN(*eid);
    const int64_t *ent_id = eid->buf, *ent_use = euse->buf;
    if (check_ids("ent_id", ent_id, m, -1, b.nid) < 0)
        goto done;
    if (LEN(*euse) != m) {
        PyErr_SetString(PyExc_ValueError, "ent_use does not match ent_id");
        goto done;
    }
    /* slots: the entries, then at most one new one per event up to the capacity */
    Py_ssize_t nslot = cap > m ? (cap - m < n ? cap : m + n) : m;
    slot_of = ids_alloc(b.nid);
    sid = ids_alloc(nslot);
    suse = ids_alloc(nslot);
    order = ids_alloc(nslot);
    if (!slot_of || !sid || !suse || !order) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < b.nid; j++)
        slot_of[j] = -1;
    for (Py_ssize_t j = 0; j < m; j++) {
        int64_t x = ent_id[j];
        if (x >= 0) {
            if (slot_of[x] >= 0) {
                PyErr_SetString(PyExc_ValueError, "ent_id repeats an id");
                goto done;
            }
            slot_of[x] = j;
        }
        sid[j] = x;
        suse[j] = ent_use[j];
        order[j] = j;
    }
    Py_ssize_t cnt = m;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t x = b.x_of[i], s0 = slot_of[x];
        if (s0 >= 0) {
            suse[s0]++;
            b.o[i] = HIT;
            continue;
        }
        if (miss_uncached(&b, i, x))
            continue;
        int64_t usage = 0, s;
        if (cnt >= cap) {
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
                b.o[i] = RECYCLE;
            else {
                slot_of[sid[s]] = -1;
                b.victim[i] = sid[s];
                b.o[i] = EVICT;
            }
            memmove(order + vp, order + vp + 1, sizeof(int64_t) * (cnt - 1 - vp));
            order[cnt - 1] = s;
        }
        else {
            if (cnt >= nslot) { /* cannot happen: nslot counts every possible growth */
                PyErr_SetString(PyExc_SystemError, "usage_block: slots exhausted");
                goto done;
            }
            s = order[cnt] = cnt;
            cnt++;
            b.o[i] = MISS;
        }
        sid[s] = x;
        suse[s] = usage;
        slot_of[x] = s;
    }
    int64_t *fi, *fu;
    ids = ids_bytes(cnt, &fi);
    uses = ids_bytes(cnt, &fu);
    if (ids && uses) {
        for (Py_ssize_t p = 0; p < cnt; p++) {
            fi[p] = sid[order[p]];
            fu[p] = suse[order[p]];
        }
        res = PyTuple_Pack(2, ids, uses);
    }
    Py_XDECREF(ids);
    Py_XDECREF(uses);
done:
    PyMem_Free(slot_of);
    PyMem_Free(sid);
    PyMem_Free(suse);
    PyMem_Free(order);
    block_close(&b);
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
