"""Recall memories from a synthetic memory store with engram's three kernels.

    python examples/recall.py                 # 50,000 memories x 768-d, a few seconds
    python examples/recall.py --reference     # also answer one query on the reference backend
    python examples/recall.py --memories 200000 --dim 384 --queries 100

Builds a store of memories drawn around topics (unit float32 embeddings,
an association graph linking each memory to its nearest neighbours in its
topic and to a few random ones, strengths, ages in whole seconds), then
recalls: top_k finds candidates, spread carries their activation along the
associations, decay weighs each activated memory by its decayed strength,
and the best are returned.  The pipeline is ``engram.recall.recall``; the
integration tests and ``python -m engram load`` run the same code.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    import engram
except ImportError:  # run from a source checkout built in place
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import engram

import numpy as np

from engram.recall import STAGES, MemoryStore, RecallParams, recall, same_answer


def fmt_age(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds} s"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def show(store: MemoryStore, query, source: int, found, params: RecallParams) -> None:
    print(f"\ncue: memory {source} (topic {store.topic[source]}) with noise added")
    similarity = engram.cosine_similarity(query, store.embeddings[found.ids]) if found.ids.size else []
    candidates = set(found.candidates.tolist())
    print(f"  {'rank':>4} {'memory':>7} {'topic':>6} {'similarity':>10} {'activation':>10} "
          f"{'retention':>9} {'score':>7} {'age':>9}  how")
    for r, m in enumerate(found.ids):
        how = "candidate" if int(m) in candidates else "association"
        print(f"  {r + 1:>4} {m:>7} {store.topic[m]:>6} {similarity[r]:>10.3f} {found.activation[r]:>10.3f} "
              f"{found.retention[r]:>9.3f} {found.scores[r]:>7.3f} {fmt_age(int(store.age[m])):>9}  {how}")
    same_topic = int(np.sum(store.topic[found.ids] == store.topic[source]))
    through = sum(int(m) not in candidates for m in found.ids)
    print(f"  {same_topic} of {found.ids.size} from the cue's topic; {through} reached only through "
          f"associations (not among the {params.candidates} top_k candidates); "
          f"{found.pool_ids.size} memories activated")
    print("  stages: " + ", ".join(f"{s} {fmt_ms(t)}" for s, t in zip(STAGES, found.timings))
          + f"; total {fmt_ms(found.total_seconds)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--memories", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--k", type=int, default=10, help="memories per recall")
    p.add_argument("--queries", type=int, default=50, help="recalls timed after the ones shown")
    p.add_argument("--show", type=int, default=2, help="recalls printed in full")
    p.add_argument("--reference", action="store_true",
                   help="answer the first query on the reference backend too and compare")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    info = engram.simd_info()
    print(f"engram {engram.__version__}: backend {engram.get_backend()}, SIMD {info['active']}, "
          f"{engram.get_num_threads()} threads")
    t0 = time.perf_counter()
    store = MemoryStore.synthetic(args.memories, args.dim, seed=args.seed)
    print(f"store: {store.describe()}, built in {time.perf_counter() - t0:.2f} s")

    params = RecallParams()
    queries, sources = store.cues(max(args.queries, args.show), seed=args.seed + 1)
    recall(store, queries[0], args.k, params)  # first call: arena and caches warm up
    for i in range(args.show):
        show(store, queries[i], int(sources[i]), recall(store, queries[i], args.k, params), params)

    if args.queries:
        results = [recall(store, q, args.k, params) for q in queries[:args.queries]]
        times = np.array([r.timings + (r.total_seconds,) for r in results])
        hits = np.mean([np.any(r.ids == s) for r, s in zip(results, sources)])
        print(f"\n{args.queries} recalls: the cued memory itself is among the {args.k} recalled in "
              f"{hits:.0%} of them")
        print(f"  {'stage':<8} {'p50':>10} {'p95':>10} {'max':>10}")
        for j, name in enumerate(STAGES + ("total",)):
            col = times[:, j]
            print(f"  {name:<8} {fmt_ms(np.percentile(col, 50)):>10} {fmt_ms(np.percentile(col, 95)):>10} "
                  f"{fmt_ms(col.max()):>10}")
        print(f"  {1.0 / np.mean(times[:, -1]):,.0f} recalls/s from one thread")

    if args.reference:
        fast = recall(store, queries[0], args.k, params)
        t0 = time.perf_counter()
        with engram.backend("reference"):
            slow = recall(store, queries[0], args.k, params)
        seconds = time.perf_counter() - t0
        same, why = same_answer(fast, slow)
        print(f"\nreference backend: {'the same answer' if same else 'a DIFFERENT answer: ' + why} "
              f"in {seconds:.2f} s ({seconds / fast.total_seconds:,.0f}x the C backend's time); "
              f"largest score difference {np.max(np.abs(fast.scores - slow.scores), initial=0.0):.2g}")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
