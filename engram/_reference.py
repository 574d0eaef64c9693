"""Pure-NumPy reference versions of engram's kernels.

Same names, signatures and semantics as the C core, written to be
obviously correct rather than fast, computing in float64.  They are the
oracle of the differential tests and the ``reference`` backend
(``ENGRAM_BACKEND=reference``, ``engram.set_backend("reference")``).
"""
from __future__ import annotations

import numpy as np

__all__: list[str] = []

# ==== similarity ====

# ==== end similarity ====

# ==== spread ====

# ==== end spread ====

# ==== decay ====

# ==== end decay ====
