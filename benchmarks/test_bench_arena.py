"""The scratch arena: allocation and reset cost next to malloc/free of the same sizes.

``engram._core._arena_bench(size, count, rounds, trials)`` times, in C and
in the same call, ``rounds`` x (``count`` arena allocations + one reset),
``rounds`` resets alone, and ``rounds`` x (``count`` mallocs + ``count``
frees), each the best of ``trials``, with no clock read inside a timed loop.
Each pytest-benchmark round is one such call; the per-allocation numbers of
all rounds go to ``extra_info`` and the claims are checked on their medians.
"""
from __future__ import annotations

import statistics

import pytest

import engram

_core = engram._core
pytestmark = pytest.mark.skipif(_core is None, reason="the C core is not loaded")

ROUNDS = 10

# (block size, blocks per reset): small scratch (heaps, frontiers), a page, score blocks, one large copy
SIZES = [(64, 64), (4096, 64), (65536, 16), (1 << 20, 1)]


@pytest.mark.parametrize("size,count", SIZES, ids=[f"{s}Bx{c}" for s, c in SIZES])
def test_arena_vs_malloc(benchmark, bench_note, size, count):
    capacity = engram.arena.config()["size"]
    fits = count * (-(-size // 64) * 64) <= capacity
    per_round = []

    def one_round():
        per_round.append(_core._arena_bench(size, count, 2000 if size < 65536 else 200, 3))

    before = engram.arena.stats()["total"]["overflows"]
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    overflowed = engram.arena.stats()["total"]["overflows"] > before
    med = {k: statistics.median(r[k] for r in per_round)
           for k in ("arena_alloc_ns", "arena_reset_ns", "arena_per_alloc_ns", "malloc_free_ns")}
    benchmark.extra_info.update(size=size, count=count, overflowed=overflowed,
                                arena_vs_malloc=med["malloc_free_ns"] / med["arena_per_alloc_ns"], **med)
    bench_note(f"arena {size:>7} B x {count:<3}: alloc {med['arena_alloc_ns']:.3g} ns, reset "
               f"{med['arena_reset_ns']:.3g} ns, per block with reset {med['arena_per_alloc_ns']:.3g} ns; "
               f"malloc+free {med['malloc_free_ns']:.3g} ns ({benchmark.extra_info['arena_vs_malloc']:.1f}x)")
    assert overflowed == (not fits)
    # the original report's claims: O(1) bump allocation, sub-microsecond reset
    assert med["arena_reset_ns"] < 1000
    assert med["arena_per_alloc_ns"] < med["malloc_free_ns"]


def test_arena_overflow_falls_back_to_the_heap(benchmark, bench_note):
    """Four 1 MiB blocks overflow the default 2 MiB arena: counted, and no faster than malloc."""
    capacity = engram.arena.config()["size"]
    count = capacity // (1 << 20) + 2
    per_round = []
    before = engram.arena.stats()["total"]["overflows"]
    benchmark.pedantic(lambda: per_round.append(_core._arena_bench(1 << 20, count, 50, 3)),
                       rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert engram.arena.stats()["total"]["overflows"] > before
    med = {k: statistics.median(r[k] for r in per_round) for k in ("arena_per_alloc_ns", "malloc_free_ns")}
    benchmark.extra_info.update(count=count, **med)
    bench_note(f"arena overflow, 1 MiB x {count}: per block {med['arena_per_alloc_ns']:.3g} ns (heap fallback); "
               f"malloc+free {med['malloc_free_ns']:.3g} ns")
