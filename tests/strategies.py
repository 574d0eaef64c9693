"""Hypothesis strategies, one section per kernel (see engram/_kernels.py for the registry)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp  # noqa: F401

# ==== shared ====

#: dimensions straddling every vector width (4, 8, 16 lanes) and the embedding sizes
STRADDLING_DIMS = (
    list(range(1, 18)) + [31, 32, 33, 63, 64, 65, 127, 128, 129, 383, 384, 385,
                          767, 768, 769, 1535, 1536, 1537, 4096]
)


@st.composite
def layouts(draw, array: np.ndarray):
    """The same values as `array` in another memory layout: strided, reversed, Fortran."""
    kind = draw(st.sampled_from(["contiguous", "row_strided", "reversed", "fortran", "col_strided"]))
    if kind == "contiguous" or array.ndim == 0:
        return array
    if kind == "row_strided":
        pad = np.zeros((array.shape[0] * 2,) + array.shape[1:], dtype=array.dtype)
        pad[::2] = array
        return pad[::2]
    if kind == "reversed":
        return np.ascontiguousarray(array[::-1])[::-1]
    if kind == "fortran":
        return np.asfortranarray(array)
    wide = np.zeros(array.shape[:-1] + (array.shape[-1] * 2,), dtype=array.dtype)
    wide[..., ::2] = array
    return wide[..., ::2]

# ==== end shared ====

# ==== similarity ====

from engram._cases import ROW_INJECTIONS, inject_rows  # noqa: E402,F401  (one implementation)


@st.composite
def similarity_matrix(draw, rows, d, dtype, inject=True):
    """A (rows, d) array of unit-scale normals, some rows with edge values injected."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, d)).astype(dtype)
    if inject and rows and draw(st.booleans()):
        kinds = draw(st.lists(st.sampled_from(ROW_INJECTIONS), min_size=rows, max_size=rows))
        a = inject_rows(rng, a, kinds)
    return a


@st.composite
def similarity_shapes(draw, max_work=1 << 21, max_rows=300):
    """(m, n, d): d straddles the vector widths; m * n * d stays small enough for the scalar level."""
    d = draw(st.sampled_from(STRADDLING_DIMS))
    limit = max(1, min(max_rows, int((max_work / max(d, 1)) ** 0.5)))
    m = draw(st.integers(0, limit))
    n = draw(st.integers(0, limit))
    return m, n, d


@st.composite
def vector_layouts(draw, vector: np.ndarray):
    """A 1-D array in another layout: strided or reversed (same values)."""
    kind = draw(st.sampled_from(["contiguous", "strided", "reversed"]))
    if kind == "contiguous":
        return vector
    if kind == "strided":
        wide = np.zeros(vector.shape[0] * 2, dtype=vector.dtype)
        wide[::2] = vector
        return wide[::2]
    return np.ascontiguousarray(vector[::-1])[::-1]


OUT_LAYOUTS = ["c", "fortran", "col_strided", "reversed", "unaligned"]


def out_in_layout(kind, shape, dtype, fill=7.0):
    """(out, base): a writeable `out` of `shape` and `dtype` filled with `fill`, laid out as
    `kind`, and the whole buffer it is a view of (to check nothing else gets written)."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if kind == "c":
        base = np.full(shape, fill, dtype)
        return base, base
    if kind == "fortran":
        base = np.full(shape, fill, dtype, order="F")
        return base, base
    if kind == "col_strided":
        base = np.full(shape[:-1] + (2 * shape[-1],), fill, dtype)
        return base[..., ::2], base
    if kind == "reversed":
        base = np.full(shape, fill, dtype)
        return base[(slice(None, None, -1),) * len(shape)], base
    assert kind == "unaligned"
    raw = np.zeros(int(np.prod(shape)) * dtype.itemsize + 1, np.uint8)
    out = raw[1:].view(dtype).reshape(shape)
    out[...] = fill
    return out, raw


@st.composite
def out_layouts(draw, shape, dtype):
    """out_in_layout() for a drawn layout."""
    return out_in_layout(draw(st.sampled_from(OUT_LAYOUTS)), shape, dtype)

# ==== end similarity ====

# ==== spread ====

from engram import _cases as _spread_rows  # noqa: E402  (graph and seed generators, knife-edge check)

#: node counts straddling the 8-row chunks of the pull layout
SPREAD_NODE_COUNTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100]


@st.composite
def spread_graphs(draw, max_nodes: int = 100):
    """(indptr, indices, weights): self-loops, multi-edges, cycles, dangling nodes, parts."""
    n = draw(st.sampled_from(SPREAD_NODE_COUNTS) | st.integers(0, max_nodes))
    m = draw(st.integers(0, 4 * n)) if n else 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return _spread_rows.spread_graph_arrays(
        rng, n, m,
        self_loops=draw(st.booleans()),
        multi_edges=draw(st.booleans()),
        cycle=draw(st.booleans()),
        components=draw(st.integers(1, 3)),
        dangling=draw(st.sampled_from([0.0, 0.25])),
        index_dtype=draw(st.sampled_from([np.int32, np.int64])),
        weights=draw(st.sampled_from(["none", "f32", "f64"])),
        edge_values=draw(st.booleans()),
    )


@st.composite
def spread_options(draw, max_depth: int = 8):
    """Keyword arguments of spread(): every option, decay as a number or per hop."""
    depth = draw(st.integers(0, max_depth))
    kwargs = {
        "max_depth": depth,
        "threshold": draw(st.sampled_from([0.0, 1e-4, 1e-2, 0.1]) | st.floats(0, 0.5)),
        "normalize": draw(st.sampled_from(["none", "out"])),
        "combine": draw(st.sampled_from(["sum", "max"])),
        "revisit": draw(st.booleans()),
    }
    if draw(st.booleans()):
        kwargs["decay"] = np.array(draw(st.lists(st.floats(0.01, 1.0), min_size=depth, max_size=depth)))
    else:
        kwargs["decay"] = draw(st.sampled_from([0.85, 1.0, 0.5]) | st.floats(0.01, 1.0))
    return kwargs


@st.composite
def spread_cases(draw, max_nodes: int = 100, max_depth: int = 8, batch: bool = True):
    """(graph, seeds, kwargs) clear of the threshold's knife edge.

    The graph comes as a Graph, a tuple or a scipy matrix; seeds dense
    float32/float64, a dict or a batch.  A threshold that some pulse of
    the reference run lands within 1e-7 (relative) of is moved by a random
    factor until none does: the case avoids the knife edge by construction.
    """
    indptr, indices, weights = draw(spread_graphs(max_nodes))
    n = indptr.shape[0] - 1
    kwargs = draw(spread_options(max_depth))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    form = draw(st.sampled_from(["graph", "tuple", "csr", "csc", "coo"]))
    import engram

    graph = engram.Graph(indptr, indices, weights)
    if form == "tuple":
        graph = (indptr, indices) if weights is None else (indptr, indices, weights)
    elif form in ("csr", "csc", "coo"):
        import scipy.sparse as sp

        data = np.ones(indices.shape[0]) if weights is None else weights
        mat = sp.csr_matrix((data, indices, indptr), shape=(n, n))
        graph = {"csr": mat, "csc": mat.tocsc(), "coo": mat.tocoo()}[form]
    shape = draw(st.sampled_from(["dense", "dict", "batch"] if batch else ["dense", "dict"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    density = draw(st.sampled_from([0.05, 0.3, 1.0]))
    rows = draw(st.integers(0, 4)) if shape == "batch" else 1
    seeds = _spread_rows.spread_seed_values(rng, rows, n, density, kwargs["threshold"], dtype,
                                            edge_values=draw(st.booleans()))
    if shape != "batch":
        seeds = seeds[0]
        if shape == "dict":
            seeds = {int(i): float(seeds[i]) for i in np.flatnonzero(seeds)}
    kwargs = _spread_rows.spread_clear_threshold(rng, graph, seeds, kwargs)
    return graph, seeds, kwargs

# ==== end spread ====

# ==== decay ====

#: lengths straddling the 16-lane vectors and the 1024-element blocks of the kernel
DECAY_LENGTHS = [0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1023, 1024, 1025, 2049]


def _decay_floats(dtype, **kw):
    return st.floats(width=32 if dtype == np.float32 else 64, **kw)


@st.composite
def decay_ages(draw, n: int, dtype, validate: bool):
    """Ages: a Python number or an (n,) array of float32, float64, int64 or uint64, any layout."""
    kind = draw(st.sampled_from(["float32", "float64", "int64", "uint64", "int", "float"]))
    if kind == "int":
        return draw(st.integers(0 if validate else -(2**63), 2**64 - 1))
    if kind == "float":
        return draw(st.floats(min_value=0.0 if validate else None, allow_nan=not validate))
    if kind == "int64":
        elements = st.integers(0 if validate else -(2**63), 2**63 - 1)
    elif kind == "uint64":
        elements = st.integers(0, 2**64 - 1)
    else:
        elements = _decay_floats(np.dtype(kind).type, min_value=0.0 if validate else None,
                                 allow_nan=not validate)
    arr = draw(hnp.arrays(np.dtype(kind), n, elements=elements))
    return draw(layouts(arr))


@st.composite
def decay_stabilities(draw, n: int, dtype, validate: bool):
    """Stabilities: a number or an (n,) array of float32, float64 or int64; > 0 when validated."""
    if draw(st.booleans()):
        if not validate:
            return draw(st.floats())
        return draw(st.one_of(st.floats(min_value=0.0, exclude_min=True), st.integers(1, 2**63 - 1)))
    sdt = draw(st.sampled_from([dtype, np.float32, np.float64, np.int64]))
    if sdt == np.int64:
        elements = st.integers(1 if validate else -(2**63), 2**63 - 1)
    else:
        any_value = _decay_floats(sdt, min_value=0.0, exclude_min=True) if validate else _decay_floats(sdt)
        elements = st.one_of(any_value, st.floats(1.0, 1e7, width=32))
    return draw(layouts(draw(hnp.arrays(sdt, n, elements=elements))))


@st.composite
def decay_cases(draw):
    """(args, kwargs) of one decay call: dtypes, layouts, scalars, models and awkward values."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.sampled_from(DECAY_LENGTHS))
    validate = draw(st.booleans())
    strength = draw(hnp.arrays(dtype, n, elements=st.one_of(
        _decay_floats(dtype, min_value=0.0, max_value=1.0), _decay_floats(dtype))))
    strength = draw(layouts(strength))
    kwargs = {"stability": draw(decay_stabilities(n, dtype, validate)), "validate": validate}
    if draw(st.booleans()):
        kwargs["model"] = "power"
        kwargs["power"] = draw(st.sampled_from([0.5, 0.3, 1.0, 2.0, 7.5, 1e3, 1e9, 1e300]))
        kwargs["factor"] = draw(st.sampled_from([19 / 81, 1.0, 0.0, 1e-3]))
    return (strength, draw(decay_ages(n, dtype, validate))), kwargs

# ==== end decay ====
