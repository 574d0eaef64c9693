"""Memory recall built from the three kernels: the pipeline they exist to serve.

A :class:`MemoryStore` holds memories as unit embeddings (float32), an
association graph between them (a :class:`engram.Graph`), strengths,
ages in whole seconds (int64) and per-memory stabilities.
:func:`recall` answers a query in four stages:

1. ``top_k``: the memories most similar to the query are the candidates;
2. ``spread``: activation flows from the candidates (seeded with their
   similarity) along the associations, so related memories that the query
   does not resemble directly come up too;
3. ``decay``: each activated memory's strength is decayed by its age;
4. ``rank``: activation x decayed strength, best first, ties to the smaller id.

``examples/recall.py``, the integration tests and ``python -m engram load``
all run this one implementation.  :meth:`MemoryStore.synthetic` builds a
store with structure, so that recall means something: memories are drawn
around topic centres, each linked to its nearest neighbours within its topic
and to a few random memories elsewhere.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

import engram

__all__ = ["MemoryStore", "RecallParams", "Recall", "recall", "same_answer", "STAGES"]

#: the stages of a recall, in order; ``Recall.timings`` follows this order
STAGES = ("top_k", "spread", "decay", "rank")

DAY = 86_400


@dataclass(frozen=True)
class RecallParams:
    """How a recall searches: candidates from similarity, then one spread and one decay."""

    candidates: int = 16  # memories taken from top_k to seed the spread
    max_depth: int = 2  # association hops
    hop_decay: float = 0.85  # activation kept per hop
    threshold: float = 1e-3  # pulses below this stop spreading
    normalize: str = "out"  # a memory shares its pulse among its associations
    revisit: bool = False  # True: candidates also gain from each other (a node may fire twice)
    model: str = "exponential"  # forgetting curve
    threads: int | None = None  # per kernel call; None: engram decides by size


@dataclass
class MemoryStore:
    embeddings: np.ndarray  # (n, d) float32, unit rows
    topic: np.ndarray  # (n,) int32: the centre each memory was drawn around
    graph: engram.Graph  # associations: u -> v weighted by their similarity
    strength: np.ndarray  # (n,) float32 in (0, 1]
    age: np.ndarray  # (n,) int64 seconds since the memory was last used
    stability: np.ndarray  # (n,) float64 seconds: e-folding time of the strength
    seed: int = 0
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.embeddings.shape[0]

    @property
    def d(self) -> int:
        return self.embeddings.shape[1]

    @classmethod
    def synthetic(cls, n: int = 50_000, d: int = 768, *, topic_size: int = 50, links: int = 8,
                  long_links: int = 2, noise: float = 0.8, seed: int = 0) -> "MemoryStore":
        """A store of ``n`` memories in ``n / topic_size`` topics.

        Each memory is its topic's unit centre plus random noise of norm
        about ``noise`` (so memories of one topic have cosine about
        1 / (1 + noise**2) with each other and about 0 with other topics),
        normalised.  Associations: each memory links to its ``links`` most
        similar memories of its topic, weighted by that similarity, and to
        ``long_links`` random memories anywhere with small weights (0.02-0.1),
        the weak cross-topic associations that let activation wander.
        Strengths are uniform in [0.05, 1]; ages log-uniform between a minute
        and 90 days; stability 0.5 + 10 x strength days (strong memories fade
        slower).
        """
        if n < 2 or d < 1:
            raise ValueError(f"a store needs n >= 2 memories of d >= 1 dimensions, got n={n}, d={d}")
        rng = np.random.default_rng(seed)
        topics = max(1, n // topic_size)
        centres = rng.standard_normal((topics, d), dtype=np.float32)
        engram.normalize(centres, out=centres)
        topic = rng.integers(0, topics, n).astype(np.int32)
        # noise drawn uniform with the Gaussian's variance: a quarter of the cost to draw, and in
        # hundreds of dimensions the geometry (norms, angles) is the same; in blocks that stay in cache
        emb = np.empty((n, d), dtype=np.float32)
        scale = np.float32(noise * np.sqrt(12.0 / d))
        for a in range(0, n, 256):
            block = emb[a:a + 256]
            rng.random(dtype=np.float32, out=block)
            block -= np.float32(0.5)
            block *= scale
            block += centres[topic[a:a + 256]]
        engram.normalize(emb, out=emb)

        src, dst, w = [], [], []
        members = np.argsort(topic, kind="stable")
        bounds = np.searchsorted(topic[members], np.arange(topics + 1))
        for t in range(topics):
            ids = members[bounds[t]:bounds[t + 1]]
            m = ids.shape[0]
            if m < 2:
                continue
            x = emb[ids]
            sim = engram.cosine_similarity(x, x)
            np.fill_diagonal(sim, -np.inf)
            j = min(links, m - 1)
            nearest = np.argpartition(-sim, j - 1, axis=1)[:, :j]
            src.append(np.repeat(ids, j))
            dst.append(ids[nearest].ravel())
            w.append(np.maximum(np.take_along_axis(sim, nearest, axis=1).ravel(), 0.0))
        if long_links:
            src.append(np.repeat(np.arange(n), long_links))
            dst.append(rng.integers(0, n, n * long_links))
            w.append(rng.uniform(0.02, 0.1, n * long_links).astype(np.float32))
        src = np.concatenate(src)
        dst = np.concatenate(dst).astype(np.int32)
        w = np.concatenate(w).astype(np.float32)
        order = np.argsort(src, kind="stable")
        indptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
        graph = engram.Graph(indptr, dst[order], w[order], n=n)

        strength = rng.uniform(0.05, 1.0, n).astype(np.float32)
        age = np.exp(rng.uniform(np.log(60.0), np.log(90.0 * DAY), n)).astype(np.int64)
        stability = (0.5 + 10.0 * strength.astype(np.float64)) * DAY
        return cls(emb, topic, graph, strength, age, stability, seed,
                   {"topics": topics, "links": links, "long_links": long_links, "noise": noise})

    def cues(self, count: int, *, noise: float = 0.5, seed: int | None = None):
        """``count`` queries, each a memory's embedding plus noise of norm about ``noise``.

        Returns ``(queries (count, d) float32, the memory each came from)``.
        """
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        source = rng.integers(0, self.n, count)
        q = rng.standard_normal((count, self.d), dtype=np.float32)
        q *= np.float32(noise / np.sqrt(self.d))
        q += self.embeddings[source]
        return q, source

    def describe(self) -> str:
        return (f"{self.n:,} memories x {self.d}-d float32 ({self.embeddings.nbytes / 2**20:,.0f} MiB), "
                f"{self.info.get('topics', '?'):,} topics, {self.graph.nnz:,} associations")


@dataclass
class Recall:
    """What a recall found: the best memories, what made their score, and how long it took."""

    ids: np.ndarray  # (k,) int64, best first
    scores: np.ndarray  # (k,) float64: activation x retention
    activation: np.ndarray  # (k,) float32: seeds plus what spread brought
    retention: np.ndarray  # (k,) float32: decayed strength
    candidates: np.ndarray  # ids top_k returned (the spread's seeds)
    pool_ids: np.ndarray  # every activated memory, ascending ids ...
    pool_scores: np.ndarray  # ... and its score
    timings: tuple  # seconds per stage, in STAGES order

    @property
    def total_seconds(self) -> float:
        return float(sum(self.timings))

    def score_of(self, ids) -> np.ndarray:
        """Score of each of ``ids`` in this recall (0.0 for a memory that was not activated)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.shape)
        if self.pool_ids.shape[0]:
            pos = np.minimum(np.searchsorted(self.pool_ids, ids), self.pool_ids.shape[0] - 1)
            hit = self.pool_ids[pos] == ids
            out[hit] = self.pool_scores[pos[hit]]
        return out


def recall(store: MemoryStore, query, k: int = 10, params: RecallParams = RecallParams()) -> Recall:
    """The ``k`` memories that ``query`` (a (d,) vector) recalls best; fewer if fewer were activated."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"recall(): k must be a positive int, got {k!r}")
    if np.ndim(query) != 1:
        raise ValueError(f"recall(): query must be one (d,) vector, got shape {np.shape(query)}")
    clock = time.perf_counter
    t0 = clock()
    sim, cand = engram.top_k(query, store.embeddings, params.candidates, threads=params.threads)
    t1 = clock()
    # seeds: candidates that resemble the query at all (padding has id -1, dissimilar ones score <= 0)
    keep = (cand >= 0) & (sim > 0)
    seeds = dict(zip(cand[keep].tolist(), sim[keep].tolist()))
    activation = engram.spread(store.graph, seeds, max_depth=params.max_depth, decay=params.hop_decay,
                               threshold=params.threshold, normalize=params.normalize, revisit=params.revisit,
                               threads=params.threads)
    t2 = clock()
    # activation is >= 0 (seeds and weights are); a bool mask scans 10x faster than float nonzero
    pool = np.flatnonzero(activation > 0)
    retention = engram.decay(store.strength[pool], store.age[pool], stability=store.stability[pool],
                             model=params.model, threads=params.threads)
    t3 = clock()
    act = activation[pool]
    score = act.astype(np.float64) * retention
    m = score.shape[0]
    if m > k:
        # everything at least as good as the k-th best, ties included, then an exact sort
        kth = np.partition(score, m - k)[m - k]
        best = np.flatnonzero(score >= kth)
    else:
        best = np.arange(m)
    best = best[np.lexsort((pool[best], -score[best]))][:k]
    t4 = clock()
    return Recall(ids=pool[best].astype(np.int64), scores=score[best], activation=act[best],
                  retention=retention[best], candidates=cand, pool_ids=pool.astype(np.int64),
                  pool_scores=score, timings=(t1 - t0, t2 - t1, t3 - t2, t4 - t3))


def same_answer(a: Recall, b: Recall, rtol: float = 1e-5, atol: float = 1e-7) -> tuple[bool, str]:
    """Whether two recalls of one query give the same answer, and if not, why.

    Same means: as many memories; at every rank the two scores agree within
    ``atol + rtol * |score|``; and the ids are identical, except at a rank
    where the two memories tie within that tolerance: each side's memory
    scores, in the other recall, within tolerance of the score at that rank
    (two memories whose scores differ by less than rounding may swap).

    The default ``rtol`` is the spread kernel's own tolerance (relative
    1e-5), the loosest of the three stages: similarities are within 1e-6
    absolute of float64, decayed strengths within a few float32 ULP, and
    a score is their product.
    """

    def close(x, y):
        return abs(x - y) <= atol + rtol * max(abs(x), abs(y))

    if a.ids.shape != b.ids.shape:
        return False, f"{a.ids.shape[0]} memories vs {b.ids.shape[0]}"
    for r in range(a.ids.shape[0]):
        sa, sb = float(a.scores[r]), float(b.scores[r])
        if not close(sa, sb):
            return False, f"rank {r}: score {sa!r} (id {a.ids[r]}) vs {sb!r} (id {b.ids[r]})"
        if a.ids[r] != b.ids[r]:
            other_a = float(b.score_of([a.ids[r]])[0])
            other_b = float(a.score_of([b.ids[r]])[0])
            if not (close(other_a, sb) and close(other_b, sa)):
                return False, (f"rank {r}: id {a.ids[r]} vs {b.ids[r]}, not a tie: {a.ids[r]} scores "
                               f"{sa!r} vs {other_a!r}, {b.ids[r]} scores {other_b!r} vs {sb!r}")
    return True, ""
