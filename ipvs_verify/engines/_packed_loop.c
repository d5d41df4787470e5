/* The packed search's breadth-first loop, compiled: the loop of explicit.py's `_python_loop`, step for step.
 *
 * It holds no semantics. Every record it applies was built in Python (engines/packed.py, from System.step);
 * a successor list it lacks, it asks Python for. What it does itself, per state: find the skeleton's list for
 * the state's zero clocks, apply each record (gather the successor's values from the state and the record's
 * constants), look the successor up, number it if new, and record the edge; and build the state's wait, which
 * subtracts the wait's length from the running clocks. tests/test_packed_loop.py checks that it gives the
 * same exploration as the Python loop, state by state and edge by edge.
 *
 * CPython 3.11+ C API. The search runs with the cyclic collector off.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    int32_t *v;
    Py_ssize_t n, cap;
} ibuf;

static int ib_push(ibuf *b, long x) {
    if (b->n == b->cap) {
        Py_ssize_t cap = b->cap ? 2 * b->cap : 4096;
        int32_t *v = PyMem_Realloc(b->v, (size_t)cap * sizeof(int32_t));
        if (v == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = (int32_t)x;
    return 0;
}

/* The attribute names the loop reads, interned once (PyInit__packed_loop). */
static PyObject *str_lists, *str_no_zeros, *str_wait_hits, *str_running;

/* What the loop reads of a Skeleton (engines/packed.py), fetched once per skeleton. */
typedef struct {
    PyObject *sk;        /* the Skeleton: passed back to `successors` */
    PyObject *lists;     /* sk.lists: zeros -> (records, waits, used) */
    PyObject *no_zeros;  /* sk.no_zeros */
    PyObject *wait_hits; /* sk.wait_hits */
    Py_ssize_t *run;     /* sk.running: the packed positions a wait decrements */
    Py_ssize_t n_run;
} skinfo;

typedef struct {
    skinfo *v;
    Py_ssize_t n, cap;
} skcache;

static void sk_free(skcache *c) {
    for (Py_ssize_t k = 0; k < c->n; k++) {
        Py_XDECREF(c->v[k].sk);
        Py_XDECREF(c->v[k].lists);
        Py_XDECREF(c->v[k].no_zeros);
        Py_XDECREF(c->v[k].wait_hits);
        PyMem_Free(c->v[k].run);
    }
    PyMem_Free(c->v);
}

/* Fill the cache up to skeleton `sid` (skeletons are appended while the search runs). */
static skinfo *sk_get(skcache *c, PyObject *skeletons, Py_ssize_t sid) {
    if (sid < c->n)
        return &c->v[sid];
    if (sid >= PyList_GET_SIZE(skeletons)) {
        PyErr_Format(PyExc_IndexError, "skeleton %zd does not exist", sid);
        return NULL;
    }
    Py_ssize_t need = PyList_GET_SIZE(skeletons);
    if (need > c->cap) {
        Py_ssize_t cap = need * 2 + 64;
        skinfo *v = PyMem_Realloc(c->v, (size_t)cap * sizeof(skinfo));
        if (v == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        c->v = v;
        c->cap = cap;
    }
    while (c->n < need) {
        skinfo *s = &c->v[c->n];
        memset(s, 0, sizeof(*s));
        c->n++; /* counted before it is filled, so that sk_free releases a partial entry */
        PyObject *sk = PyList_GET_ITEM(skeletons, c->n - 1);
        Py_INCREF(sk);
        s->sk = sk;
        s->lists = PyObject_GetAttr(sk, str_lists);
        s->no_zeros = PyObject_GetAttr(sk, str_no_zeros);
        s->wait_hits = PyObject_GetAttr(sk, str_wait_hits);
        PyObject *running = PyObject_GetAttr(sk, str_running);
        if (s->lists == NULL || s->no_zeros == NULL || s->wait_hits == NULL || running == NULL) {
            Py_XDECREF(running);
            return NULL;
        }
        if (!PyDict_Check(s->lists) || !PyTuple_Check(s->no_zeros) || !PyList_Check(s->wait_hits) ||
            !PyTuple_Check(running)) {
            Py_DECREF(running);
            PyErr_SetString(PyExc_TypeError, "a skeleton's lists, no_zeros, wait_hits or running has the wrong type");
            return NULL;
        }
        s->n_run = PyTuple_GET_SIZE(running);
        s->run = PyMem_Malloc((size_t)(s->n_run + 1) * sizeof(Py_ssize_t));
        if (s->run == NULL) {
            Py_DECREF(running);
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t k = 0; k < s->n_run; k++) {
            s->run[k] = PyLong_AsSsize_t(PyTuple_GET_ITEM(running, k));
            if (s->run[k] == -1 && PyErr_Occurred()) {
                Py_DECREF(running);
                return NULL;
            }
        }
        Py_DECREF(running);
    }
    return &c->v[sid];
}

typedef struct {
    PyObject *keys, *index, *via, *labels, *report;
    ibuf parent, depth, start, dst;
    Py_ssize_t count, max_states;
    PyObject *count_obj; /* count as a Python int: the value a new key is given */
    int keep_edges, capped;
    int stop; /* report() answered true: every check the caller waits for is settled; stop after this state */
} search;

/* One edge from state i (at depth d) to n (a new reference, consumed), labelled rec. 0, or -1 on error. */
static int edge(search *s, Py_ssize_t i, long d, PyObject *n, PyObject *rec) {
    PyObject *a = PyTuple_GET_ITEM(rec, 0), *hits = PyTuple_GET_ITEM(rec, 4);
    PyObject *j = PyDict_SetDefault(s->index, n, s->count_obj); /* borrowed */
    long jv;
    if (j == NULL) {
        Py_DECREF(n);
        return -1;
    }
    if (j == s->count_obj) { /* every existing key's number is below count: this is a new state */
        if (s->count >= s->max_states) {
            int rc = PyDict_DelItem(s->index, n);
            Py_DECREF(n);
            s->capped = 1;
            return rc;
        }
        if (PyList_Append(s->keys, n) < 0 || ib_push(&s->parent, (long)i) < 0 || ib_push(&s->depth, d + 1) < 0 ||
            PyList_Append(s->via, a) < 0) {
            Py_DECREF(n);
            return -1;
        }
        jv = (long)s->count;
        s->count++;
        Py_DECREF(s->count_obj);
        s->count_obj = PyLong_FromSsize_t(s->count);
        if (s->count_obj == NULL) {
            Py_DECREF(n);
            return -1;
        }
    } else {
        jv = PyLong_AsLong(j);
    }
    Py_DECREF(n);
    if (s->keep_edges && (ib_push(&s->dst, jv) < 0 || PyList_Append(s->labels, rec) < 0))
        return -1;
    if (PyList_Check(hits) && PyList_GET_SIZE(hits) > 0) { /* a violation or reached check, not yet reported */
        PyObject *r = PyObject_CallFunction(s->report, "nOO", i, a, hits);
        if (r == NULL)
            return -1;
        int settled = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (settled < 0)
            return -1;
        s->stop |= settled;
    }
    return 0;
}

/* The successor of p under a record: consts itself, or p + consts gathered in the record's order. */
static PyObject *apply(PyObject *p, PyObject *rec) {
    PyObject *consts = PyTuple_GET_ITEM(rec, 2), *order = PyTuple_GET_ITEM(rec, 5);
    if (order == Py_None) {
        Py_INCREF(consts);
        return consts;
    }
    Py_ssize_t width = PyTuple_GET_SIZE(p), m = PyTuple_GET_SIZE(order);
    PyObject *n = PyTuple_New(m);
    if (n == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < m; k++) {
        Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(order, k));
        PyObject *x;
        if (at >= 0 && at < width)
            x = PyTuple_GET_ITEM(p, at);
        else if (at >= width && at - width < PyTuple_GET_SIZE(consts))
            x = PyTuple_GET_ITEM(consts, at - width);
        else {
            Py_DECREF(n);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_IndexError, "a record's order reads position %zd of %zd", at,
                             width + PyTuple_GET_SIZE(consts));
            return NULL;
        }
        Py_INCREF(x);
        PyTuple_SET_ITEM(n, k, x);
    }
    return n;
}

/* p with w subtracted at the running positions: the state after a wait of w seconds. */
static PyObject *waited(PyObject *p, const skinfo *sk, long w) {
    Py_ssize_t width = PyTuple_GET_SIZE(p);
    PyObject *n = PyTuple_New(width);
    if (n == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < width; k++) {
        PyObject *x = PyTuple_GET_ITEM(p, k);
        Py_INCREF(x);
        PyTuple_SET_ITEM(n, k, x);
    }
    for (Py_ssize_t r = 0; r < sk->n_run; r++) {
        Py_ssize_t k = sk->run[r];
        PyObject *old = PyTuple_GET_ITEM(n, k);
        PyObject *x = PyLong_FromLong(PyLong_AsLong(old) - w);
        if (x == NULL) {
            Py_DECREF(n);
            return NULL;
        }
        PyTuple_SET_ITEM(n, k, x); /* does not release the item it replaces */
        Py_DECREF(old);
    }
    return n;
}

static PyObject *bytes_of(const ibuf *b) { return PyBytes_FromStringAndSize((const char *)b->v, b->n * 4); }

static int take_ints(ibuf *b, PyObject *seq) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of ints");
    if (fast == NULL)
        return -1;
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(fast); k++) {
        long x = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, k));
        if ((x == -1 && PyErr_Occurred()) || ib_push(b, x) < 0) {
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

PyDoc_STRVAR(run_doc,
             "run(keys, index, via, labels, skeletons, successors, wait, report, progress, parent, depth, max_states,\n"
             "    exact, keep_edges) -> (parent, depth, edge_start, edge_dst, waits, capped | stopped << 1)\n\n"
             "The packed search's loop (explicit.py, _python_loop): the int arrays come back as bytes of int32.");

static PyObject *run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *keys, *index, *via, *labels, *skeletons, *successors, *wait, *report, *progress, *parent0, *depth0;
    Py_ssize_t max_states;
    int exact, keep_edges;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!OOOOOOnpp", &PyList_Type, &keys, &PyDict_Type, &index, &PyList_Type,
                          &via, &PyList_Type, &labels, &PyList_Type, &skeletons, &successors, &wait, &report,
                          &progress, &parent0, &depth0, &max_states, &exact, &keep_edges))
        return NULL;
    search s = {keys, index, via, labels, report, {0}, {0}, {0}, {0}, 0, max_states, NULL, keep_edges, 0, 0};
    skcache cache = {NULL, 0, 0};
    PyObject *result = NULL;
    long fired_waits = 0;
    if (take_ints(&s.parent, parent0) < 0 || take_ints(&s.depth, depth0) < 0)
        goto done;
    s.count = PyList_GET_SIZE(keys);
    if (s.parent.n != s.count || s.depth.n != s.count) {
        PyErr_SetString(PyExc_ValueError, "parent and depth must have one entry per key");
        goto done;
    }
    s.count_obj = PyLong_FromSsize_t(s.count);
    if (s.count_obj == NULL)
        goto done;
    for (Py_ssize_t head = 0; head < s.count;) {
        Py_ssize_t i = head++;
        PyObject *p = PyList_GET_ITEM(keys, i); /* keys only grows: the reference stays valid */
        long d = s.depth.v[i];
        Py_ssize_t sid = PyLong_AsSsize_t(PyTuple_GET_ITEM(p, 0));
        if (sid == -1 && PyErr_Occurred())
            goto done;
        skinfo *sk = sk_get(&cache, skeletons, sid);
        if (sk == NULL)
            goto done;
        /* the running clocks: which are 0 (they select the successor list), and the nearest deadline */
        int any_zero = 0;
        long t = LONG_MAX;
        for (Py_ssize_t r = 0; r < sk->n_run; r++) {
            long v = PyLong_AsLong(PyTuple_GET_ITEM(p, sk->run[r]));
            any_zero |= v == 0;
            if (v < t)
                t = v;
        }
        PyObject *zeros;
        if (any_zero) {
            zeros = PyTuple_New(sk->n_run);
            if (zeros == NULL)
                goto done;
            for (Py_ssize_t r = 0; r < sk->n_run; r++) {
                PyObject *b = PyLong_AsLong(PyTuple_GET_ITEM(p, sk->run[r])) == 0 ? Py_True : Py_False;
                Py_INCREF(b);
                PyTuple_SET_ITEM(zeros, r, b);
            }
        } else {
            zeros = sk->no_zeros;
            Py_INCREF(zeros);
        }
        PyObject *entry = PyDict_GetItemWithError(sk->lists, zeros);
        if (entry != NULL)
            Py_INCREF(entry);
        else if (!PyErr_Occurred())
            entry = PyObject_CallFunctionObjArgs(successors, sk->sk, zeros, NULL);
        Py_DECREF(zeros);
        if (entry == NULL)
            goto done;
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 || !PyTuple_Check(PyTuple_GET_ITEM(entry, 0)) ||
            !PyList_Check(PyTuple_GET_ITEM(entry, 2)) || PyList_GET_SIZE(PyTuple_GET_ITEM(entry, 2)) != 1) {
            Py_DECREF(entry);
            PyErr_SetString(PyExc_TypeError, "a successor list must be (records, waits, [used])");
            goto done;
        }
        PyObject *recs = PyTuple_GET_ITEM(entry, 0), *used = PyTuple_GET_ITEM(entry, 2);
        int waits_here = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 1));
        PyObject *u = PyLong_FromLong(PyLong_AsLong(PyList_GET_ITEM(used, 0)) + 1);
        if (u == NULL || PyList_SetItem(used, 0, u) < 0 || waits_here < 0 ||
            (s.keep_edges && ib_push(&s.start, (long)s.dst.n) < 0)) {
            Py_DECREF(entry);
            goto done;
        }
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(recs); k++) {
            PyObject *rec = PyTuple_GET_ITEM(recs, k);
            PyObject *n = apply(p, rec);
            if (n == NULL || edge(&s, i, d, n, rec) < 0) {
                Py_DECREF(entry);
                goto done;
            }
        }
        Py_DECREF(entry);
        if (waits_here) { /* to the nearest deadline, and in exact timing by 1 s too */
            if (sk->n_run == 0) {
                PyErr_SetString(PyExc_ValueError, "a wait in a state with no running clock");
                goto done;
            }
            long ws[2] = {t, 1};
            for (int k = 0; k < (exact && t > 1 ? 2 : 1); k++) {
                PyObject *wa = PyObject_CallFunction(wait, "l", ws[k]); /* (action, events) */
                if (wa == NULL)
                    goto done;
                PyObject *n = waited(p, sk, ws[k]), *rec = NULL;
                if (n != NULL && PyTuple_Check(wa) && PyTuple_GET_SIZE(wa) == 2)
                    rec = PyTuple_Pack(6, PyTuple_GET_ITEM(wa, 0), Py_None, n, PyTuple_GET_ITEM(wa, 1), sk->wait_hits,
                                       Py_None);
                else if (n != NULL)
                    PyErr_SetString(PyExc_TypeError, "wait(w) must give (action, events)");
                Py_DECREF(wa);
                if (rec == NULL) {
                    Py_XDECREF(n);
                    goto done;
                }
                int rc = edge(&s, i, d, n, rec); /* consumes n; rec holds its own reference */
                Py_DECREF(rec);
                if (rc < 0)
                    goto done;
                fired_waits++;
            }
        }
        if (progress != Py_None && head % 20000 == 0) {
            PyObject *r = PyObject_CallFunction(progress, "nnl", s.count, s.dst.n, d);
            if (r == NULL)
                goto done;
            Py_DECREF(r);
        }
        if (s.stop)
            break;
    }
    result = Py_BuildValue("(NNNNli)", bytes_of(&s.parent), bytes_of(&s.depth), bytes_of(&s.start), bytes_of(&s.dst),
                           fired_waits, s.capped | (s.stop << 1));
done:
    Py_XDECREF(s.count_obj);
    PyMem_Free(s.parent.v);
    PyMem_Free(s.depth.v);
    PyMem_Free(s.start.v);
    PyMem_Free(s.dst.v);
    sk_free(&cache);
    return result;
}

static PyMethodDef methods[] = {{"run", run, METH_VARARGS, run_doc}, {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_packed_loop",
                                    "The packed search's breadth-first loop, compiled (see explicit.py).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__packed_loop(void) {
    str_lists = PyUnicode_InternFromString("lists");
    str_no_zeros = PyUnicode_InternFromString("no_zeros");
    str_wait_hits = PyUnicode_InternFromString("wait_hits");
    str_running = PyUnicode_InternFromString("running");
    if (str_lists == NULL || str_no_zeros == NULL || str_wait_hits == NULL || str_running == NULL)
        return NULL;
    return PyModule_Create(&module);
}
