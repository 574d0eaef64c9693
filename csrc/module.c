/*
 * engram._core: the CPython/NumPy binding.
 *
 * This file parses arguments, validates arrays, releases the GIL around
 * kernels and turns their status into exceptions.  It does no arithmetic:
 * everything numeric lives behind csrc/engram.h.
 *
 * Public kernels are METH_FASTCALL functions that read NumPy buffers in
 * place.  One flag, `slow_path`, is set while anything needs more than the
 * plain call (stats, the reference backend, a per-thread backend override,
 * verify mode); when it is clear a call pays one predictable branch for all
 * of them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define NPY_TARGET_VERSION NPY_1_25_API_VERSION
#include <numpy/arrayobject.h>

#include <stdlib.h>
#include <string.h>

#include "engram.h"

/* Shared helpers not every build of the kernel sections uses. */
#define UNUSED_OK __attribute__((unused))

/* ------------------------------------------------------------------ */
/* Module state                                                         */
/* ------------------------------------------------------------------ */

typedef struct {
    /* reference implementation of each kernel, set by engram/__init__.py */
    PyObject *reference[ENGRAM_KERNEL_COUNT];
    /* verify mode: prepare(name, args, kwargs) -> token; check(token, result) */
    PyObject *verify_prepare;
    PyObject *verify_check;
    /* test hook: every C result of a kernel passes through it (fault injection) */
    PyObject *result_hook[ENGRAM_KERNEL_COUNT];
} module_state;

static inline module_state *get_state(PyObject *module) {
    return (module_state *)PyModule_GetState(module);
}

enum { BACKEND_C = 0, BACKEND_REFERENCE = 1 };
static const char *const backend_names[] = {"c", "reference"};

/* Process-wide switches; written with the GIL held. */
static int global_backend = BACKEND_C;
static int threads_overriding = 0;         /* threads with a backend override */
static __thread int thread_backend = -1;   /* -1: follow global_backend */
static int slow_path = 0;
static double verify_rate = 0.0;           /* share of C calls also run on the reference */
static int result_hooks = 0;               /* kernels with a result hook (tests only) */

static void update_slow_path(void) {
    slow_path = engram_stats_enabled() || global_backend != BACKEND_C ||
                threads_overriding > 0 || verify_rate > 0.0 || result_hooks > 0;
}

/* Per-thread xorshift: whether this call is one of the verified share. */
static int verify_sampled(void) {
    static __thread uint64_t state = 0;
    if (state == 0) state = 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&state;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) * (1.0 / 9007199254740992.0) < verify_rate;
}

static int current_backend(void) {
    return thread_backend >= 0 ? thread_backend : global_backend;
}

/* ------------------------------------------------------------------ */
/* Argument parsing (METH_FASTCALL | METH_KEYWORDS)                     */
/* ------------------------------------------------------------------ */

/*
 * Fill values[i] (borrowed, NULL if absent) for names[i].  The first
 * `max_positional` names may be given positionally, the rest only by
 * keyword; the first `required` must be present.
 */
UNUSED_OK static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names, int n_names,
                      int max_positional, int required, PyObject **values) {
    for (int i = 0; i < n_names; i++) values[i] = NULL;
    if (nargs > max_positional) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional argument%s (%zd given)",
                     fname, max_positional, max_positional == 1 ? "" : "s", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) values[i] = args[i];
    if (kwnames) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int found = -1;
            for (int i = 0; i < n_names; i++) {
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                    found = i;
                    break;
                }
            }
            if (found < 0) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                             fname, key);
                return -1;
            }
            if (values[found]) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                             fname, names[found]);
                return -1;
            }
            values[found] = args[nargs + k];
        }
    }
    for (int i = 0; i < required; i++) {
        if (values[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

/*
 * threads=None -> 0 (automatic); any integer (int, numpy integer, anything
 * with __index__, but not bool) in 1..256 -> itself.
 */
UNUSED_OK static int parse_threads(const char *fname, PyObject *obj, int *threads) {
    *threads = 0;
    if (obj == NULL || obj == Py_None) return 0;
    /* NumPy < 2 gives numpy.bool_ an __index__: a bool is still not a thread count */
    if (PyBool_Check(obj) || PyArray_IsScalar(obj, Bool) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s(): threads must be None or a positive int, got %.100s",
                     fname, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL) return -1;
    int overflow = 0;
    long n = PyLong_AsLongAndOverflow(index, &overflow);
    if (n == -1 && !overflow && PyErr_Occurred()) {
        Py_DECREF(index);
        return -1;
    }
    if (overflow || n < 1 || n > 256) {
        PyErr_Format(PyExc_ValueError, "%s(): threads must be None or in 1..256, got %S", fname,
                     index);
        Py_DECREF(index);
        return -1;
    }
    Py_DECREF(index);
    *threads = (int)n;
    return 0;
}

static void raise_about_array(PyObject *exc, const char *fname, const char *argname,
                              const char *expected, PyArrayObject *arr);

/*
 * A real-number parameter: a Python int or float, a NumPy integer or
 * floating scalar, or a 0-d array of one (bool is not a number here).
 * Anything else is a TypeError, and an int beyond the float64 range a
 * ValueError, both naming the argument.
 */
UNUSED_OK static int parse_double(const char *fname, const char *argname, PyObject *obj, double *out) {
    if (PyFloat_CheckExact(obj)) {
        *out = PyFloat_AS_DOUBLE(obj);
        return 0;
    }
    if (PyArray_Check(obj)) {
        PyArrayObject *arr = (PyArrayObject *)obj;
        const char kind = PyArray_DESCR(arr)->kind;
        if (PyArray_NDIM(arr) != 0 || (kind != 'f' && kind != 'i' && kind != 'u')) {
            raise_about_array(PyExc_TypeError, fname, argname, "a real number", arr);
            return -1;
        }
    } else if (PyBool_Check(obj) || !(PyFloat_Check(obj) || PyLong_Check(obj) ||
                                      PyArray_IsScalar(obj, Floating) || PyArray_IsScalar(obj, Integer))) {
        PyErr_Format(PyExc_TypeError, "%s(): %s must be a real number, got %.100s", fname, argname,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = PyFloat_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s(): %s must be a real number in the float64 range, "
                                           "got an int too large for it", fname, argname);
        }
        return -1;
    }
    return 0;
}

/* One of `choices` (a NULL-terminated list); returns its index or -1. */
UNUSED_OK static int parse_choice(const char *fname, const char *argname, PyObject *obj,
                        const char *const *choices) {
    if (PyUnicode_Check(obj)) {
        for (int i = 0; choices[i]; i++)
            if (PyUnicode_CompareWithASCIIString(obj, choices[i]) == 0) return i;
    }
    PyObject *expected = PyUnicode_FromString("");
    for (int i = 0; expected && choices[i]; i++) {
        PyObject *joined = PyUnicode_FromFormat("%U%s'%s'", expected, i ? ", " : "", choices[i]);
        Py_SETREF(expected, joined);
    }
    if (expected) {
        PyErr_Format(PyUnicode_Check(obj) ? PyExc_ValueError : PyExc_TypeError,
                     "%s(): %s must be one of %U, got %R", fname, argname, expected, obj);
        Py_DECREF(expected);
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Arrays                                                               */
/* ------------------------------------------------------------------ */

/* "int64 array of shape (3, 4) and strides (32, 8)" */
static PyObject *describe_array(PyArrayObject *arr) {
    int nd = PyArray_NDIM(arr);
    PyObject *shape = PyTuple_New(nd), *strides = PyTuple_New(nd), *text = NULL;
    if (shape && strides) {
        for (int i = 0; i < nd; i++) {
            PyTuple_SET_ITEM(shape, i, PyLong_FromSsize_t(PyArray_DIM(arr, i)));
            PyTuple_SET_ITEM(strides, i, PyLong_FromSsize_t(PyArray_STRIDE(arr, i)));
        }
        PyObject *dtype = PyObject_Str((PyObject *)PyArray_DESCR(arr));
        if (dtype)
            text = PyUnicode_FromFormat("%U array of shape %R and strides %R", dtype, shape,
                                        strides);
        Py_XDECREF(dtype);
    }
    Py_XDECREF(shape);
    Py_XDECREF(strides);
    return text;
}

static void raise_about_array(PyObject *exc, const char *fname, const char *argname,
                              const char *expected, PyArrayObject *arr) {
    PyObject *desc = describe_array(arr);
    if (desc) {
        PyErr_Format(exc, "%s(): %s must be %s, got %U", fname, argname, expected, desc);
        Py_DECREF(desc);
    }
}

/*
 * An input array read in place.  `arr` is the caller's array when it is
 * already a native, aligned float32/float64 ndarray (borrowed, no new
 * reference: the hot path), or a converted copy held in `owned`.
 * `given` is the caller's memory as passed: their ndarray (borrowed), or
 * the array NumPy made of an array-like (held in `given_owned`; it may be a
 * view of the caller's buffer).  Overlap checks against `out` use `given`:
 * a converted copy never overlaps anything, the caller's memory may.
 */
typedef struct {
    PyArrayObject *arr;
    PyObject *owned;
    PyArrayObject *given;
    PyObject *given_owned;
} array_in;

UNUSED_OK static void array_in_release(array_in *a) {
    Py_CLEAR(a->owned);
    Py_CLEAR(a->given_owned);
    a->arr = NULL;
    a->given = NULL;
}

/* Accepted element types: bit (1 << NPY_FLOAT) etc. */
#define ACCEPT_FLOATS ((1u << NPY_FLOAT) | (1u << NPY_DOUBLE))

static const char *accepted_text(unsigned accept) {
    if (accept == ACCEPT_FLOATS) return "a float32 or float64 array";
    if (accept == (1u << NPY_FLOAT)) return "a float32 array";
    if (accept == (1u << NPY_DOUBLE)) return "a float64 array";
    return "an array of a supported dtype";
}

/*
 * Get `obj` as an array of one of the `accept` types with ndim in
 * [min_ndim, max_ndim].  Anything array-like is accepted; non-native byte
 * order or misalignment are converted once; any other dtype is a TypeError
 * naming the argument and what came.
 */
UNUSED_OK static int get_array(const char *fname, const char *argname, PyObject *obj, unsigned accept,
                     int min_ndim, int max_ndim, array_in *out) {
    out->arr = NULL;
    out->owned = NULL;
    out->given = NULL;
    out->given_owned = NULL;
    PyArrayObject *arr;
    if (PyArray_Check(obj)) {
        arr = (PyArrayObject *)obj;
    } else {
        PyObject *converted = PyArray_FromAny(obj, NULL, 0, 0, 0, NULL);
        if (converted == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_Format(PyExc_TypeError, "%s(): %s must be %s, got %.100s (%S)", fname,
                             argname, accepted_text(accept), Py_TYPE(obj)->tp_name,
                             value ? value : Py_None);
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            }
            return -1;
        }
        out->given_owned = Py_NewRef(converted);
        out->owned = converted;
        arr = (PyArrayObject *)converted;
    }
    out->given = arr;
    int type = PyArray_TYPE(arr);
    if (type < 0 || type >= 32 || !(accept & (1u << type))) {
        raise_about_array(PyExc_TypeError, fname, argname, accepted_text(accept), arr);
        goto fail;
    }
    int nd = PyArray_NDIM(arr);
    if (nd < min_ndim || nd > max_ndim) {
        char expected[64];
        if (min_ndim == max_ndim)
            snprintf(expected, sizeof expected, "%d-dimensional", min_ndim);
        else
            snprintf(expected, sizeof expected, "%d- to %d-dimensional", min_ndim, max_ndim);
        raise_about_array(PyExc_ValueError, fname, argname, expected, arr);
        goto fail;
    }
    if (!PyArray_ISNOTSWAPPED(arr) || !PyArray_ISALIGNED(arr)) {
        PyObject *native = PyArray_FromArray(arr, PyArray_DescrFromType(type),
                                             NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED);
        if (native == NULL) goto fail;
        Py_XSETREF(out->owned, native);
        arr = (PyArrayObject *)native;
    }
    out->arr = arr;
    return 0;
fail:
    array_in_release(out);
    return -1;
}

/* Convert an accepted input to float64 (for mixed float32/float64 calls). */
UNUSED_OK static int promote_to_double(array_in *a) {
    if (PyArray_TYPE(a->arr) == NPY_DOUBLE) return 0;
    PyObject *converted = PyArray_FromArray(a->arr, PyArray_DescrFromType(NPY_DOUBLE), 0);
    if (converted == NULL) return -1;
    Py_XSETREF(a->owned, converted);
    a->arr = (PyArrayObject *)converted;
    return 0;
}

/* Product of sizes that must fit size_t (and a byte count of `elsize` each). */
UNUSED_OK static int check_size(const char *fname, const char *what, size_t a, size_t b, size_t elsize) {
    if (a != 0 && (b > SIZE_MAX / a || a * b > (SIZE_MAX / 2) / (elsize ? elsize : 1))) {
        PyErr_Format(PyExc_ValueError, "%s(): %s of %zu x %zu elements overflows the address space",
                     fname, what, a, b);
        return -1;
    }
    return 0;
}

/* [lo, hi) bytes an array can touch. */
static void array_extent(PyArrayObject *arr, char **lo, char **hi) {
    char *start = PyArray_BYTES(arr), *end = start;
    char *low = start;
    for (int i = 0; i < PyArray_NDIM(arr); i++) {
        npy_intp n = PyArray_DIM(arr, i), s = PyArray_STRIDE(arr, i);
        if (n == 0) {
            *lo = *hi = start;
            return;
        }
        if (s > 0) end += s * (n - 1);
        else low += s * (n - 1);
    }
    *lo = low;
    *hi = end + PyArray_ITEMSIZE(arr);
}

static int arrays_overlap(PyArrayObject *a, PyArrayObject *b) {
    char *alo, *ahi, *blo, *bhi;
    array_extent(a, &alo, &ahi);
    array_extent(b, &blo, &bhi);
    return alo < bhi && blo < ahi && alo != ahi && blo != bhi;
}

/*
 * Same memory, same layout, same dtype (byte order included): elementwise
 * kernels may write in place.
 */
static int arrays_identical_layout(PyArrayObject *a, PyArrayObject *b) {
    if (PyArray_BYTES(a) != PyArray_BYTES(b) || PyArray_NDIM(a) != PyArray_NDIM(b) ||
        !PyArray_EquivTypes(PyArray_DESCR(a), PyArray_DESCR(b)))
        return 0;
    for (int i = 0; i < PyArray_NDIM(a); i++)
        if (PyArray_DIM(a, i) != PyArray_DIM(b, i) ||
            (PyArray_DIM(a, i) > 1 && PyArray_STRIDE(a, i) != PyArray_STRIDE(b, i)))
            return 0;
    return 1;
}

/*
 * Whether two elements of `arr` share memory (a zero stride, or rows closer
 * than their length): results written there would overwrite each other.
 * Axes by increasing |stride|, each must step past everything inside it.
 */
static int array_overlaps_itself(PyArrayObject *arr) {
    int nd = PyArray_NDIM(arr), order[NPY_MAXDIMS];
    if (PyArray_SIZE(arr) <= 1) return 0;
    for (int i = 0; i < nd; i++) {
        int j = i;
        npy_intp s = PyArray_STRIDE(arr, i);
        s = s < 0 ? -s : s;
        for (; j > 0; j--) {
            npy_intp t = PyArray_STRIDE(arr, order[j - 1]);
            if ((t < 0 ? -t : t) <= s) break;
            order[j] = order[j - 1];
        }
        order[j] = i;
    }
    npy_intp extent = PyArray_ITEMSIZE(arr);
    for (int i = 0; i < nd; i++) {
        npy_intp n = PyArray_DIM(arr, order[i]), s = PyArray_STRIDE(arr, order[i]);
        if (n <= 1) continue;
        s = s < 0 ? -s : s;
        if (s < extent) return 1;
        extent = s * (n - 1) + extent;
    }
    return 0;
}

static const char out_distinct_text[] =
    "an array whose elements do not overlap (no zero stride, rows at least a row apart)";

/*
 * Validate a caller's `out`: an ndarray of exactly `type` and `shape`,
 * native byte order, writeable.  With `any_layout` the kernel writes
 * through out's strides (any sign, any alignment), so every such array is
 * accepted, as NumPy accepts it; without, out must also be aligned with a
 * contiguous last axis (any outer stride).  Borrowed reference in *out_arr.
 */
UNUSED_OK static int get_out(const char *fname, PyObject *obj, int type, int ndim, const npy_intp *shape,
                   int any_layout, PyArrayObject **out_arr) {
    *out_arr = NULL;
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s(): out must be a numpy.ndarray, got %.100s", fname,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *arr = (PyArrayObject *)obj;
    char expected[160];
    int pos = snprintf(expected, sizeof expected, "a writeable %s array of shape (",
                       type == NPY_FLOAT ? "float32" : type == NPY_DOUBLE ? "float64" : "int64");
    for (int i = 0; i < ndim && pos < (int)sizeof expected - 24; i++)
        pos += snprintf(expected + pos, sizeof expected - pos, "%s%" NPY_INTP_FMT "%s",
                        i ? ", " : "", shape[i], ndim == 1 ? "," : "");
    snprintf(expected + pos, sizeof expected - pos, ")");
    if (PyArray_TYPE(arr) != type || !PyArray_ISNOTSWAPPED(arr)) {
        raise_about_array(PyExc_TypeError, fname, "out", expected, arr);
        return -1;
    }
    int same_shape = PyArray_NDIM(arr) == ndim;
    for (int i = 0; same_shape && i < ndim; i++) same_shape = PyArray_DIM(arr, i) == shape[i];
    if (!same_shape) {
        raise_about_array(PyExc_ValueError, fname, "out", expected, arr);
        return -1;
    }
    if (!PyArray_ISWRITEABLE(arr)) {
        raise_about_array(PyExc_ValueError, fname, "out", "writeable", arr);
        return -1;
    }
    /* an empty out has nothing to write (NumPy 2 may give it zero strides) */
    if (!any_layout &&
        (!PyArray_ISALIGNED(arr) ||
         (ndim > 0 && shape[ndim - 1] > 1 && PyArray_SIZE(arr) > 0 &&
          PyArray_STRIDE(arr, ndim - 1) != (npy_intp)PyArray_ITEMSIZE(arr)))) {
        raise_about_array(PyExc_ValueError, fname, "out",
                          "aligned with a contiguous last axis", arr);
        return -1;
    }
    if (array_overlaps_itself(arr)) {
        raise_about_array(PyExc_ValueError, fname, "out", out_distinct_text, arr);
        return -1;
    }
    *out_arr = arr;
    return 0;
}

/*
 * out must not share memory with the caller's input (unless in_place_ok and
 * laid out identically with the same dtype).  Checked against in->given, the
 * caller's memory, not the possibly converted copy the kernel reads (an
 * array_in filled without get_array should set `given` too; without it, arr
 * is checked).
 */
UNUSED_OK static int check_no_overlap(const char *fname, PyArrayObject *out, const array_in *in_arr,
                            const char *in_name, int in_place_ok) {
    PyArrayObject *in = in_arr ? (in_arr->given ? in_arr->given : in_arr->arr) : NULL;
    if (in == NULL || out == NULL || !arrays_overlap(out, in)) return 0;
    if (in_place_ok && arrays_identical_layout(out, in)) return 0;
    PyErr_Format(PyExc_ValueError, "%s(): out overlaps %s in memory; pass a separate array%s",
                 fname, in_name, in_place_ok ? " or exactly the same array" : "");
    return -1;
}

/* Turn a kernel's failure into an exception. */
static PyObject *raise_status(engram_status status) {
    const char *msg = engram_last_error();
    PyErr_SetString(status == ENGRAM_ERR_NOMEM ? PyExc_MemoryError : PyExc_ValueError,
                    msg[0] ? msg : "engram kernel failed");
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Kernel entry points                                                  */
/* ------------------------------------------------------------------ */

typedef PyObject *(*kernel_impl)(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames, uint64_t *elements);

/* Hand a sampled call to verify mode before it runs (inputs may be updated in place). */
static PyObject *verify_before(module_state *st, engram_kernel_id id, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *positional = PyTuple_New(nargs), *keywords = PyDict_New(), *token = NULL;
    if (positional == NULL || keywords == NULL) goto done;
    for (Py_ssize_t i = 0; i < nargs; i++) PyTuple_SET_ITEM(positional, i, Py_NewRef(args[i]));
    for (Py_ssize_t k = 0; kwnames && k < PyTuple_GET_SIZE(kwnames); k++)
        if (PyDict_SetItem(keywords, PyTuple_GET_ITEM(kwnames, k), args[nargs + k]) < 0) goto done;
    token = PyObject_CallFunction(st->verify_prepare, "sOO", engram_kernel_name(id), positional,
                                  keywords);
done:
    Py_XDECREF(positional);
    Py_XDECREF(keywords);
    return token;
}

/* Stats, the reference backend, overrides, verify mode: everything but the plain call. */
static PyObject *slow_call(PyObject *module, engram_kernel_id id, kernel_impl impl,
                           PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    module_state *st = get_state(module);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    int stats = engram_stats_enabled();
    uint64_t t0 = stats ? engram_now_ns() : 0, elements = 0;
    PyObject *result;
    if (current_backend() == BACKEND_REFERENCE) {
        PyObject *ref = st->reference[id];
        if (ref == NULL) {
            PyErr_Format(PyExc_RuntimeError, "no reference implementation of %s is registered",
                         engram_kernel_name(id));
            return NULL;
        }
        result = PyObject_Vectorcall(ref, args, nargsf, kwnames);
        /* elements of the result (of its first array when it is a tuple, like top_k's) */
        PyObject *first = result && PyTuple_Check(result) && PyTuple_GET_SIZE(result) > 0
                              ? PyTuple_GET_ITEM(result, 0) : result;
        if (first && PyArray_Check(first)) elements = (uint64_t)PyArray_SIZE((PyArrayObject *)first);
        else if (result) elements = 1;
    } else {
        PyObject *token = NULL;
        if (verify_rate > 0.0 && st->verify_prepare && st->verify_check && verify_sampled()) {
            token = verify_before(st, id, args, nargs, kwnames);
            if (token == NULL) return NULL;
        }
        result = impl(module, args, nargs, kwnames, &elements);
        if (result && st->result_hook[id])
            Py_SETREF(result, PyObject_CallOneArg(st->result_hook[id], result));
        if (token && result) {
            PyObject *ok = PyObject_CallFunctionObjArgs(st->verify_check, token, result, NULL);
            if (ok == NULL) Py_CLEAR(result);
            Py_XDECREF(ok);
        }
        Py_XDECREF(token);
    }
    if (stats && result) engram_stats_record(id, engram_now_ns() - t0, elements);
    return result;
}

#define KERNEL_ENTRY(pyname, kernel_id)                                                          \
    static PyObject *pyname##_impl(PyObject *, PyObject *const *, Py_ssize_t, PyObject *,       \
                                   uint64_t *);                                                  \
    static PyObject *py_##pyname(PyObject *module, PyObject *const *args, Py_ssize_t nargs,      \
                                 PyObject *kwnames) {                                            \
        if (ENGRAM_UNLIKELY(slow_path))                                                          \
            return slow_call(module, kernel_id, pyname##_impl, args, (size_t)nargs, kwnames);    \
        uint64_t elements;                                                                       \
        return pyname##_impl(module, args, nargs, kwnames, &elements);                           \
    }

/* ==== similarity ==== */

/* Work (elements touched) above which a call releases the GIL: below it the release costs more. */
#define SIMILARITY_GIL_WORK ((size_t)1 << 15)

static inline engram_float_type float_type_of(PyArrayObject *a) {
    return PyArray_TYPE(a) == NPY_FLOAT ? ENGRAM_FLOAT32 : ENGRAM_FLOAT64;
}

/* The rows of a 1-D (one vector) or 2-D array. */
static void vectors_of(PyArrayObject *a, engram_vectors *v) {
    v->data = PyArray_DATA(a);
    if (PyArray_NDIM(a) == 1) {
        v->n = 1;
        v->d = (size_t)PyArray_DIM(a, 0);
        v->col_stride_bytes = PyArray_STRIDE(a, 0);
        v->row_stride_bytes = (ptrdiff_t)(v->d * (size_t)PyArray_ITEMSIZE(a));
    } else {
        v->n = (size_t)PyArray_DIM(a, 0);
        v->d = (size_t)PyArray_DIM(a, 1);
        v->row_stride_bytes = PyArray_STRIDE(a, 0);
        v->col_stride_bytes = PyArray_STRIDE(a, 1);
    }
}

/* Mixed float32/float64 inputs are computed in float64. */
static int common_float_type(array_in *a, array_in *b) {
    if (PyArray_TYPE(a->arr) == PyArray_TYPE(b->arr)) return 0;
    return promote_to_double(a) < 0 || promote_to_double(b) < 0 ? -1 : 0;
}

static int check_same_dim(const char *fname, const char *a_name, PyArrayObject *a,
                          const char *b_name, PyArrayObject *b) {
    npy_intp da = PyArray_DIM(a, PyArray_NDIM(a) - 1), db = PyArray_DIM(b, PyArray_NDIM(b) - 1);
    if (da == db) return 0;
    PyObject *desc_a = describe_array(a), *desc_b = describe_array(b);
    if (desc_a && desc_b)
        PyErr_Format(PyExc_ValueError,
                     "%s(): %s and %s must have the same last dimension (vector length), got %s "
                     "as %U and %s as %U",
                     fname, a_name, b_name, a_name, desc_a, b_name, desc_b);
    Py_XDECREF(desc_a);
    Py_XDECREF(desc_b);
    return -1;
}

/* Rows x length of an input must fit the address space. */
static int check_rows_size(const char *fname, const char *argname, PyArrayObject *a) {
    if (PyArray_NDIM(a) < 2) return 0;
    return check_size(fname, argname, (size_t)PyArray_DIM(a, 0), (size_t)PyArray_DIM(a, 1),
                      (size_t)PyArray_ITEMSIZE(a));
}

static size_t work_of(size_t a, size_t b, size_t c) {
    size_t w = a;
    if (b && w > SIZE_MAX / b) return SIZE_MAX;
    w *= b;
    if (c && w > SIZE_MAX / c) return SIZE_MAX;
    return w * c;
}

KERNEL_ENTRY(cosine_similarity, ENGRAM_KERNEL_COSINE_SIMILARITY)

static const char *const cosine_names[] = {"x", "y", "out", "threads"};

static PyObject *cosine_similarity_impl(PyObject *module, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames,
                                        uint64_t *elements) {
    (void)module;
    static const char fname[] = "cosine_similarity";
    /*
     * The single-pair path: two native, aligned, contiguous 1-D arrays of
     * one float type are read in place and the result returned as a float,
     * with no temporaries, no arena and the GIL held (a 768-d pair takes
     * less time than releasing and re-taking it).
     */
    if (nargs == 2 && kwnames == NULL && PyArray_Check(args[0]) && PyArray_Check(args[1])) {
        PyArrayObject *x = (PyArrayObject *)args[0], *y = (PyArrayObject *)args[1];
        const int need = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED;
        int type = PyArray_TYPE(x);
        if (PyArray_NDIM(x) == 1 && PyArray_NDIM(y) == 1 && type == PyArray_TYPE(y) &&
            PyArray_DIM(x, 0) == PyArray_DIM(y, 0) && (PyArray_FLAGS(x) & need) == need &&
            (PyArray_FLAGS(y) & need) == need && PyArray_ISNOTSWAPPED(x) &&
            PyArray_ISNOTSWAPPED(y) && (size_t)PyArray_DIM(x, 0) < SIMILARITY_GIL_WORK) {
            if (type == NPY_FLOAT) {
                *elements = 1;
                return PyFloat_FromDouble(engram_cosine_pair_f32(
                    PyArray_DATA(x), PyArray_DATA(y), (size_t)PyArray_DIM(x, 0)));
            }
            if (type == NPY_DOUBLE) {
                *elements = 1;
                return PyFloat_FromDouble(engram_cosine_pair_f64(
                    PyArray_DATA(x), PyArray_DATA(y), (size_t)PyArray_DIM(x, 0)));
            }
        }
    }

    PyObject *values[4];
    if (parse_args(fname, args, nargs, kwnames, cosine_names, 4, 2, 2, values) < 0) return NULL;
    int threads;
    if (parse_threads(fname, values[3], &threads) < 0) return NULL;
    array_in xa, ya;
    if (get_array(fname, "x", values[0], ACCEPT_FLOATS, 1, 2, &xa) < 0) return NULL;
    if (get_array(fname, "y", values[1], ACCEPT_FLOATS, 1, 2, &ya) < 0) {
        array_in_release(&xa);
        return NULL;
    }
    PyObject *result = NULL;
    PyArrayObject *out = NULL;
    if (check_same_dim(fname, "x", xa.arr, "y", ya.arr) < 0 ||
        check_rows_size(fname, "x", xa.arr) < 0 || check_rows_size(fname, "y", ya.arr) < 0 ||
        common_float_type(&xa, &ya) < 0)
        goto done;
    engram_float_type type = float_type_of(xa.arr);
    int npy_type = PyArray_TYPE(xa.arr);
    engram_vectors x, y;
    vectors_of(xa.arr, &x);
    vectors_of(ya.arr, &y);
    int x_matrix = PyArray_NDIM(xa.arr) == 2, y_matrix = PyArray_NDIM(ya.arr) == 2;
    if (check_size(fname, "the result", x.n, y.n, (size_t)PyArray_ITEMSIZE(xa.arr)) < 0) goto done;
    size_t work = work_of(x.n, y.n, x.d);
    engram_status status = ENGRAM_OK;
    engram_arena *arena = engram_arena_get();
    if (arena == NULL) {
        PyErr_NoMemory();
        goto done;
    }

    if (!x_matrix && !y_matrix) {
        if (values[2] != NULL && values[2] != Py_None) {
            PyErr_Format(PyExc_TypeError,
                         "%s(): out must be None when x and y are both 1-D (the result is a "
                         "float), got %.100s",
                         fname, Py_TYPE(values[2])->tp_name);
            goto done;
        }
        double r = 0;
        if (work >= SIMILARITY_GIL_WORK) {
            Py_BEGIN_ALLOW_THREADS
            status = engram_cosine_vectors(arena, type, &x, &y, &r);
            engram_arena_reset(arena);
            Py_END_ALLOW_THREADS
        } else {
            status = engram_cosine_vectors(arena, type, &x, &y, &r);
            engram_arena_reset(arena);
        }
        if (status != ENGRAM_OK) raise_status(status);
        else {
            result = PyFloat_FromDouble(r);
            *elements = 1;
        }
        goto done;
    }

    npy_intp shape[2];
    int ndim = 0;
    if (x_matrix) shape[ndim++] = (npy_intp)x.n;
    if (y_matrix) shape[ndim++] = (npy_intp)y.n;
    if (values[2] != NULL && values[2] != Py_None) {
        if (get_out(fname, values[2], npy_type, ndim, shape, 1, &out) < 0 ||
            check_no_overlap(fname, out, &xa, "x", 0) < 0 ||
            check_no_overlap(fname, out, &ya, "y", 0) < 0)
            goto done;
        Py_INCREF(out);
    } else {
        out = (PyArrayObject *)PyArray_EMPTY(ndim, shape, npy_type, 0);
        if (out == NULL) goto done;
    }
    /* a 1-D result runs along x's rows ((m, d) x (d,)) or along y's ((d,) x (n, d)) */
    ptrdiff_t out_row_stride = ndim == 2 || x_matrix ? PyArray_STRIDE(out, 0) : 0;
    ptrdiff_t out_col_stride = ndim == 2   ? PyArray_STRIDE(out, 1)
                               : !x_matrix ? PyArray_STRIDE(out, 0)
                                           : (ptrdiff_t)PyArray_ITEMSIZE(out);
    void *out_data = PyArray_DATA(out);
    if (work >= SIMILARITY_GIL_WORK) {
        Py_BEGIN_ALLOW_THREADS
        status = engram_cosine(arena, type, &x, &y, out_data, out_row_stride, out_col_stride,
                               threads);
        engram_arena_reset(arena);
        Py_END_ALLOW_THREADS
    } else {
        status = engram_cosine(arena, type, &x, &y, out_data, out_row_stride, out_col_stride,
                               threads);
        engram_arena_reset(arena);
    }
    if (status != ENGRAM_OK) {
        raise_status(status);
        Py_CLEAR(out);
        goto done;
    }
    *elements = (uint64_t)x.n * (uint64_t)y.n;
    result = (PyObject *)out;
done:
    array_in_release(&xa);
    array_in_release(&ya);
    return result;
}

KERNEL_ENTRY(normalize, ENGRAM_KERNEL_NORMALIZE)

static const char *const normalize_names[] = {"x", "out"};

static PyObject *normalize_impl(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, uint64_t *elements) {
    (void)module;
    static const char fname[] = "normalize";
    PyObject *values[2];
    if (parse_args(fname, args, nargs, kwnames, normalize_names, 2, 1, 1, values) < 0)
        return NULL;
    array_in xa;
    if (get_array(fname, "x", values[0], ACCEPT_FLOATS, 1, 2, &xa) < 0) return NULL;
    PyObject *result = NULL;
    PyArrayObject *out = NULL;
    if (check_rows_size(fname, "x", xa.arr) < 0) goto done;
    engram_vectors x;
    vectors_of(xa.arr, &x);
    int npy_type = PyArray_TYPE(xa.arr);
    if (values[1] != NULL && values[1] != Py_None) {
        if (get_out(fname, values[1], npy_type, PyArray_NDIM(xa.arr),
                           PyArray_DIMS(xa.arr), 1, &out) < 0 ||
            check_no_overlap(fname, out, &xa, "x", 1) < 0)
            goto done;
        Py_INCREF(out);
    } else {
        out = (PyArrayObject *)PyArray_EMPTY(PyArray_NDIM(xa.arr), PyArray_DIMS(xa.arr),
                                             npy_type, 0);
        if (out == NULL) goto done;
    }
    engram_arena *arena = engram_arena_get();
    if (arena == NULL) {
        PyErr_NoMemory();
        Py_CLEAR(out);
        goto done;
    }
    int out_nd = PyArray_NDIM(out);
    ptrdiff_t out_row_stride = out_nd == 2 ? PyArray_STRIDE(out, 0) : 0;
    ptrdiff_t out_col_stride = PyArray_STRIDE(out, out_nd - 1);
    void *out_data = PyArray_DATA(out);
    engram_float_type type = float_type_of(xa.arr);
    engram_status status;
    if (x.n * x.d >= SIMILARITY_GIL_WORK) {
        Py_BEGIN_ALLOW_THREADS
        status = engram_normalize(arena, type, &x, out_data, out_row_stride, out_col_stride);
        engram_arena_reset(arena);
        Py_END_ALLOW_THREADS
    } else {
        status = engram_normalize(arena, type, &x, out_data, out_row_stride, out_col_stride);
        engram_arena_reset(arena);
    }
    if (status != ENGRAM_OK) {
        raise_status(status);
        Py_CLEAR(out);
        goto done;
    }
    *elements = (uint64_t)x.n * (uint64_t)x.d;
    result = (PyObject *)out;
done:
    array_in_release(&xa);
    return result;
}

KERNEL_ENTRY(top_k, ENGRAM_KERNEL_TOP_K)

static const char *const top_k_names[] = {"queries", "corpus", "k", "metric", "threads"};
static const char *const metric_names[] = {"cosine", "dot", NULL};

static PyObject *top_k_impl(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames, uint64_t *elements) {
    (void)module;
    static const char fname[] = "top_k";
    PyObject *values[5];
    if (parse_args(fname, args, nargs, kwnames, top_k_names, 5, 3, 3, values) < 0) return NULL;
    int threads, metric = ENGRAM_METRIC_COSINE;
    if (parse_threads(fname, values[4], &threads) < 0) return NULL;
    if (values[3] != NULL && (metric = parse_choice(fname, "metric", values[3], metric_names)) < 0)
        return NULL;
    PyObject *k_obj = values[2];
    if (PyBool_Check(k_obj) || !PyIndex_Check(k_obj)) {
        PyErr_Format(PyExc_TypeError, "%s(): k must be a positive int, got %.100s", fname,
                     Py_TYPE(k_obj)->tp_name);
        return NULL;
    }
    Py_ssize_t k = PyNumber_AsSsize_t(k_obj, NULL); /* clamps huge values */
    if (k == -1 && PyErr_Occurred()) return NULL;
    if (k <= 0) {
        PyErr_Format(PyExc_ValueError, "%s(): k must be a positive int, got %R", fname, k_obj);
        return NULL;
    }
    array_in qa, ca;
    if (get_array(fname, "queries", values[0], ACCEPT_FLOATS, 1, 2, &qa) < 0) return NULL;
    if (get_array(fname, "corpus", values[1], ACCEPT_FLOATS, 2, 2, &ca) < 0) {
        array_in_release(&qa);
        return NULL;
    }
    PyObject *result = NULL;
    PyArrayObject *scores = NULL, *ids = NULL;
    if (check_same_dim(fname, "queries", qa.arr, "corpus", ca.arr) < 0 ||
        check_rows_size(fname, "queries", qa.arr) < 0 ||
        check_rows_size(fname, "corpus", ca.arr) < 0 || common_float_type(&qa, &ca) < 0)
        goto done;
    engram_vectors q, c;
    vectors_of(qa.arr, &q);
    vectors_of(ca.arr, &c);
    if (check_size(fname, "the result", q.n, (size_t)k, sizeof(int64_t)) < 0) goto done;
    int one_query = PyArray_NDIM(qa.arr) == 1;
    npy_intp shape[2] = {(npy_intp)q.n, (npy_intp)k};
    int npy_type = PyArray_TYPE(qa.arr);
    scores = (PyArrayObject *)PyArray_EMPTY(one_query ? 1 : 2, one_query ? shape + 1 : shape,
                                            npy_type, 0);
    ids = (PyArrayObject *)PyArray_EMPTY(one_query ? 1 : 2, one_query ? shape + 1 : shape,
                                         NPY_INT64, 0);
    if (scores == NULL || ids == NULL) goto fail;
    engram_arena *arena = engram_arena_get();
    if (arena == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    engram_float_type type = float_type_of(qa.arr);
    void *scores_data = PyArray_DATA(scores);
    int64_t *ids_data = (int64_t *)PyArray_DATA(ids);
    engram_status status;
    if (work_of(q.n, c.n, q.d) >= SIMILARITY_GIL_WORK) {
        Py_BEGIN_ALLOW_THREADS
        status = engram_top_k(arena, type, &q, &c, (size_t)k, (engram_metric)metric, scores_data,
                              ids_data, threads);
        engram_arena_reset(arena);
        Py_END_ALLOW_THREADS
    } else {
        status = engram_top_k(arena, type, &q, &c, (size_t)k, (engram_metric)metric, scores_data,
                              ids_data, threads);
        engram_arena_reset(arena);
    }
    if (status != ENGRAM_OK) {
        raise_status(status);
        goto fail;
    }
    *elements = (uint64_t)q.n * (uint64_t)k;
    result = PyTuple_Pack(2, (PyObject *)scores, (PyObject *)ids);
fail:
    Py_XDECREF(scores);
    Py_XDECREF(ids);
done:
    array_in_release(&qa);
    array_in_release(&ca);
    return result;
}

/* ==== end similarity ==== */

/* ==== spread ==== */

/*
 * spread(graph, seeds, *, max_depth=4, decay=0.85, threshold=1e-4,
 *        normalize="none", combine="sum", revisit=False, out=None, threads=None)
 *
 * The graph is an engram.graph.Graph (anything else is wrapped by
 * Graph._coerce); its _spread_arrays() hands over the CSR arrays, the
 * normalisation and, once built, the pull layout.  If the kernel finds a hop
 * that should pull before the layout exists, it stops; the graph builds the
 * layout (once) and the call runs again.
 */

static PyObject *spread_graph_class = NULL; /* engram.graph.Graph, imported on first use */
/* Private knobs for tests and measurements (_spread_tuning). */
static int spread_direction = ENGRAM_SPREAD_AUTO;
static double spread_pull_fraction = ENGRAM_SPREAD_PULL_FRACTION;
static size_t spread_parallel_hop_edges = ENGRAM_SPREAD_PARALLEL_HOP_EDGES;

static PyObject *spread_as_graph(PyObject *obj) {
    if (spread_graph_class == NULL) {
        PyObject *mod = PyImport_ImportModule("engram.graph");
        if (mod == NULL) return NULL;
        spread_graph_class = PyObject_GetAttrString(mod, "Graph");
        Py_DECREF(mod);
        if (spread_graph_class == NULL) return NULL;
    }
    int is_graph = PyObject_IsInstance(obj, spread_graph_class);
    if (is_graph < 0) return NULL;
    if (is_graph) { Py_INCREF(obj); return obj; }
    return PyObject_CallMethod(spread_graph_class, "_coerce", "(O)", obj);
}

/* A contiguous native array of `type` with at least `min_size` elements, or NULL (None ok if allowed). */
static int spread_buffer(PyObject *obj, const char *what, int type, npy_intp min_size,
                         int allow_none, const void **data) {
    *data = NULL;
    if (obj == Py_None && allow_none) return 0;
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != type ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj) || !PyArray_ISNOTSWAPPED((PyArrayObject *)obj) ||
        !PyArray_ISALIGNED((PyArrayObject *)obj) || PyArray_NDIM((PyArrayObject *)obj) != 1 ||
        PyArray_DIM((PyArrayObject *)obj, 0) < min_size) {
        PyErr_Format(PyExc_RuntimeError, "spread(): the graph's %s array is not what the kernel "
                                         "needs (was the Graph modified?)", what);
        return -1;
    }
    *data = PyArray_DATA((PyArrayObject *)obj);
    return 0;
}

typedef struct spread_view {
    engram_spread_graph g;
    engram_spread_pull pull;
    PyObject *arrays; /* the tuple the pointers point into */
} spread_view;

static int spread_get_view(PyObject *graph, int normalize, int want_pull, spread_view *v) {
    memset(v, 0, sizeof *v);
    PyObject *t = PyObject_CallMethod(graph, "_spread_arrays", "ii", normalize, want_pull);
    if (t == NULL) return -1;
    v->arrays = t;
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 8) {
        PyErr_SetString(PyExc_RuntimeError, "spread(): Graph._spread_arrays() returned a bad tuple");
        return -1;
    }
    size_t n = PyLong_AsSize_t(PyTuple_GET_ITEM(t, 0));
    size_t nnz = PyLong_AsSize_t(PyTuple_GET_ITEM(t, 1));
    if (PyErr_Occurred()) return -1;
    PyObject *indptr = PyTuple_GET_ITEM(t, 2), *indices = PyTuple_GET_ITEM(t, 3);
    int index_type = PyArray_Check(indptr) ? PyArray_TYPE((PyArrayObject *)indptr) : -1;
    if (index_type != NPY_INT32 && index_type != NPY_INT64) index_type = NPY_INT64;
    engram_spread_graph *g = &v->g;
    g->n = n;
    g->nnz = nnz;
    g->index64 = index_type == NPY_INT64;
    if (spread_buffer(indptr, "indptr", index_type, (npy_intp)n + 1, 0, &g->indptr) < 0 ||
        spread_buffer(indices, "indices", index_type, (npy_intp)nnz, 0, &g->indices) < 0)
        return -1;
    PyObject *weights = PyTuple_GET_ITEM(t, 4);
    g->weight_type = weights == Py_None ? ENGRAM_SPREAD_UNWEIGHTED
                     : PyArray_Check(weights) && PyArray_TYPE((PyArrayObject *)weights) == NPY_FLOAT
                         ? ENGRAM_SPREAD_F32
                         : ENGRAM_SPREAD_F64;
    const int weight_npy = g->weight_type == ENGRAM_SPREAD_F32 ? NPY_FLOAT : NPY_DOUBLE;
    if (spread_buffer(weights, "weights", weight_npy, (npy_intp)nnz, 1, &g->weights) < 0) return -1;
    const void *scale;
    if (spread_buffer(PyTuple_GET_ITEM(t, 5), "scale", NPY_DOUBLE, (npy_intp)n, 1, &scale) < 0)
        return -1;
    g->source_scale = scale;
    g->pull_possible = PyObject_IsTrue(PyTuple_GET_ITEM(t, 7)) == 1;
    PyObject *layout = PyTuple_GET_ITEM(t, 6);
    if (layout == Py_None) return 0;
    if (!PyTuple_Check(layout) || PyTuple_GET_SIZE(layout) != 12) {
        PyErr_SetString(PyExc_RuntimeError, "spread(): the graph's pull layout is not a tuple of 12");
        return -1;
    }
    engram_spread_pull *p = &v->pull;
    Py_ssize_t window_rows = 0, block_rows = 0;
    if (!PyArg_ParseTuple(PyTuple_GET_ITEM(layout, 11), "nn", &window_rows, &block_rows)) return -1;
    if (window_rows < ENGRAM_SPREAD_LANES || window_rows % ENGRAM_SPREAD_LANES || block_rows < 0) {
        PyErr_SetString(PyExc_RuntimeError, "spread(): the graph's pull layout has bad sizes");
        return -1;
    }
    p->row_chunks = (n + ENGRAM_SPREAD_LANES - 1) / ENGRAM_SPREAD_LANES;
    p->window_rows = (size_t)window_rows;
    p->n_windows = (n + p->window_rows - 1) / p->window_rows;
    p->block_rows = (size_t)block_rows;
    p->n_blocks = block_rows ? (n + (size_t)block_rows - 1) / (size_t)block_rows : 0;
    PyObject *lengths = PyTuple_GET_ITEM(layout, 3);
    p->n_chunks = PyArray_Check(lengths) ? (size_t)PyArray_SIZE((PyArrayObject *)lengths) : 0;
    const npy_intp rows_padded = (npy_intp)(p->row_chunks * ENGRAM_SPREAD_LANES);
    const void *row_node, *node_row, *chunk_offset, *chunk_length, *sources, *row_scale, *row_degree;
    const void *chunk_rows = NULL, *block_chunks = NULL, *window_slots = NULL;
    if (spread_buffer(PyTuple_GET_ITEM(layout, 0), "row_node", NPY_INT32, (npy_intp)n, 0, &row_node) < 0 ||
        spread_buffer(PyTuple_GET_ITEM(layout, 1), "node_row", NPY_INT32, (npy_intp)n, 0, &node_row) < 0 ||
        spread_buffer(PyTuple_GET_ITEM(layout, 2), "chunk_offset", NPY_INT64,
                      (npy_intp)p->n_chunks + 1, 0, &chunk_offset) < 0 ||
        spread_buffer(lengths, "chunk_length", NPY_INT32, (npy_intp)p->n_chunks, 0, &chunk_length) < 0 ||
        spread_buffer(PyTuple_GET_ITEM(layout, 6), "row_scale", NPY_DOUBLE, rows_padded, 1,
                      &row_scale) < 0 ||
        spread_buffer(PyTuple_GET_ITEM(layout, 7), "row_degree", NPY_UINT32, rows_padded, 0,
                      &row_degree) < 0)
        return -1;
    if (p->n_blocks &&
        (spread_buffer(PyTuple_GET_ITEM(layout, 8), "chunk_rows", NPY_INT32,
                       (npy_intp)(p->n_chunks * ENGRAM_SPREAD_LANES), 0, &chunk_rows) < 0 ||
         spread_buffer(PyTuple_GET_ITEM(layout, 9), "block_chunks", NPY_INT64,
                       (npy_intp)(p->n_blocks * (p->n_windows + 1)), 0, &block_chunks) < 0 ||
         spread_buffer(PyTuple_GET_ITEM(layout, 10), "window_slots", NPY_INT64,
                       (npy_intp)p->n_windows + 1, 0, &window_slots) < 0))
        return -1;
    if (!p->n_blocks && p->n_chunks != p->row_chunks) {
        PyErr_SetString(PyExc_RuntimeError, "spread(): the graph's pull layout does not match it");
        return -1;
    }
    const npy_intp slots = (npy_intp)((const int64_t *)chunk_offset)[p->n_chunks];
    if (spread_buffer(PyTuple_GET_ITEM(layout, 4), "sources", NPY_INT32, slots, 0, &sources) < 0 ||
        spread_buffer(PyTuple_GET_ITEM(layout, 5), "pull weights", weight_npy, slots,
                      g->weight_type == ENGRAM_SPREAD_UNWEIGHTED, &p->weights) < 0)
        return -1;
    if ((g->weight_type == ENGRAM_SPREAD_UNWEIGHTED) != (p->weights == NULL) ||
        (g->source_scale == NULL) != (row_scale == NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "spread(): the graph's pull layout does not match it");
        return -1;
    }
    p->row_node = row_node;
    p->node_row = node_row;
    p->chunk_offset = chunk_offset;
    p->chunk_length = chunk_length;
    p->sources = sources;
    p->row_scale = row_scale;
    p->row_degree = row_degree;
    p->chunk_rows = chunk_rows;
    p->block_chunks = block_chunks;
    p->window_slots = window_slots;
    g->pull = p;
    return 0;
}

/* A strict bool: True/False, numpy.bool_, or the ints 0 and 1. */
static int spread_parse_bool(const char *argname, PyObject *obj, int *out) {
    if (PyBool_Check(obj) || PyArray_IsScalar(obj, Bool) ||
        (PyLong_Check(obj) && (PyLong_AsLong(obj) == 0 || PyLong_AsLong(obj) == 1))) {
        *out = PyObject_IsTrue(obj);
        return *out < 0 ? -1 : 0;
    }
    PyErr_Format(PyExc_TypeError, "spread(): %s must be a bool, got %.100s", argname,
                 Py_TYPE(obj)->tp_name);
    return -1;
}

/* max_depth: an int >= 0. */
static int spread_parse_depth(PyObject *obj, size_t *depth) {
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "spread(): max_depth must be an int >= 0, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL) return -1;
    int negative = PyObject_RichCompareBool(index, Py_False, Py_LT);
    if (negative == 1) {
        PyErr_Format(PyExc_ValueError, "spread(): max_depth must be >= 0, got %R", index);
        Py_DECREF(index);
        return -1;
    }
    *depth = PyLong_AsSize_t(index);
    Py_DECREF(index);
    if (*depth == (size_t)-1 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "spread(): max_depth is too large");
        return -1;
    }
    return 0;
}

/* decay: a real number, or an array of max_depth real numbers (held in *owned). */
static int spread_parse_decay(PyObject *obj, size_t max_depth, double *scalar,
                              const double **per_hop, PyObject **owned) {
    *per_hop = NULL;
    *owned = NULL;
    if (PyFloat_Check(obj) || PyLong_Check(obj) || PyArray_IsScalar(obj, Number) ||
        (PyArray_Check(obj) && PyArray_NDIM((PyArrayObject *)obj) == 0))
        return parse_double("spread", "decay", obj, scalar);
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY(obj, NPY_NOTYPE, 0, 0, 0);
    if (arr == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "spread(): decay must be a real number or an array of %zu "
                                      "per-hop factors, got %.100s", max_depth, Py_TYPE(obj)->tp_name);
        return -1;
    }
    const char kind = PyArray_DESCR(arr)->kind;
    if (kind != 'f' && kind != 'i' && kind != 'u') {
        raise_about_array(PyExc_TypeError, "spread", "decay", "a real number or a real array", arr);
        Py_DECREF(arr);
        return -1;
    }
    if (PyArray_NDIM(arr) != 1 || (size_t)PyArray_DIM(arr, 0) != max_depth) {
        char expected[96];
        snprintf(expected, sizeof expected, "a number or an array of max_depth = %zu per-hop factors",
                 max_depth);
        raise_about_array(PyExc_ValueError, "spread", "decay", expected, arr);
        Py_DECREF(arr);
        return -1;
    }
    PyObject *f64 = PyArray_FromArray(arr, PyArray_DescrFromType(NPY_DOUBLE),
                                      NPY_ARRAY_CARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(arr);
    if (f64 == NULL) return -1;
    *owned = f64;
    *per_hop = (const double *)PyArray_DATA((PyArrayObject *)f64);
    return 0;
}

/*
 * seeds as a dict {node: value}: ids and values into PyMem buffers, in the
 * dict's order (a node named twice, by keys whose __index__ agree, keeps the
 * later value).  The entries are read from a snapshot that owns them: a
 * key's __index__ or a value's __float__ may change the dict meanwhile.
 */
static int spread_parse_dict(PyObject *dict, size_t n, engram_spread_seeds *s, int64_t **ids,
                             double **values) {
    PyObject *items = PyDict_Items(dict);
    if (items == NULL) return -1;
    const Py_ssize_t count = PyList_GET_SIZE(items);
    int rc = -1;
    *ids = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(int64_t));
    *values = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(double));
    if (*ids == NULL || *values == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        PyObject *key = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        if (PyBool_Check(key) || !PyIndex_Check(key)) {
            PyErr_Format(PyExc_TypeError, "spread(): seeds given as a dict must map int node ids to "
                                          "values, got a key of type %.100s", Py_TYPE(key)->tp_name);
            goto done;
        }
        PyObject *index = PyNumber_Index(key);
        if (index == NULL) goto done;
        int overflow = 0;
        long long id = PyLong_AsLongLongAndOverflow(index, &overflow);
        if (id == -1 && PyErr_Occurred()) {
            Py_DECREF(index);
            goto done;
        }
        if (overflow || id < 0 || (unsigned long long)id >= n) {
            PyErr_Format(PyExc_ValueError, "spread(): seeds has node %R, out of range for a graph "
                                           "of %zu nodes", index, n);
            Py_DECREF(index);
            goto done;
        }
        Py_DECREF(index);
        if (PyBool_Check(value) || !(PyFloat_Check(value) || PyLong_Check(value) ||
                                     PyArray_IsScalar(value, Floating) || PyArray_IsScalar(value, Integer))) {
            PyErr_Format(PyExc_TypeError, "spread(): seeds[%lld] must be a real number, got %.100s",
                         id, Py_TYPE(value)->tp_name);
            goto done;
        }
        double x = PyFloat_AsDouble(value);
        if (x == -1.0 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) goto done;
            /* an int beyond float64 is an infinite seed (reported as such below) */
            PyErr_Clear();
            const int negative = PyObject_RichCompareBool(value, Py_False, Py_LT);
            if (negative < 0) goto done;
            x = negative ? -Py_HUGE_VAL : Py_HUGE_VAL;
        }
        (*ids)[i] = id;
        (*values)[i] = x;
    }
    s->type = ENGRAM_SPREAD_SEEDS_SPARSE;
    s->rows = 1;
    s->count = (size_t)count;
    s->ids = *ids;
    s->values = *values;
    rc = 0;
done:
    Py_DECREF(items);
    return rc;
}

/*
 * out must not share memory with the graph's arrays (with Graph(copy=False)
 * they may be the caller's): the kernel reads them while it writes out, and
 * later calls would read what it wrote.
 */
static int spread_check_out_graph(PyArrayObject *out, PyObject *graph) {
    static const char *const names[] = {"indptr", "indices", "weights"};
    for (int i = 0; i < 3; i++) {
        PyObject *a = PyObject_GetAttrString(graph, names[i]);
        if (a == NULL) return -1;
        const int overlap = PyArray_Check(a) && arrays_overlap(out, (PyArrayObject *)a);
        Py_DECREF(a);
        if (overlap) {
            PyErr_Format(PyExc_ValueError, "spread(): out overlaps the graph's %s in memory; pass a "
                                           "separate array", names[i]);
            return -1;
        }
    }
    return 0;
}

/* Whether the kernel can write out in place: aligned, contiguous rows a whole number of floats apart. */
static int spread_out_direct(PyArrayObject *out) {
    const int nd = PyArray_NDIM(out);
    const npy_intp item = (npy_intp)sizeof(float);
    if (!PyArray_ISALIGNED(out)) return 0;
    if (PyArray_DIM(out, nd - 1) > 1 && PyArray_STRIDE(out, nd - 1) != item) return 0;
    return nd == 1 || PyArray_STRIDE(out, 0) % item == 0;
}

KERNEL_ENTRY(spread, ENGRAM_KERNEL_SPREAD)

static PyObject *spread_impl(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, uint64_t *elements) {
    (void)module;
    static const char *const names[] = {"graph", "seeds", "max_depth", "decay", "threshold",
                                        "normalize", "combine", "revisit", "out", "threads"};
    static const char *const normalize_choices[] = {"none", "out", NULL};
    static const char *const combine_choices[] = {"sum", "max", NULL};
    PyObject *v[10];
    if (parse_args("spread", args, nargs, kwnames, names, 10, 2, 2, v) < 0) return NULL;

    PyObject *graph = NULL, *decay_owned = NULL, *result = NULL;
    array_in seeds_in = {0};
    int64_t *dict_ids = NULL;
    double *dict_values = NULL;
    spread_view view = {0};
    engram_spread_seeds seeds = {0};
    engram_spread_options opt = {
        .max_depth = 4, .decay = 0.85, .threshold = 1e-4, .combine = ENGRAM_SPREAD_SUM,
        .direction = spread_direction, .pull_fraction = spread_pull_fraction,
        .parallel_hop_edges = spread_parallel_hop_edges,
    };
    int normalize = 0;

    graph = spread_as_graph(v[0]);
    if (graph == NULL) goto done;
    if (v[2] && spread_parse_depth(v[2], &opt.max_depth) < 0) goto done;
    if (v[3] && spread_parse_decay(v[3], opt.max_depth, &opt.decay, &opt.decay_per_hop,
                                   &decay_owned) < 0)
        goto done;
    if (v[4] && parse_double("spread", "threshold", v[4], &opt.threshold) < 0) goto done;
    if (v[5] && (normalize = parse_choice("spread", "normalize", v[5], normalize_choices)) < 0)
        goto done;
    if (v[6]) {
        int c = parse_choice("spread", "combine", v[6], combine_choices);
        if (c < 0) goto done;
        opt.combine = (engram_spread_combine)c;
    }
    if (v[7] && spread_parse_bool("revisit", v[7], &opt.revisit) < 0) goto done;
    if (v[9] && parse_threads("spread", v[9], &opt.threads) < 0) goto done;
    if (spread_get_view(graph, normalize, spread_direction == ENGRAM_SPREAD_PULL, &view) < 0)
        goto done;
    const size_t n = view.g.n;

    /* seeds */
    int ndim = 1;
    npy_intp shape[2] = {(npy_intp)n, (npy_intp)n};
    if (PyDict_Check(v[1])) {
        if (spread_parse_dict(v[1], n, &seeds, &dict_ids, &dict_values) < 0) goto done;
    } else {
        if (get_array("spread", "seeds", v[1], ACCEPT_FLOATS, 1, 2, &seeds_in) < 0) goto done;
        PyArrayObject *a = seeds_in.arr;
        ndim = PyArray_NDIM(a);
        if ((size_t)PyArray_DIM(a, ndim - 1) != n) {
            char expected[128];
            snprintf(expected, sizeof expected, "of shape (%zu,) or (b, %zu) for a graph of %zu nodes",
                     n, n, n);
            raise_about_array(PyExc_ValueError, "spread", "seeds", expected, a);
            goto done;
        }
        const npy_intp item = PyArray_ITEMSIZE(a);
        if ((n > 1 && PyArray_STRIDE(a, ndim - 1) != item) ||
            (ndim == 2 && PyArray_STRIDE(a, 0) % item != 0)) {
            PyObject *copy = PyArray_NewCopy(a, NPY_CORDER);
            if (copy == NULL) goto done;
            Py_XSETREF(seeds_in.owned, copy);
            seeds_in.arr = a = (PyArrayObject *)copy;
        }
        seeds.type = PyArray_TYPE(a) == NPY_FLOAT ? ENGRAM_SPREAD_SEEDS_F32 : ENGRAM_SPREAD_SEEDS_F64;
        seeds.rows = ndim == 2 ? (size_t)PyArray_DIM(a, 0) : 1;
        seeds.batch = ndim == 2;
        seeds.data = PyArray_DATA(a);
        seeds.row_stride = ndim == 2 ? PyArray_STRIDE(a, 0) / item : 0;
        if (ndim == 2) shape[0] = PyArray_DIM(a, 0);
        else shape[0] = (npy_intp)n;
    }
    if (ndim == 1) shape[0] = (npy_intp)n;
    if (check_size("spread", "the output", seeds.rows, n, sizeof(float)) < 0) goto done;

    /* out */
    PyArrayObject *caller_out = NULL, *out;
    if (v[8] && v[8] != Py_None) {
        if (get_out("spread", v[8], NPY_FLOAT, ndim, shape, 1, &caller_out) < 0) goto done;
        if (seeds_in.given && check_no_overlap("spread", caller_out, &seeds_in, "seeds", 1) < 0)
            goto done;
        if (spread_check_out_graph(caller_out, graph) < 0) goto done;
    }
    /*
     * The kernel writes the caller's out itself when out has a layout it
     * writes and nothing can stop it half-way: a run that stops to have the
     * pull layout built writes nothing of a single row, but several rows
     * may have finished by then, and a second run would read seeds that out
     * aliases, or the layout build fail after out was written.  Batches on a
     * graph that may still need the layout are written to a fresh array,
     * copied into out once the call succeeded.
     */
    const int may_rerun = view.g.pull == NULL && view.g.pull_possible && opt.max_depth > 0 &&
                          spread_direction != ENGRAM_SPREAD_PUSH;
    if (caller_out && !(may_rerun && seeds.rows > 1) && spread_out_direct(caller_out)) {
        out = caller_out;
        Py_INCREF(out);
        opt.out_is_fresh = 0;
    } else {
        out = (PyArrayObject *)PyArray_EMPTY(ndim, shape, NPY_FLOAT, 0);
        if (out == NULL) goto done;
        opt.out_is_fresh = 1;
    }
    const ptrdiff_t out_stride = ndim == 2 ? PyArray_STRIDE(out, 0) / (npy_intp)sizeof(float) : 0;

    engram_status status;
    int wants_pull = 0;
    uint64_t edges = 0;
    /*
     * A run that stops for the pull layout may already have written out, so
     * from then on the call must not fail: if memory runs short for the
     * layout or for a run with it, every hop pushes instead (same results,
     * and push scratch is what the first run had already obtained).
     */
    int may_have_written = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        engram_arena *arena = engram_arena_get();
        if (arena == NULL) {
            Py_DECREF(out);
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        status = engram_spread_run(arena, &view.g, &seeds, &opt, (float *)PyArray_DATA(out),
                                   out_stride, &wants_pull, &edges);
        engram_arena_reset(arena);
        Py_END_ALLOW_THREADS
        int out_of_memory = status == ENGRAM_ERR_NOMEM && may_have_written;
        if (!out_of_memory && (status != ENGRAM_OK || !wants_pull)) break;
        may_have_written = 1;
        if (!out_of_memory) {
            /* a hop wants to pull: build the layout (once per graph) and run again */
            Py_CLEAR(view.arrays);
            if (spread_get_view(graph, normalize, 1, &view) == 0 && view.g.pull != NULL) continue;
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "spread(): the graph gave no pull layout");
            if (!PyErr_ExceptionMatches(PyExc_MemoryError)) {
                Py_DECREF(out);
                goto done;
            }
            PyErr_Clear();
        }
        Py_CLEAR(view.arrays);
        if (spread_get_view(graph, normalize, 0, &view) < 0) {
            Py_DECREF(out);
            goto done;
        }
        view.g.pull = NULL;
        opt.direction = ENGRAM_SPREAD_PUSH;
    }
    if (status != ENGRAM_OK) {
        Py_DECREF(out);
        raise_status(status);
        goto done;
    }
    if (caller_out && out != caller_out) {
        const int copied = PyArray_CopyInto(caller_out, out);
        Py_DECREF(out);
        if (copied < 0) goto done;
        out = caller_out;
        Py_INCREF(out);
    }
    *elements = edges;
    result = (PyObject *)out;
done:
    Py_XDECREF(graph);
    Py_XDECREF(decay_owned);
    Py_XDECREF(view.arrays);
    array_in_release(&seeds_in);
    PyMem_Free(dict_ids);
    PyMem_Free(dict_values);
    return result;
}

static int spread_csr_args(PyObject *indptr, PyObject *indices, PyObject *weights, Py_ssize_t n,
                           engram_spread_graph *g) {
    memset(g, 0, sizeof *g);
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return -1;
    }
    int type = PyArray_Check(indptr) ? PyArray_TYPE((PyArrayObject *)indptr) : -1;
    if (type != NPY_INT32 && type != NPY_INT64) type = NPY_INT64;
    g->n = (size_t)n;
    g->index64 = type == NPY_INT64;
    if (spread_buffer(indptr, "indptr", type, (npy_intp)n + 1, 0, &g->indptr) < 0) return -1;
    g->nnz = (size_t)(g->index64 ? ((const int64_t *)g->indptr)[n] : ((const int32_t *)g->indptr)[n]);
    if (spread_buffer(indices, "indices", type, (npy_intp)g->nnz, 0, &g->indices) < 0) return -1;
    if (weights && weights != Py_None) {
        g->weight_type = PyArray_Check(weights) && PyArray_TYPE((PyArrayObject *)weights) == NPY_FLOAT
                             ? ENGRAM_SPREAD_F32 : ENGRAM_SPREAD_F64;
        if (spread_buffer(weights, "weights", g->weight_type == ENGRAM_SPREAD_F32 ? NPY_FLOAT : NPY_DOUBLE,
                          (npy_intp)g->nnz, 0, &g->weights) < 0)
            return -1;
    }
    return 0;
}

/* _spread_pull_plan(indptr, indices, n, window_rows, block_rows)
 *   -> (row_node, node_row, row_degree, n_chunks, n_slots) */
static PyObject *py_spread_pull_plan(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *indptr, *indices;
    Py_ssize_t n, window_rows, block_rows;
    if (!PyArg_ParseTuple(args, "OOnnn", &indptr, &indices, &n, &window_rows, &block_rows)) return NULL;
    engram_spread_graph g;
    if (spread_csr_args(indptr, indices, NULL, n, &g) < 0) return NULL;
    if ((size_t)n > ENGRAM_SPREAD_PULL_MAX_NODES || window_rows < 0 || block_rows < 0) {
        PyErr_Format(PyExc_ValueError, "the pull layout holds at most %zu nodes, got %zd",
                     ENGRAM_SPREAD_PULL_MAX_NODES, n);
        return NULL;
    }
    npy_intp dims_n = n, dims_rows = (n + ENGRAM_SPREAD_LANES - 1) / ENGRAM_SPREAD_LANES * ENGRAM_SPREAD_LANES;
    PyObject *row_node = PyArray_EMPTY(1, &dims_n, NPY_INT32, 0);
    PyObject *node_row = PyArray_EMPTY(1, &dims_n, NPY_INT32, 0);
    PyObject *row_degree = PyArray_EMPTY(1, &dims_rows, NPY_UINT32, 0);
    PyObject *result = NULL;
    if (row_node && node_row && row_degree) {
        engram_arena *arena = engram_arena_get();
        engram_status status = ENGRAM_ERR_NOMEM;
        size_t n_chunks = 0, n_slots = 0;
        if (arena) {
            Py_BEGIN_ALLOW_THREADS
            status = engram_spread_pull_plan(arena, &g, (size_t)window_rows, (size_t)block_rows,
                                             PyArray_DATA((PyArrayObject *)row_node),
                                             PyArray_DATA((PyArrayObject *)node_row),
                                             PyArray_DATA((PyArrayObject *)row_degree), &n_chunks, &n_slots);
            engram_arena_reset(arena);
            Py_END_ALLOW_THREADS
        }
        if (status == ENGRAM_OK)
            result = Py_BuildValue("(OOOnn)", row_node, node_row, row_degree, (Py_ssize_t)n_chunks,
                                   (Py_ssize_t)n_slots);
        else
            raise_status(status);
    }
    Py_XDECREF(row_node);
    Py_XDECREF(node_row);
    Py_XDECREF(row_degree);
    return result;
}

/*
 * _spread_pull_build(indptr, indices, weights, row_node, node_row, window_rows, block_rows,
 *                    n_chunks, n_slots, with_chunks)
 *   -> (chunk_length, chunk_offset, chunk_rows, block_chunks, window_slots, sources, weights)
 * (the chunk arrays and sources are None unless with_chunks; weights None if unweighted)
 */
static PyObject *py_spread_pull_build(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *indptr, *indices, *weights, *row_node_obj, *node_row_obj;
    Py_ssize_t window_rows, block_rows, n_chunks, n_slots;
    int with_chunks;
    if (!PyArg_ParseTuple(args, "OOOOOnnnnp", &indptr, &indices, &weights, &row_node_obj, &node_row_obj,
                          &window_rows, &block_rows, &n_chunks, &n_slots, &with_chunks))
        return NULL;
    if (!PyArray_Check(node_row_obj) || window_rows < 0 || block_rows < 0 || n_chunks < 0 || n_slots < 0) {
        PyErr_SetString(PyExc_ValueError, "bad pull layout arguments");
        return NULL;
    }
    const Py_ssize_t n = PyArray_SIZE((PyArrayObject *)node_row_obj);
    engram_spread_graph g;
    const void *row_node, *node_row;
    if (spread_csr_args(indptr, indices, weights, n, &g) < 0 ||
        spread_buffer(row_node_obj, "row_node", NPY_INT32, n, 0, &row_node) < 0 ||
        spread_buffer(node_row_obj, "node_row", NPY_INT32, n, 0, &node_row) < 0)
        return NULL;
    const size_t wr = window_rows < ENGRAM_SPREAD_LANES ? ENGRAM_SPREAD_LANES
                                                        : (size_t)window_rows / ENGRAM_SPREAD_LANES * ENGRAM_SPREAD_LANES;
    const npy_intp n_windows = (npy_intp)(((size_t)n + wr - 1) / wr);
    const npy_intp n_blocks = block_rows ? (npy_intp)(((size_t)n + (size_t)block_rows - 1) / (size_t)block_rows) : 0;
    npy_intp d_chunks = n_chunks, d_offsets = n_chunks + 1, d_lanes = n_chunks * ENGRAM_SPREAD_LANES,
             d_blocks = n_blocks * (n_windows + 1), d_windows = n_windows + 1, d_slots = n_slots;
    PyObject *out[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int ok = 1;
    if (with_chunks) {
        out[0] = PyArray_EMPTY(1, &d_chunks, NPY_INT32, 0);
        out[1] = PyArray_EMPTY(1, &d_offsets, NPY_INT64, 0);
        out[5] = PyArray_EMPTY(1, &d_slots, NPY_INT32, 0);
        ok = out[0] && out[1] && out[5];
        if (block_rows) {
            out[2] = PyArray_EMPTY(1, &d_lanes, NPY_INT32, 0);
            out[3] = PyArray_EMPTY(1, &d_blocks, NPY_INT64, 0);
            out[4] = PyArray_EMPTY(1, &d_windows, NPY_INT64, 0);
            ok = ok && out[2] && out[3] && out[4];
        }
    }
    if (ok && g.weights) {
        out[6] = PyArray_EMPTY(1, &d_slots, g.weight_type == ENGRAM_SPREAD_F32 ? NPY_FLOAT : NPY_DOUBLE, 0);
        ok = out[6] != NULL;
    }
    PyObject *result = NULL;
    if (ok) {
        void *data[7];
        for (int i = 0; i < 7; i++) data[i] = out[i] ? PyArray_DATA((PyArrayObject *)out[i]) : NULL;
        engram_arena *arena = engram_arena_get();
        engram_status status = ENGRAM_ERR_NOMEM;
        if (arena) {
            Py_BEGIN_ALLOW_THREADS
            status = engram_spread_pull_build(arena, &g, (size_t)window_rows, (size_t)block_rows,
                                              row_node, node_row, data[0], data[1], data[2], data[3],
                                              data[4], data[5], data[6]);
            engram_arena_reset(arena);
            Py_END_ALLOW_THREADS
        }
        if (status == ENGRAM_OK) {
            result = PyTuple_New(7);
            for (int i = 0; result && i < 7; i++) {
                PyObject *item = out[i] ? out[i] : Py_None;
                Py_INCREF(item);
                PyTuple_SET_ITEM(result, i, item);
            }
        } else {
            raise_status(status);
        }
    }
    for (int i = 0; i < 7; i++) Py_XDECREF(out[i]);
    return result;
}

static PyObject *py_spread_pull_max_nodes(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromSize_t(ENGRAM_SPREAD_PULL_MAX_NODES);
}

/*
 * _spread_tuning(direction=None, pull_fraction=None, parallel_hop_edges=None)
 *   -> the three settings before.
 * direction "auto" | "push" | "pull" forces every hop of later calls (tests
 * compare them); the others move the automatic choices (measurements, tests).
 */
static PyObject *py_spread_tuning(PyObject *module, PyObject *args) {
    (void)module;
    static const char *const directions[] = {"auto", "push", "pull", NULL};
    PyObject *direction = Py_None, *fraction = Py_None, *hop_edges = Py_None;
    if (!PyArg_ParseTuple(args, "|OOO", &direction, &fraction, &hop_edges)) return NULL;
    PyObject *previous = Py_BuildValue("(sdn)", directions[spread_direction], spread_pull_fraction,
                                       (Py_ssize_t)spread_parallel_hop_edges);
    if (previous == NULL) return NULL;
    int d = spread_direction;
    double f = spread_pull_fraction;
    Py_ssize_t e = (Py_ssize_t)spread_parallel_hop_edges;
    if ((direction != Py_None &&
         (d = parse_choice("_spread_tuning", "direction", direction, directions)) < 0) ||
        (fraction != Py_None && parse_double("_spread_tuning", "pull_fraction", fraction, &f) < 0) ||
        (hop_edges != Py_None && (e = PyNumber_AsSsize_t(hop_edges, PyExc_OverflowError)) == -1 &&
         PyErr_Occurred())) {
        Py_DECREF(previous);
        return NULL;
    }
    if (!(f >= 0) || e < 0) {
        Py_DECREF(previous);
        PyErr_SetString(PyExc_ValueError, "_spread_tuning(): pull_fraction and parallel_hop_edges "
                                          "must be >= 0");
        return NULL;
    }
    spread_direction = d;
    spread_pull_fraction = f;
    spread_parallel_hop_edges = (size_t)e;
    return previous;
}

/* ==== end spread ==== */

/* ==== decay ==== */

static const char *const decay_models[] = {"exponential", "power", NULL};

/*
 * decay(strength, age, *, stability=86400.0, model="exponential", power=0.5,
 *       factor=19/81, out=None, validate=True, threads=None)
 *
 * strength: 1-D float32/float64 (the working precision); age and
 * stability: a number or a 1-D array of float32, float64, int64 or uint64
 * (converted inside the kernel, block by block); out: any 1-D layout,
 * strength itself for an update in place.
 */

typedef struct {
    array_in arr;     /* the array, if the operand is one */
    union {           /* the value of a Python float or int */
        double f64;
        int64_t i64;
        uint64_t u64;
    } value;
    engram_decay_operand op;
} decay_operand_in;

static const char decay_operand_types[] = "a number or a 1-dimensional float32, float64, int64 or uint64 array";

static int decay_type_of(PyArrayObject *arr, engram_decay_type *type) {
    char kind = PyArray_DESCR(arr)->kind;
    npy_intp size = PyArray_ITEMSIZE(arr);
    if (kind == 'f' && size == 4) *type = ENGRAM_DECAY_F32;
    else if (kind == 'f' && size == 8) *type = ENGRAM_DECAY_F64;
    else if (kind == 'i' && size == 8) *type = ENGRAM_DECAY_I64;
    else if (kind == 'u' && size == 8) *type = ENGRAM_DECAY_U64;
    else return -1;
    return 0;
}

/* age or stability: Python numbers without an array, else a 0-d or 1-d array of length n. */
static int decay_get_operand(const char *argname, PyObject *obj, npy_intp n,
                             decay_operand_in *out) {
    out->arr = (array_in){0};
    out->op.stride = 0;
    if (PyFloat_CheckExact(obj)) {
        out->value.f64 = PyFloat_AS_DOUBLE(obj);
        out->op.data = &out->value;
        out->op.type = ENGRAM_DECAY_F64;
        return 0;
    }
    if (PyLong_CheckExact(obj)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (!overflow) {
            out->value.i64 = v;
            out->op.type = ENGRAM_DECAY_I64;
            out->op.data = &out->value;
            return 0;
        }
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(obj);
            if (!(u == (unsigned long long)-1 && PyErr_Occurred())) {
                out->value.u64 = u;
                out->op.type = ENGRAM_DECAY_U64;
                out->op.data = &out->value;
                return 0;
            }
            PyErr_Clear();
        }
        PyErr_Format(PyExc_ValueError, "decay(): %s must be %s, got the int %R (out of range)",
                     argname, decay_operand_types, obj);
        return -1;
    }
    PyArrayObject *arr;
    if (PyArray_Check(obj)) {
        arr = (PyArrayObject *)obj;
    } else {
        PyObject *converted = PyArray_FromAny(obj, NULL, 0, 0, 0, NULL);
        if (converted == NULL) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "decay(): %s must be %s, got %.100s", argname,
                         decay_operand_types, Py_TYPE(obj)->tp_name);
            return -1;
        }
        out->arr.given_owned = converted;
        arr = (PyArrayObject *)converted;
    }
    out->arr.given = arr; /* the caller's memory, for overlap checks against out */
    if (decay_type_of(arr, &out->op.type) < 0) {
        raise_about_array(PyExc_TypeError, "decay", argname, decay_operand_types, arr);
        goto fail;
    }
    if (PyArray_NDIM(arr) > 1 || (PyArray_NDIM(arr) == 1 && PyArray_DIM(arr, 0) != n)) {
        char expected[96];
        snprintf(expected, sizeof expected, "a number or an array of shape (%" NPY_INTP_FMT
                 ",) like strength", n);
        raise_about_array(PyExc_ValueError, "decay", argname, expected, arr);
        goto fail;
    }
    if (!PyArray_ISNOTSWAPPED(arr) || !PyArray_ISALIGNED(arr)) {
        PyObject *native = PyArray_FromArray(arr, PyArray_DescrFromType(PyArray_TYPE(arr)),
                                             NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED);
        if (native == NULL) goto fail;
        Py_XSETREF(out->arr.owned, native);
        arr = (PyArrayObject *)native;
    }
    out->arr.arr = arr;
    out->op.data = PyArray_DATA(arr);
    if (PyArray_NDIM(arr) == 1 && n > 1)
        out->op.stride = PyArray_STRIDE(arr, 0) / PyArray_ITEMSIZE(arr);
    else if (PyArray_NDIM(arr) == 1)
        out->op.stride = 1;
    return 0;
fail:
    array_in_release(&out->arr);
    return -1;
}

/* out: a writeable, aligned, native 1-D array of strength's dtype and length; any stride. */
static int decay_check_out(PyObject *obj, int type_num, npy_intp n, PyArrayObject **out_arr) {
    *out_arr = NULL;
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "decay(): out must be a numpy.ndarray, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *arr = (PyArrayObject *)obj;
    char expected[96];
    snprintf(expected, sizeof expected, "a writeable %s array of shape (%" NPY_INTP_FMT ",)",
             type_num == NPY_FLOAT ? "float32" : "float64", n);
    if (PyArray_TYPE(arr) != type_num || !PyArray_ISNOTSWAPPED(arr)) {
        raise_about_array(PyExc_TypeError, "decay", "out", expected, arr);
        return -1;
    }
    if (PyArray_NDIM(arr) != 1 || PyArray_DIM(arr, 0) != n) {
        raise_about_array(PyExc_ValueError, "decay", "out", expected, arr);
        return -1;
    }
    if (!PyArray_ISWRITEABLE(arr)) {
        PyObject *desc = describe_array(arr);
        if (desc) {
            PyErr_Format(PyExc_ValueError, "decay(): out must be writeable, got a read-only %U",
                         desc);
            Py_DECREF(desc);
        }
        return -1;
    }
    if (!PyArray_ISALIGNED(arr)) {
        raise_about_array(PyExc_ValueError, "decay", "out", "aligned", arr);
        return -1;
    }
    if (array_overlaps_itself(arr)) {
        raise_about_array(PyExc_ValueError, "decay", "out", out_distinct_text, arr);
        return -1;
    }
    *out_arr = arr;
    return 0;
}

static const char *const decay_names[] = {"strength", "age", "stability", "model", "power",
                                          "factor", "out", "validate", "threads"};
#define DECAY_N_NAMES 9

/*
 * Keyword arguments by identity with interned names (the names of a call
 * site are interned, so this decides at a pointer compare each, ~10x less
 * than comparing strings); anything unusual goes through parse_args.
 */
static int decay_parse(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **v) {
    static PyObject *interned[DECAY_N_NAMES];
    if (interned[0] == NULL) {
        for (int i = 0; i < DECAY_N_NAMES; i++) {
            interned[i] = PyUnicode_InternFromString(decay_names[i]);
            if (interned[i] == NULL) return -1;
        }
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs == 2 && nkw <= DECAY_N_NAMES - 2) {
        for (int i = 0; i < DECAY_N_NAMES; i++) v[i] = NULL;
        v[0] = args[0];
        v[1] = args[1];
        Py_ssize_t k = 0;
        for (; k < nkw; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int i = 2;
            while (i < DECAY_N_NAMES && interned[i] != key) i++;
            if (i == DECAY_N_NAMES || v[i]) break;
            v[i] = args[nargs + k];
        }
        if (k == nkw) return 0;
    }
    return parse_args("decay", args, nargs, kwnames, decay_names, DECAY_N_NAMES, 2, 2, v);
}

KERNEL_ENTRY(decay, ENGRAM_KERNEL_DECAY)

static PyObject *decay_impl(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames, uint64_t *elements) {
    (void)module;
    PyObject *v[DECAY_N_NAMES];
    if (decay_parse(args, nargs, kwnames, v) < 0) return NULL;
    int model = 0, validate = 1, threads = 0;
    double power = 0.5, factor = 19.0 / 81.0;
    if (v[3] && (model = parse_choice("decay", "model", v[3], decay_models)) < 0) return NULL;
    if (v[4] && parse_double("decay", "power", v[4], &power) < 0) return NULL;
    if (v[5] && parse_double("decay", "factor", v[5], &factor) < 0) return NULL;
    if (v[7] && (validate = PyObject_IsTrue(v[7])) < 0) return NULL;
    if (v[8] && parse_threads("decay", v[8], &threads) < 0) return NULL;

    array_in strength = {0};
    decay_operand_in age = {{0}, {0}, {NULL, 0, ENGRAM_DECAY_F64}};
    decay_operand_in stability = {{0}, {0}, {NULL, 0, ENGRAM_DECAY_F64}};
    PyArrayObject *out = NULL;
    PyObject *result = NULL;
    int fresh = 0;
    if (get_array("decay", "strength", v[0], ACCEPT_FLOATS, 1, 1, &strength) < 0) return NULL;
    npy_intp n = PyArray_DIM(strength.arr, 0);
    int type_num = PyArray_TYPE(strength.arr);
    engram_decay_type type = type_num == NPY_FLOAT ? ENGRAM_DECAY_F32 : ENGRAM_DECAY_F64;
    if (decay_get_operand("age", v[1], n, &age) < 0) goto done;
    if (v[2]) {
        if (decay_get_operand("stability", v[2], n, &stability) < 0) goto done;
    } else {
        stability.value.f64 = 86400.0;
        stability.op.data = &stability.value;
    }
    if (v[6] && v[6] != Py_None) {
        if (decay_check_out(v[6], type_num, n, &out) < 0) goto done;
        if (check_no_overlap("decay", out, &age.arr, "age", 0) < 0 ||
            check_no_overlap("decay", out, &stability.arr, "stability", 0) < 0 ||
            check_no_overlap("decay", out, &strength, "strength", 1) < 0) {
            out = NULL;
            goto done;
        }
        Py_INCREF(out);
    } else {
        out = (PyArrayObject *)PyArray_EMPTY(1, &n, type_num, 0);
        if (out == NULL) goto done;
        fresh = 1;
    }

    npy_intp es = PyArray_ITEMSIZE(strength.arr);
    engram_decay_args a;
    a.n = (size_t)n;
    a.strength.data = PyArray_DATA(strength.arr);
    a.strength.stride = n > 1 ? PyArray_STRIDE(strength.arr, 0) / es : 1;
    a.strength.type = type;
    a.age = age.op;
    a.stability = stability.op;
    a.out = PyArray_DATA(out);
    a.out_stride = n > 1 ? PyArray_STRIDE(out, 0) / es : 1;
    a.model = model == 1 ? ENGRAM_DECAY_POWER : ENGRAM_DECAY_EXPONENTIAL;
    a.power = power;
    a.factor = factor;
    a.validate = validate;
    a.out_is_fresh = fresh;
    a.threads = threads;
    engram_status status;
    engram_arena *arena = engram_arena_get();
    if (arena == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    status = engram_decay_run(arena, &a);
    engram_arena_reset(arena);
    Py_END_ALLOW_THREADS
    if (status != ENGRAM_OK) {
        raise_status(status);
        goto done;
    }
    *elements = (uint64_t)n;
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(out);
    array_in_release(&strength);
    array_in_release(&age.arr);
    array_in_release(&stability.arr);
    return result;
}

static int probe_array(PyObject *obj, const char *name, PyArrayObject **arr, int writeable);

/*
 * Benchmark hook: the exponential kernel on contiguous float32 arrays,
 * `repeats` times in one call, so a timing of it is the kernel's own
 * (without the ~0.3 us of a Python call).  No validation.
 */
static PyObject *py_decay_repeat(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *o[4];
    Py_ssize_t repeats;
    PyArrayObject *arr[4];
    static const char *const what[] = {"strength", "age", "stability", "out"};
    if (!PyArg_ParseTuple(args, "OOOOn", &o[0], &o[1], &o[2], &o[3], &repeats)) return NULL;
    for (int i = 0; i < 4; i++) {
        if (probe_array(o[i], what[i], &arr[i], i == 3) < 0) return NULL;
        if (PyArray_SIZE(arr[i]) != PyArray_SIZE(arr[0])) {
            PyErr_SetString(PyExc_ValueError, "strength, age, stability and out must have one size");
            return NULL;
        }
    }
    engram_decay_args a;
    memset(&a, 0, sizeof a);
    a.n = (size_t)PyArray_SIZE(arr[0]);
    a.strength = (engram_decay_operand){PyArray_DATA(arr[0]), 1, ENGRAM_DECAY_F32};
    a.age = (engram_decay_operand){PyArray_DATA(arr[1]), 1, ENGRAM_DECAY_F32};
    a.stability = (engram_decay_operand){PyArray_DATA(arr[2]), 1, ENGRAM_DECAY_F32};
    a.out = PyArray_DATA(arr[3]);
    a.out_stride = 1;
    a.model = ENGRAM_DECAY_EXPONENTIAL;
    a.threads = 1;
    engram_arena *arena = engram_arena_get();
    if (arena == NULL) return PyErr_NoMemory();
    engram_status status = ENGRAM_OK;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < repeats && status == ENGRAM_OK; r++) {
        status = engram_decay_run(arena, &a);
        engram_arena_reset(arena);
    }
    Py_END_ALLOW_THREADS
    if (status != ENGRAM_OK) return raise_status(status);
    Py_RETURN_NONE;
}

/* ==== end decay ==== */

/* ------------------------------------------------------------------ */
/* Dispatch, arena, stats, backends, threads                           */
/* ------------------------------------------------------------------ */

static PyObject *level_list(unsigned mask) {
    PyObject *list = PyList_New(0);
    for (int l = 0; list && l < ENGRAM_LEVEL_COUNT; l++) {
        if (!(mask & (1u << l))) continue;
        PyObject *name = PyUnicode_FromString(engram_level_name((engram_level)l));
        if (name == NULL || PyList_Append(list, name) < 0) Py_CLEAR(list);
        Py_XDECREF(name);
    }
    return list;
}

static PyObject *py_simd_info(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    PyObject *detected = level_list(engram_levels_detected());
    PyObject *compiled = level_list(engram_levels_compiled());
    PyObject *result = NULL;
    if (detected && compiled)
        result = Py_BuildValue("{sOsOss}", "detected", detected, "compiled", compiled, "active",
                               engram_level_name(engram_level_active()));
    Py_XDECREF(detected);
    Py_XDECREF(compiled);
    return result;
}

static PyObject *py_set_simd(PyObject *module, PyObject *name) {
    (void)module;
    const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (text == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "SIMD level must be a str");
        return NULL;
    }
    engram_level previous = engram_level_active();
    int level = engram_level_from_name(text);
    if (level < 0 || engram_level_select((engram_level)level) < 0) {
        PyErr_Format(PyExc_ValueError, "SIMD level %R is not available here", name);
        return NULL;
    }
    return PyUnicode_FromString(engram_level_name(previous));
}

static PyObject *py_dispatch_init(PyObject *module, PyObject *cap) {
    (void)module;
    const char *text = cap == Py_None ? NULL : PyUnicode_AsUTF8(cap);
    if (text == NULL && cap != Py_None) return NULL;
    char warning[256];
    engram_dispatch_init(text, warning, sizeof warning);
    return PyUnicode_FromString(warning);
}

static const char *const overflow_names[] = {"heap", "raise", NULL};

static PyObject *py_arena_configure(PyObject *module, PyObject *args) {
    (void)module;
    Py_ssize_t size;
    const char *overflow;
    int zero;
    if (!PyArg_ParseTuple(args, "nsp", &size, &overflow, &zero)) return NULL;
    int mode = strcmp(overflow, "heap") == 0 ? ENGRAM_OVERFLOW_HEAP
               : strcmp(overflow, "raise") == 0 ? ENGRAM_OVERFLOW_RAISE : -1;
    if (mode < 0) {
        PyErr_Format(PyExc_ValueError, "overflow must be 'heap' or 'raise', got '%s'", overflow);
        return NULL;
    }
    if (size < (Py_ssize_t)ENGRAM_ARENA_MIN_SIZE || (size_t)size > ENGRAM_ARENA_MAX_SIZE) {
        PyErr_Format(PyExc_ValueError, "size must be between 65536 (64 KiB) and 1073741824 "
                                       "(1 GiB) bytes, got %zd", size);
        return NULL;
    }
    engram_arena_configure((size_t)size, (engram_overflow)mode, zero);
    Py_RETURN_NONE;
}

static PyObject *py_arena_config(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    size_t capacity;
    engram_overflow overflow;
    int zero;
    engram_arena_get_config(&capacity, &overflow, &zero);
    return Py_BuildValue("{snsssO}", "size", (Py_ssize_t)capacity, "overflow",
                         overflow_names[overflow], "zero_on_reset", zero ? Py_True : Py_False);
}

static PyObject *py_parse_size(PyObject *module, PyObject *text) {
    (void)module;
    const char *s = PyUnicode_AsUTF8(text);
    if (s == NULL) return NULL;
    char error[256];
    size_t bytes = engram_arena_parse_size(s, error, sizeof error);
    if (bytes == 0) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return PyLong_FromSize_t(bytes);
}

static PyObject *arena_stats_dict(const engram_arena_stats *s, int with_thread) {
    PyObject *d = Py_BuildValue("{sKsKsKsKsKsKsK}", "capacity", (unsigned long long)s->capacity,
                                "in_use", (unsigned long long)s->in_use, "high_water",
                                (unsigned long long)s->high_water, "allocations",
                                (unsigned long long)s->allocations, "overflows",
                                (unsigned long long)s->overflows, "overflow_bytes",
                                (unsigned long long)s->overflow_bytes, "resets",
                                (unsigned long long)s->resets);
    if (d && with_thread) {
        PyObject *tid = PyLong_FromUnsignedLongLong(s->thread_id);
        if (tid == NULL || PyDict_SetItemString(d, "thread_id", tid) < 0) Py_CLEAR(d);
        Py_XDECREF(tid);
    }
    return d;
}

static PyObject *py_arena_stats(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    engram_arena_stats total, *per = NULL;
    size_t cap = 64, n;
    for (;;) {
        engram_arena_stats *grown = realloc(per, cap * sizeof *per);
        if (grown == NULL) {
            free(per);
            return PyErr_NoMemory();
        }
        per = grown;
        n = engram_arena_collect_stats(per, cap, &total);
        if (n <= cap) break;
        cap = n + 16;
    }
    PyObject *threads = PyList_New((Py_ssize_t)n), *result = NULL;
    for (size_t i = 0; threads && i < n; i++) {
        PyObject *d = arena_stats_dict(&per[i], 1);
        if (d == NULL) Py_CLEAR(threads);
        else PyList_SET_ITEM(threads, (Py_ssize_t)i, d);
    }
    free(per);
    PyObject *tot = threads ? arena_stats_dict(&total, 0) : NULL;
    if (tot) result = Py_BuildValue("{sOsO}", "threads", threads, "total", tot);
    Py_XDECREF(threads);
    Py_XDECREF(tot);
    return result;
}

static PyObject *py_arena_reset_stats(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    engram_arena_reset_stats();
    Py_RETURN_NONE;
}

static PyObject *py_arena_live_count(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromSize_t(engram_arena_live_count());
}

/*
 * Test hook: allocate `sizes` from this thread's arena and fill each block.
 * Returns (addresses, all_zero_before_fill); resets afterwards unless
 * reset=False (then the blocks stay in use until the next kernel call or
 * reset, so tests can see in_use).
 */
static PyObject *py_arena_allocate(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *sizes;
    int reset = 1;
    if (!PyArg_ParseTuple(args, "O|p", &sizes, &reset)) return NULL;
    PyObject *seq = PySequence_Fast(sizes, "sizes must be a sequence of ints");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *addresses = PyList_New(n);
    engram_arena *arena = engram_arena_get();
    int all_zero = 1;
    if (addresses == NULL || arena == NULL) {
        Py_DECREF(seq);
        Py_XDECREF(addresses);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t bytes = PyLong_AsSize_t(PySequence_Fast_GET_ITEM(seq, i));
        if (bytes == (size_t)-1 && PyErr_Occurred()) goto fail;
        unsigned char *p = engram_arena_alloc(arena, bytes);
        if (p == NULL) {
            raise_status(ENGRAM_ERR_NOMEM);
            goto fail;
        }
        for (size_t b = 0; b < bytes && all_zero; b++) all_zero = p[b] == 0;
        /* touch the whole block: a wrong size or an overlap shows up under ASan */
        memset(p, 0xA5, bytes);
        PyList_SET_ITEM(addresses, i, PyLong_FromVoidPtr(p));
    }
    Py_DECREF(seq);
    if (reset) engram_arena_reset(arena);
    return Py_BuildValue("(NO)", addresses, all_zero ? Py_True : Py_False);
fail:
    engram_arena_reset(arena);
    Py_DECREF(seq);
    Py_DECREF(addresses);
    return NULL;
}

static PyObject *py_arena_reset(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    engram_arena *arena = engram_arena_get();
    if (arena == NULL) return PyErr_NoMemory();
    engram_arena_reset(arena);
    Py_RETURN_NONE;
}

/*
 * Arena allocation and reset cost next to malloc/free, for the benchmark
 * suite.  No clock is read inside a timed loop: a clock read (~20 ns) costs
 * more than the bump allocation or the reset it would time.  Whole loops are
 * timed instead:
 *   - `rounds` x (count allocations + reset): the arena's cost per allocation,
 *     reset included (what a kernel pays);
 *   - `rounds` resets alone: with nothing to free and zero_on_reset off (the
 *     default) a reset does the same work whatever was allocated, so this is
 *     the reset cost, and the allocation cost is the difference;
 *   - `rounds` x (count mallocs + count frees) of the same size.
 * Each loop runs `trials` times interleaved and the fastest trial counts (the
 * least disturbed by the other processes of a shared machine).  Every block
 * gets its first byte written, in the arena and the malloc loops alike, so
 * neither is optimised away.
 */
static uint64_t arena_rounds_ns(engram_arena *arena, size_t size, Py_ssize_t count,
                                Py_ssize_t rounds, volatile unsigned char *sink) {
    uint64_t t0 = engram_now_ns();
    for (Py_ssize_t r = 0; r < rounds; r++) {
        for (Py_ssize_t i = 0; i < count; i++) {
            unsigned char *p = engram_arena_alloc(arena, size);
            if (p) {
                p[0] = (unsigned char)i;
                *sink ^= p[0];
            }
        }
        engram_arena_reset(arena);
    }
    return engram_now_ns() - t0;
}

static uint64_t arena_resets_ns(engram_arena *arena, Py_ssize_t rounds) {
    uint64_t t0 = engram_now_ns();
    for (Py_ssize_t r = 0; r < rounds; r++) engram_arena_reset(arena);
    return engram_now_ns() - t0;
}

static uint64_t malloc_rounds_ns(void **ptrs, size_t size, Py_ssize_t count, Py_ssize_t rounds,
                                 volatile unsigned char *sink) {
    uint64_t t0 = engram_now_ns();
    for (Py_ssize_t r = 0; r < rounds; r++) {
        for (Py_ssize_t i = 0; i < count; i++) {
            unsigned char *p = malloc(size);
            if (p) {
                p[0] = (unsigned char)i;
                *sink ^= p[0];
            }
            ptrs[i] = p;
        }
        for (Py_ssize_t i = 0; i < count; i++) free(ptrs[i]);
    }
    return engram_now_ns() - t0;
}

static PyObject *py_arena_bench(PyObject *module, PyObject *args) {
    (void)module;
    Py_ssize_t size, count, rounds, trials = 5;
    if (!PyArg_ParseTuple(args, "nnn|n", &size, &count, &rounds, &trials)) return NULL;
    if (size <= 0 || count <= 0 || count > 4096 || rounds <= 0 || trials <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "_arena_bench(size, count, rounds, trials=5): size, rounds, trials > 0 "
                        "and 0 < count <= 4096 required");
        return NULL;
    }
    engram_arena *arena = engram_arena_get();
    void **ptrs = malloc((size_t)count * sizeof *ptrs);
    if (arena == NULL || ptrs == NULL) {
        free(ptrs);
        return PyErr_NoMemory();
    }
    volatile unsigned char sink = 0;
    uint64_t best_many = UINT64_MAX, best_reset = UINT64_MAX, best_malloc = UINT64_MAX;
    Py_BEGIN_ALLOW_THREADS
    /* one untimed pass of each: first-touch page faults and malloc's own pools */
    arena_rounds_ns(arena, (size_t)size, count, 1, &sink);
    malloc_rounds_ns(ptrs, (size_t)size, count, 1, &sink);
    for (Py_ssize_t t = 0; t < trials; t++) {
        uint64_t many = arena_rounds_ns(arena, (size_t)size, count, rounds, &sink);
        uint64_t reset = arena_resets_ns(arena, rounds);
        uint64_t heap = malloc_rounds_ns(ptrs, (size_t)size, count, rounds, &sink);
        if (many < best_many) best_many = many;
        if (reset < best_reset) best_reset = reset;
        if (heap < best_malloc) best_malloc = heap;
    }
    Py_END_ALLOW_THREADS
    free(ptrs);
    double r = (double)rounds, n = (double)count;
    double reset_ns = (double)best_reset / r;
    double alloc_ns = ((double)best_many / r - reset_ns) / n;
    return Py_BuildValue("{sdsdsdsdsn}", "arena_alloc_ns", alloc_ns, "arena_reset_ns", reset_ns,
                         "arena_per_alloc_ns", (double)best_many / (r * n), "malloc_free_ns",
                         (double)best_malloc / (r * n), "trials", trials);
}

/*
 * Instruction counting for `python -m engram regress`.  Callgrind runs with
 * --collect-atstart=no --toggle-collect=engram_counted_calls, so collection
 * is on exactly while this function runs: the count covers the calls below
 * (argument parsing, validation, the kernel, its arena use, building and
 * freeing the result) and none of the interpreter around them.  With
 * --dump-after=engram_counted_calls each invocation writes its own profile,
 * so one valgrind run measures every case in order.
 *
 * A dedicated function is sturdier than toggling on the kernels' own
 * symbols, which the compiler may inline, clone or split (and toggling is
 * unsafe on anything reachable twice in one call stack).  It is exported so
 * that its name survives a stripped build, and never inlined or cloned.
 */
#if defined(__GNUC__) && !defined(__clang__)
#define ENGRAM_COUNTED __attribute__((noinline, noipa, used, visibility("default")))
#else
#define ENGRAM_COUNTED __attribute__((noinline, used, visibility("default")))
#endif
ENGRAM_COUNTED PyObject *engram_counted_calls(PyObject *fn, PyObject *const *args, size_t nargsf,
                                              PyObject *kwnames, Py_ssize_t repeat);
ENGRAM_COUNTED PyObject *engram_counted_calls(PyObject *fn, PyObject *const *args, size_t nargsf,
                                              PyObject *kwnames, Py_ssize_t repeat) {
    for (Py_ssize_t i = 0; i < repeat; i++) {
        PyObject *result = PyObject_Vectorcall(fn, args, nargsf, kwnames);
        if (result == NULL) return NULL;
        Py_DECREF(result);
    }
    Py_RETURN_NONE;
}

#define COUNT_CALLS_MAX_ARGS 32

/* _count_calls(fn, args, kwargs, repeat): call fn(*args, **kwargs) `repeat` times inside the marker. */
static PyObject *py_count_calls(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *fn, *pargs, *kwargs;
    Py_ssize_t repeat;
    if (!PyArg_ParseTuple(args, "OO!O!n", &fn, &PyTuple_Type, &pargs, &PyDict_Type, &kwargs,
                          &repeat))
        return NULL;
    Py_ssize_t npos = PyTuple_GET_SIZE(pargs), nkw = PyDict_GET_SIZE(kwargs);
    if (repeat < 1 || npos + nkw > COUNT_CALLS_MAX_ARGS) {
        PyErr_Format(PyExc_ValueError, "_count_calls(): repeat >= 1 and at most %d arguments required",
                     COUNT_CALLS_MAX_ARGS);
        return NULL;
    }
    PyObject *stack[COUNT_CALLS_MAX_ARGS];
    for (Py_ssize_t i = 0; i < npos; i++) stack[i] = PyTuple_GET_ITEM(pargs, i);
    PyObject *kwnames = NULL;
    if (nkw) {
        kwnames = PyTuple_New(nkw);
        if (kwnames == NULL) return NULL;
        PyObject *key, *value;
        Py_ssize_t pos = 0, k = 0;
        while (PyDict_Next(kwargs, &pos, &key, &value)) {
            Py_INCREF(key);
            PyTuple_SET_ITEM(kwnames, k, key);
            stack[npos + k++] = value;
        }
    }
    PyObject *result = engram_counted_calls(fn, stack, (size_t)npos, kwnames, repeat);
    Py_XDECREF(kwnames);
    return result;
}

/*
 * Bandwidth probes: best bytes/ns over `repeats` passes.  _probe_read(a)
 * reads a float32 array; _probe_triad(out, a, b) does out = out * a + b.
 */
static int probe_array(PyObject *obj, const char *name, PyArrayObject **arr, int writeable) {
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_FLOAT ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj) ||
        (writeable && !PyArray_ISWRITEABLE((PyArrayObject *)obj))) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous float32 array", name);
        return -1;
    }
    *arr = (PyArrayObject *)obj;
    return 0;
}

static PyObject *py_probe_read(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *obj;
    Py_ssize_t repeats = 5;
    PyArrayObject *arr;
    if (!PyArg_ParseTuple(args, "O|n", &obj, &repeats) || probe_array(obj, "a", &arr, 0) < 0)
        return NULL;
    size_t n = (size_t)PyArray_SIZE(arr);
    double best = 0;
    float sink = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < repeats; r++) {
        uint64_t t0 = engram_now_ns();
        sink += engram_probe_read((const float *)PyArray_DATA(arr), n);
        uint64_t dt = engram_now_ns() - t0;
        double rate = dt ? (double)(n * sizeof(float)) / (double)dt : 0;
        if (rate > best) best = rate;
    }
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(dd)", best, (double)sink);
}

static PyObject *py_probe_triad(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *o, *a, *b;
    Py_ssize_t repeats = 5;
    PyArrayObject *out, *x, *y;
    if (!PyArg_ParseTuple(args, "OOO|n", &o, &a, &b, &repeats) ||
        probe_array(o, "out", &out, 1) < 0 || probe_array(a, "a", &x, 0) < 0 ||
        probe_array(b, "b", &y, 0) < 0)
        return NULL;
    size_t n = (size_t)PyArray_SIZE(out);
    if ((size_t)PyArray_SIZE(x) != n || (size_t)PyArray_SIZE(y) != n) {
        PyErr_SetString(PyExc_ValueError, "out, a and b must have the same size");
        return NULL;
    }
    double best = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < repeats; r++) {
        uint64_t t0 = engram_now_ns();
        engram_probe_triad((float *)PyArray_DATA(out), (const float *)PyArray_DATA(x),
                           (const float *)PyArray_DATA(y), n);
        uint64_t dt = engram_now_ns() - t0;
        double rate = dt ? (double)(4 * n * sizeof(float)) / (double)dt : 0;
        if (rate > best) best = rate;
    }
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(best);
}

static PyObject *py_stats_enable(PyObject *module, PyObject *flag) {
    (void)module;
    int on = PyObject_IsTrue(flag);
    if (on < 0) return NULL;
    engram_stats_enable(on);
    update_slow_path();
    Py_RETURN_NONE;
}

static PyObject *py_stats_enabled(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyBool_FromLong(engram_stats_enabled());
}

static PyObject *py_kernel_stats(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    PyObject *result = PyDict_New();
    for (int k = 0; result && k < ENGRAM_KERNEL_COUNT; k++) {
        engram_kernel_stats s;
        engram_stats_get((engram_kernel_id)k, &s);
        PyObject *d = Py_BuildValue("{sKsdsdsK}", "calls", (unsigned long long)s.calls,
                                    "total_seconds", (double)s.total_ns * 1e-9, "last_seconds",
                                    (double)s.last_ns * 1e-9, "elements",
                                    (unsigned long long)s.elements);
        if (d == NULL || PyDict_SetItemString(result, engram_kernel_name((engram_kernel_id)k), d) < 0)
            Py_CLEAR(result);
        Py_XDECREF(d);
    }
    return result;
}

static PyObject *py_stats_clear(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    engram_stats_clear();
    Py_RETURN_NONE;
}

static int backend_from_name(PyObject *name) {
    for (int i = 0; i < 2; i++)
        if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, backend_names[i]) == 0)
            return i;
    PyErr_Format(PyExc_ValueError, "backend must be 'c' or 'reference', got %R", name);
    return -1;
}

static PyObject *py_set_backend(PyObject *module, PyObject *name) {
    (void)module;
    int b = backend_from_name(name);
    if (b < 0) return NULL;
    int previous = global_backend;
    global_backend = b;
    update_slow_path();
    return PyUnicode_FromString(backend_names[previous]);
}

/* Per-thread override: a name, or None to follow the global backend. Returns the previous. */
static PyObject *py_set_thread_backend(PyObject *module, PyObject *name) {
    (void)module;
    int b = -1;
    if (name != Py_None && (b = backend_from_name(name)) < 0) return NULL;
    int previous = thread_backend;
    if (previous < 0 && b >= 0) threads_overriding++;
    if (previous >= 0 && b < 0) threads_overriding--;
    thread_backend = b;
    update_slow_path();
    if (previous < 0) Py_RETURN_NONE;
    return PyUnicode_FromString(backend_names[previous]);
}

static PyObject *py_get_backend(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyUnicode_FromString(backend_names[current_backend()]);
}

static PyObject *py_get_global_backend(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyUnicode_FromString(backend_names[global_backend]);
}

static PyObject *py_set_reference(PyObject *module, PyObject *args) {
    const char *name;
    PyObject *fn;
    if (!PyArg_ParseTuple(args, "sO", &name, &fn)) return NULL;
    for (int k = 0; k < ENGRAM_KERNEL_COUNT; k++) {
        if (strcmp(name, engram_kernel_name((engram_kernel_id)k)) == 0) {
            Py_INCREF(fn);
            Py_XSETREF(get_state(module)->reference[k], fn);
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown kernel %s", name);
    return NULL;
}

/* _set_verify(rate, prepare, check): rate in [0, 1]; 0 turns verify mode off. */
static PyObject *py_set_verify(PyObject *module, PyObject *args) {
    double rate;
    PyObject *prepare, *check;
    if (!PyArg_ParseTuple(args, "dOO", &rate, &prepare, &check)) return NULL;
    if (!(rate >= 0.0 && rate <= 1.0)) {
        PyErr_Format(PyExc_ValueError, "verify rate must be in [0, 1], got %R", PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (rate > 0.0 && (!PyCallable_Check(prepare) || !PyCallable_Check(check))) {
        PyErr_SetString(PyExc_TypeError, "verify hooks must be callable");
        return NULL;
    }
    module_state *st = get_state(module);
    Py_XSETREF(st->verify_prepare, prepare == Py_None ? NULL : Py_NewRef(prepare));
    Py_XSETREF(st->verify_check, check == Py_None ? NULL : Py_NewRef(check));
    verify_rate = rate;
    update_slow_path();
    Py_RETURN_NONE;
}

/* _set_result_hook(name, fn or None): tests inject wrong results to prove verify mode sees them. */
static PyObject *py_set_result_hook(PyObject *module, PyObject *args) {
    const char *name;
    PyObject *fn;
    if (!PyArg_ParseTuple(args, "sO", &name, &fn)) return NULL;
    for (int k = 0; k < ENGRAM_KERNEL_COUNT; k++) {
        if (strcmp(name, engram_kernel_name((engram_kernel_id)k)) != 0) continue;
        module_state *st = get_state(module);
        result_hooks += (fn != Py_None) - (st->result_hook[k] != NULL);
        Py_XSETREF(st->result_hook[k], fn == Py_None ? NULL : Py_NewRef(fn));
        update_slow_path();
        Py_RETURN_NONE;
    }
    PyErr_Format(PyExc_ValueError, "unknown kernel %s", name);
    return NULL;
}

static PyObject *py_kernel_names(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    PyObject *t = PyTuple_New(ENGRAM_KERNEL_COUNT);
    for (int k = 0; t && k < ENGRAM_KERNEL_COUNT; k++) {
        PyObject *s = PyUnicode_FromString(engram_kernel_name((engram_kernel_id)k));
        if (s == NULL) Py_CLEAR(t);
        else PyTuple_SET_ITEM(t, k, s);
    }
    return t;
}

static PyObject *py_set_num_threads(PyObject *module, PyObject *arg) {
    (void)module;
    if (PyBool_Check(arg) || PyArray_IsScalar(arg, Bool) || !PyIndex_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "set_num_threads(): n must be an int in 1..256, got %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    int overflow = 0;
    long n = PyLong_AsLongAndOverflow(arg, &overflow);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (overflow || n < 1 || n > 256) {
        PyErr_Format(PyExc_ValueError, "set_num_threads(): n must be in 1..256, got %R", arg);
        return NULL;
    }
    engram_set_default_threads((unsigned)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLong(engram_default_threads());
}

static PyObject *py_cpu_count(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLong(engram_cpu_count());
}

/* ------------------------------------------------------------------ */
/* Module definition (multi-phase init)                                 */
/* ------------------------------------------------------------------ */

#define FASTCALL_KW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef core_methods[] = {
    /* ==== kernel methods ==== */
    /* similarity */
    {"cosine_similarity", (PyCFunction)(void (*)(void))py_cosine_similarity, FASTCALL_KW,
     "cosine_similarity(x, y, *, out=None, threads=None)\n--\n\n"
     "Cosine similarity of vectors (d,) or rows (n, d): (d,),(d,) -> float; (d,),(n,d) -> (n,);\n"
     "(m,d),(d,) -> (m,); (m,d),(n,d) -> (m,n).  float32 or float64 (mixed -> float64).\n"
     "A zero vector gives 0.0, NaN or inf in either vector gives NaN; results lie in [-1, 1]."},
    {"normalize", (PyCFunction)(void (*)(void))py_normalize, FASTCALL_KW,
     "normalize(x, *, out=None)\n--\n\n"
     "Rows of x (or the vector x) scaled to unit L2 norm; zero rows stay zero, rows with\n"
     "NaN or inf become NaN.  out may be x itself."},
    {"top_k", (PyCFunction)(void (*)(void))py_top_k, FASTCALL_KW,
     "top_k(queries, corpus, k, *, metric='cosine', threads=None)\n--\n\n"
     "(scores, ids) of the k best corpus rows for each query, best first (ties: smaller id).\n"
     "metric is 'cosine' or 'dot'.  NaN scores are never returned; rows with fewer than k\n"
     "valid scores are padded with id -1 and score -inf.  Shapes (q, k), or (k,) for one query."},
    /* decay */
    {"decay", (PyCFunction)(void (*)(void))py_decay, FASTCALL_KW,
     "decay(strength, age, *, stability=86400.0, model='exponential', power=0.5, "
     "factor=0.2345679012345679, out=None, validate=True, threads=None)\n--\n\n"
     "Decayed memory strengths: strength * exp(-age / stability) (model='exponential') or\n"
     "strength * (1 + factor * age / stability) ** -power (model='power'); the default\n"
     "factor is 19/81 (FSRS's forgetting curve, with power 0.5).\n\n"
     "strength is a 1-D float32 or float64 array and sets the precision; age (seconds) and\n"
     "stability are numbers or arrays of float32, float64, int64 or uint64.  out=strength\n"
     "updates in place.  For float32 strength the exponential's argument is\n"
     "float32(float64(age) / float64(stability)), the IEEE float32 quotient when both are\n"
     "float32: no operand is rounded to float32 before the division.  validate=True\n"
     "rejects negative or NaN ages and stabilities <= 0 or\n"
     "NaN (naming the first bad index) before anything is written; validate=False skips\n"
     "the scan and the formula applies as IEEE arithmetic does (a negative age grows the\n"
     "strength, stability 0 gives 0 or NaN, NaN gives NaN)."},
    {"_decay_repeat", py_decay_repeat, METH_VARARGS,
     "_decay_repeat(strength, age, stability, out, repeats): the float32 exponential kernel "
     "`repeats` times (benchmark hook)."},
    /* end decay */
    /* spread */
    {"spread", (PyCFunction)(void (*)(void))py_spread, FASTCALL_KW,
     "spread(graph, seeds, *, max_depth=4, decay=0.85, threshold=1e-4, normalize='none', "
     "combine='sum', revisit=False, out=None, threads=None)\n--\n\n"
     "Spread activation from seeds over a weighted directed graph; float32 totals.\n\n"
     "graph: engram.Graph, a scipy.sparse matrix or (indptr, indices[, weights[, n]]).\n"
     "A matrix or tuple is made into a new Graph on every call (validated, copied, and\n"
     "normalised or laid out for dense hops again each time): build one engram.Graph\n"
     "and pass it to every call instead.\n"
     "seeds: (n,) or (b, n) float32/float64, finite and >= 0, or a dict {node: value}\n"
     "(a node named twice by keys with the same __index__ keeps the later value).\n"
     "Each hop k sends decay_k * w(u, v) * pulse[u] (w / out-weight of u with\n"
     "normalize='out') along the out-edges of the frontier; a node whose incoming\n"
     "pulse is > 0 and >= threshold fires (once, unless revisit) and adds it to its\n"
     "total ('sum') or keeps the larger ('max').  decay is a factor in (0, 1] or\n"
     "max_depth of them.  Arithmetic is IEEE float64: a pulse that overflows to inf\n"
     "sends NaN (inf * 0) along an edge of weight 0, NaN wins under 'sum' and 'max'\n"
     "alike, and a node whose incoming pulse is NaN does not fire.  Without revisit\n"
     "each node fires at most once, so at most n hops run whatever max_depth is; with\n"
     "revisit, activity that does not fall below threshold (a cycle that grows or\n"
     "keeps its weight) runs all max_depth hops.\n"
     "Returns the totals, (n,) or (b, n) float32; out= takes a float32 array of that\n"
     "shape in any layout, or seeds itself (float32, same layout); on any error it is\n"
     "left as it was."},
    {"_spread_pull_plan", py_spread_pull_plan, METH_VARARGS, NULL},
    {"_spread_pull_build", py_spread_pull_build, METH_VARARGS, NULL},
    {"_spread_pull_max_nodes", py_spread_pull_max_nodes, METH_NOARGS, NULL},
    {"_spread_tuning", py_spread_tuning, METH_VARARGS, NULL},
    /* end spread */
    /* ==== end kernel methods ==== */
    {"simd_info", py_simd_info, METH_NOARGS,
     "simd_info()\n--\n\nSIMD levels detected on this CPU, compiled into this build, and active."},
    {"_set_simd", py_set_simd, METH_O, "Make a SIMD level active (tests); returns the previous."},
    {"_dispatch_init", py_dispatch_init, METH_O,
     "Select the SIMD level from an ENGRAM_SIMD value; returns a warning or ''."},
    {"_arena_configure", py_arena_configure, METH_VARARGS, NULL},
    {"_arena_config", py_arena_config, METH_NOARGS, NULL},
    {"_arena_stats", py_arena_stats, METH_NOARGS, NULL},
    {"_arena_reset_stats", py_arena_reset_stats, METH_NOARGS, NULL},
    {"_arena_live_count", py_arena_live_count, METH_NOARGS, NULL},
    {"_arena_allocate", py_arena_allocate, METH_VARARGS, NULL},
    {"_arena_reset", py_arena_reset, METH_NOARGS, NULL},
    {"_arena_bench", py_arena_bench, METH_VARARGS,
     "_arena_bench(size, count, rounds, trials=5) -> ns per arena alloc, reset, malloc+free"},
    {"_count_calls", py_count_calls, METH_VARARGS,
     "_count_calls(fn, args, kwargs, repeat): the calls `python -m engram regress` counts"},
    {"_parse_size", py_parse_size, METH_O, NULL},
    {"_stats_enable", py_stats_enable, METH_O, NULL},
    {"_stats_enabled", py_stats_enabled, METH_NOARGS, NULL},
    {"_kernel_stats", py_kernel_stats, METH_NOARGS, NULL},
    {"_stats_clear", py_stats_clear, METH_NOARGS, NULL},
    {"_set_backend", py_set_backend, METH_O, NULL},
    {"_set_thread_backend", py_set_thread_backend, METH_O, NULL},
    {"_get_backend", py_get_backend, METH_NOARGS, NULL},
    {"_get_global_backend", py_get_global_backend, METH_NOARGS, NULL},
    {"_set_reference", py_set_reference, METH_VARARGS, NULL},
    {"_kernel_names", py_kernel_names, METH_NOARGS, NULL},
    {"_set_verify", py_set_verify, METH_VARARGS, NULL},
    {"_set_result_hook", py_set_result_hook, METH_VARARGS, NULL},
    {"set_num_threads", py_set_num_threads, METH_O,
     "set_num_threads(n, /)\n--\n\nDefault thread count for calls with threads=None on large work."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS,
     "get_num_threads()\n--\n\nDefault thread count for calls with threads=None on large work."},
    {"_cpu_count", py_cpu_count, METH_NOARGS, NULL},
    {"_probe_read", py_probe_read, METH_VARARGS, "_probe_read(a, repeats=5) -> (bytes/ns, sum)"},
    {"_probe_triad", py_probe_triad, METH_VARARGS, "_probe_triad(out, a, b, repeats=5) -> bytes/ns"},
    {NULL, NULL, 0, NULL},
};

static int core_exec(PyObject *module) {
    if (PyArray_ImportNumPyAPI() < 0) return -1;
    module_state *st = get_state(module);
    for (int k = 0; k < ENGRAM_KERNEL_COUNT; k++) st->reference[k] = NULL;
    st->verify_prepare = st->verify_check = NULL;
    for (int k = 0; k < ENGRAM_KERNEL_COUNT; k++) st->result_hook[k] = NULL;
    /* The best level until engram/__init__.py applies ENGRAM_SIMD (and warns in Python). */
    static int dispatch_done = 0;
    if (!dispatch_done) {
        char warning[8];
        engram_dispatch_init(NULL, warning, sizeof warning);
        dispatch_done = 1;
    }
    if (PyModule_AddIntConstant(module, "ARENA_ALIGN", ENGRAM_ARENA_ALIGN) < 0) return -1;
    return 0;
}

static int core_traverse(PyObject *module, visitproc visit, void *arg) {
    module_state *st = get_state(module);
    for (int k = 0; k < ENGRAM_KERNEL_COUNT; k++) Py_VISIT(st->reference[k]);
    Py_VISIT(st->verify_prepare);
    Py_VISIT(st->verify_check);
    for (int k = 0; k < ENGRAM_KERNEL_COUNT; k++) Py_VISIT(st->result_hook[k]);
    return 0;
}

static int core_clear(PyObject *module) {
    module_state *st = get_state(module);
    for (int k = 0; k < ENGRAM_KERNEL_COUNT; k++) Py_CLEAR(st->reference[k]);
    Py_CLEAR(st->verify_prepare);
    Py_CLEAR(st->verify_check);
    for (int k = 0; k < ENGRAM_KERNEL_COUNT; k++) Py_CLEAR(st->result_hook[k]);
    return 0;
}

static void core_free(void *module) { core_clear((PyObject *)module); }

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "engram._core",
    .m_doc = "engram's C kernels: similarity, spreading activation, decay.",
    .m_size = sizeof(module_state),
    .m_methods = core_methods,
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&core_module); }
