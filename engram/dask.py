"""engram over Dask arrays: corpora and memory stores larger than one machine.

Each function runs engram's C kernel on every chunk, on whatever scheduler
Dask is using (threads, processes, a ``dask.distributed`` cluster); only
NumPy arrays and plain parameters cross process boundaries.

- :func:`top_k` over a corpus chunked along its rows: each chunk's top k
  with its ids offset by the chunk's start, merged by a tree reduction into
  exactly the in-memory result (same ids, same order, ties to the smaller id).
- :func:`cosine_similarity`, :func:`normalize`, :func:`decay`: blockwise.

Every kernel call inside a task uses ``threads=1`` by default: Dask already
runs one task per core (or per worker thread), and a task that started its
own threads on top would oversubscribe the cores.  Pass ``threads=`` to
override, e.g. for a cluster with one single-threaded worker per machine.

Results are lazy Dask arrays; compute them with ``.compute()`` or, for the
pair returned by :func:`top_k`, ``dask.compute(scores, ids)`` (which runs
the shared graph once).
"""
from __future__ import annotations

import math
import operator

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "engram.dask needs Dask: pip install 'engram[dask]' (dask[array] and distributed)"
    ) from exc

import engram

__all__ = ["top_k", "cosine_similarity", "normalize", "decay"]

TASK_THREADS = 1


def _as_dask(name: str, value, ndim: tuple) -> da.Array:
    arr = value if isinstance(value, da.Array) else da.asarray(value)
    if arr.ndim not in ndim:
        raise ValueError(f"{name} must be {' or '.join(f'{n}-D' for n in ndim)}, got shape {arr.shape}")
    return arr


def _rows_chunked(name: str, arr: da.Array) -> da.Array:
    """The last axis in one chunk: the kernels need whole vectors."""
    if arr.ndim == 2 and len(arr.chunks[1]) > 1:
        arr = arr.rechunk({1: -1})
    return arr


def _check_dtype(name: str, arr) -> None:
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 array, got {arr.dtype}")


# ---------------------------------------------------------------------------
# top_k: per-chunk candidates, merged by a tree reduction
# ---------------------------------------------------------------------------


def _chunk_top_k(queries, block, k, metric, offset, threads):
    scores, ids = engram.top_k(queries, block, k, metric=metric, threads=threads)
    scores, ids = np.atleast_2d(scores), np.atleast_2d(ids)
    ids = np.where(ids >= 0, ids + offset, -1)  # padding stays -1
    return scores, ids


def _merge(parts, k):
    """Best k of several candidate lists, in engram's order.

    Order: score descending, real candidates before padding (a real score
    can be -inf with metric="dot"), then the smaller id.  Candidates of one
    query never repeat an id across chunks, so this is the order of a full
    sort of that query's row.
    """
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    order = np.lexsort((ids, ids < 0, -scores.astype(np.float64)), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)


def _top_k_graph(q, corpus, k, metric, threads, split_every, dtype, n_queries):
    """(scores, ids) Dask arrays over one graph: a task per chunk, then the merge tree.

    Written as a plain task graph rather than with dask.delayed: building a
    delayed call per chunk and per merge costs tens of milliseconds per call,
    a visible share of a scan of a few hundred.  The queries are one key, so
    each worker receives them once instead of inside every task.
    """
    token = tokenize(q, corpus.name, k, metric, threads, split_every)
    name = f"engram-top_k-{token}"
    q_key = (f"{name}-queries", 0)
    dsk: dict = {q_key: q}
    offsets = np.concatenate([[0], np.cumsum(corpus.chunks[0])[:-1]]).astype(np.int64)
    level = []
    for i, (row, offset) in enumerate(zip(corpus.__dask_keys__(), offsets)):
        key = (f"{name}-chunk", i)
        dsk[key] = (_chunk_top_k, q_key, row[0], k, metric, int(offset), threads)
        level.append(key)
    depth = 0
    while len(level) > 1 or depth == 0:
        merged = []
        for j in range(0, len(level), split_every):
            key = (f"{name}-merge{depth}", j // split_every)
            dsk[key] = (_merge, list(level[j:j + split_every]), k)
            merged.append(key)
        level, depth = merged, depth + 1
    scores_name, ids_name = f"{name}-scores", f"{name}-ids"
    layers = {
        name: dsk,
        scores_name: {(scores_name, 0, 0): (operator.getitem, level[0], 0)},
        ids_name: {(ids_name, 0, 0): (operator.getitem, level[0], 1)},
    }
    layers.update(corpus.dask.layers)
    dependencies = {name: set(corpus.__dask_layers__()), scores_name: {name}, ids_name: {name}}
    dependencies.update(corpus.dask.dependencies)
    graph = HighLevelGraph(layers, dependencies)
    chunks = ((n_queries,), (k,))
    return (da.Array(graph, scores_name, chunks, dtype=dtype),
            da.Array(graph, ids_name, chunks, dtype=np.int64))


def top_k(queries, corpus, k, *, metric="cosine", threads=None, split_every=32):
    """The k best rows of a row-chunked Dask ``corpus`` for each query.

    ``queries`` is a NumPy array (or a small Dask array, computed once),
    ``(d,)`` or ``(q, d)``.  Returns lazy ``(scores, ids)`` Dask arrays of
    shape ``(q, k)`` (``(k,)`` for one query), equal to
    ``engram.top_k(queries, corpus.compute(), k, metric=metric)``.
    ``split_every`` is the fan-in of the merge tree (merging is cheap next to
    scanning a chunk, so a wide tree with few tasks is faster).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"split_every must be an int >= 2, got {split_every!r}")
    q = np.asarray(queries.compute() if isinstance(queries, da.Array) else queries)
    corpus = _rows_chunked("corpus", _as_dask("corpus", corpus, (2,)))
    _check_dtype("corpus", corpus)
    if q.ndim not in (1, 2) or q.shape[-1] != corpus.shape[1]:
        raise ValueError(f"queries must be (d,) or (q, d) with d = {corpus.shape[1]}, got shape {q.shape}")
    threads = TASK_THREADS if threads is None else threads
    k = int(k)
    dtype = np.result_type(q.dtype, corpus.dtype)
    n_queries = 1 if q.ndim == 1 else q.shape[0]

    if corpus.shape[0] == 0:  # an empty corpus: every slot is padding
        scores = da.from_array(np.full((n_queries, k), -np.inf, dtype))
        ids = da.from_array(np.full((n_queries, k), -1, np.int64))
    else:
        scores, ids = _top_k_graph(q, corpus, k, metric, threads, split_every, dtype, n_queries)
    if q.ndim == 1:
        return scores[0], ids[0]
    return scores, ids


# ---------------------------------------------------------------------------
# Blockwise kernels
# ---------------------------------------------------------------------------


def cosine_similarity(x, y, *, threads=None):
    """Cosine similarity of Dask (or NumPy) arrays, shapes as ``engram.cosine_similarity``.

    ``(m, d), (n, d) -> (m, n)`` is chunked like x's rows by y's rows;
    ``(d,), (n, d) -> (n,)`` and ``(m, d), (d,) -> (m,)`` follow the 2-D
    argument's row chunks; two vectors give a 0-d float64 Dask array.
    """
    threads = TASK_THREADS if threads is None else threads
    xa = _rows_chunked("x", _as_dask("x", x, (1, 2)))
    ya = _rows_chunked("y", _as_dask("y", y, (1, 2)))
    _check_dtype("x", xa)
    _check_dtype("y", ya)
    if xa.shape[-1] != ya.shape[-1]:
        raise ValueError(f"x and y must have the same last dimension, got {xa.shape} and {ya.shape}")
    dtype = np.result_type(xa.dtype, ya.dtype)
    if xa.ndim == 1:
        xa = xa.rechunk(-1)
    if ya.ndim == 1:
        ya = ya.rechunk(-1)

    def block(a, b):
        return np.asarray(engram.cosine_similarity(a, b, threads=threads), dtype=dtype)

    if xa.ndim == 2 and ya.ndim == 2:
        return da.blockwise(block, "ij", xa, "ik", ya, "jk", dtype=dtype, concatenate=True)
    if xa.ndim == 2:
        return da.blockwise(block, "i", xa, "ik", ya, "k", dtype=dtype, concatenate=True)
    if ya.ndim == 2:
        return da.blockwise(block, "j", xa, "k", ya, "jk", dtype=dtype, concatenate=True)
    # two vectors: engram returns a Python float (float64), so does the 0-d result
    return da.blockwise(lambda a, b: np.float64(engram.cosine_similarity(a, b)), "", xa, "k", ya, "k",
                        dtype=np.float64, concatenate=True)


def normalize(x):
    """Rows of a Dask array scaled to unit L2 norm (zero rows stay zero), blockwise."""
    xa = _rows_chunked("x", _as_dask("x", x, (1, 2)))
    _check_dtype("x", xa)
    if xa.ndim == 1:
        xa = xa.rechunk(-1)
    return xa.map_blocks(lambda b: engram.normalize(b), dtype=xa.dtype)


def _decay_block(strength, age, stability, *, model, power, factor, validate, threads,
                 block_info=None):
    try:
        return engram.decay(strength, age, stability=stability, model=model, power=power,
                            factor=factor, validate=validate, threads=threads)
    except ValueError as exc:
        start = block_info[0]["array-location"][0][0] if block_info and 0 in block_info else 0
        raise ValueError(f"{exc} (index within the block starting at {start})") from None


def decay(strength, age, *, stability=86400.0, model="exponential", power=0.5,
          factor=19 / 81, validate=True, threads=None):
    """``engram.decay`` over Dask arrays, blockwise; returns a new lazy array.

    ``strength`` is a 1-D Dask or NumPy array; ``age`` and ``stability`` are
    arrays of the same length (rechunked to strength's chunks) or scalars.
    There is no ``out=``: Dask arrays are immutable.  With ``validate=True``
    a bad age or stability raises ValueError when the block holding it is
    computed, naming the index within that block and the block's start.
    """
    threads = TASK_THREADS if threads is None else threads
    s = _as_dask("strength", strength, (1,))
    _check_dtype("strength", s)
    options = dict(model=model, power=power, factor=factor, validate=validate, threads=threads)
    arrays = [s]
    names = []
    for name, value in (("age", age), ("stability", stability)):
        if np.ndim(value) == 0 and not isinstance(value, da.Array):
            options[name] = value
            continue
        a = _as_dask(name, value, (1,))
        if a.shape != s.shape:
            raise ValueError(f"{name} must have strength's shape {s.shape}, got {a.shape}")
        arrays.append(a.rechunk(s.chunks))
        names.append(name)

    def block(*parts, block_info=None):
        given = dict(zip(["strength", *names], parts))
        age_value = given.get("age", options.get("age"))
        stability_value = given.get("stability", options.get("stability"))
        return _decay_block(given["strength"], age_value, stability_value, model=model, power=power,
                            factor=factor, validate=validate, threads=threads, block_info=block_info)

    return da.map_blocks(block, *arrays, dtype=s.dtype)


def default_task_threads() -> int:
    """Threads a kernel call inside a task uses by default (1: Dask runs the tasks in parallel)."""
    return TASK_THREADS


def chunks_for(n_rows: int, d: int, itemsize: int = 4, target_bytes: int = 64 << 20) -> int:
    """A row-chunk size giving chunks of about ``target_bytes`` (64 MiB by default)."""
    return max(1, min(n_rows, math.ceil(target_bytes / max(1, d * itemsize))))


# ---------------------------------------------------------------------------
# Measuring the cost of scaling out
# ---------------------------------------------------------------------------


def benchmark_top_k(n: int = 1_000_000, d: int = 768, n_chunks: int = 64, n_queries: int = 16,
                    k: int = 10, workers: int = 2, repeats: int = 5, seed: int = 0) -> dict:
    """top_k on a ``workers``-process LocalCluster vs in-memory engram, same machine, same run.

    The corpus (``n`` x ``d`` float32 in ``n_chunks`` row chunks) is generated
    on the workers and persisted there, as a corpus that lives on a cluster
    is; the in-memory side gets the same rows as one NumPy array and runs
    ``engram.top_k`` with ``threads=workers``.  Both answers must be equal.
    Returns seconds per call for each side (best and median of ``repeats``)
    and the overhead ratio cluster / in-memory.
    """
    import statistics
    import time

    from distributed import Client, LocalCluster, wait

    rows_per_chunk = math.ceil(n / n_chunks)
    rng = np.random.default_rng(seed + 1)
    # fresh queries for every call: equal inputs would give equal task keys, and a cluster
    # may answer those from results it still holds
    query_sets = [rng.standard_normal((n_queries, d)).astype(np.float32) for _ in range(repeats + 1)]
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        corpus = da.random.default_rng(seed).standard_normal((n, d), chunks=(rows_per_chunk, d))
        corpus = client.persist(corpus.astype(np.float32))
        wait(corpus)

        def on_cluster(queries):
            return client.compute(list(top_k(queries, corpus, k)), sync=True)

        on_cluster(query_sets[0])  # warm the workers (imports, first-touch of their arenas)
        cluster_times, answers = [], []
        for queries in query_sets[1:]:
            t0 = time.perf_counter()
            answers.append(on_cluster(queries))
            cluster_times.append(time.perf_counter() - t0)
        # gathered from the workers the array can come back unaligned; an in-memory corpus is not
        local = np.require(corpus.compute(), np.float32, ["C_CONTIGUOUS", "ALIGNED"])
    engram.top_k(query_sets[0], local, k, threads=workers)
    memory_times = []
    equal = True
    for queries, (scores, ids) in zip(query_sets[1:], answers):
        t0 = time.perf_counter()
        want_scores, want_ids = engram.top_k(queries, local, k, threads=workers)
        memory_times.append(time.perf_counter() - t0)
        equal = equal and bool(np.array_equal(ids, want_ids) and np.array_equal(scores, want_scores))
    del local
    return {
        "n": n, "d": d, "chunks": n_chunks, "queries": n_queries, "k": k, "workers": workers,
        "corpus_bytes": n * d * 4,
        "cluster_seconds": {"best": min(cluster_times), "median": statistics.median(cluster_times)},
        "in_memory_seconds": {"best": min(memory_times), "median": statistics.median(memory_times)},
        "overhead": statistics.median(cluster_times) / statistics.median(memory_times),
        "equal": equal,
        "backend": engram.get_backend(),  # of the in-memory side
    }
