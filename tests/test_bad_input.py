"""Every bad input gets a clear TypeError/ValueError and leaves out= untouched.

One table: (id, call, expected exception, words the message must contain).
Each call gets fresh arrays from its builder, so the table also checks that
`out` and in-place inputs are byte-identical after the error.
"""
from __future__ import annotations

import numpy as np
import pytest

import engram

CASES: list[tuple] = []

# ==== similarity ====

# ==== end similarity ====

# ==== spread ====

# ==== end spread ====

# ==== decay ====

# ==== end decay ====


@pytest.mark.parametrize("case_id, build, exc, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, build, exc, words, c_backend):
    """``build()`` returns (fn, args, kwargs, arrays that must not change)."""
    fn, args, kwargs, guarded = build()
    before = [np.array(a, copy=True) for a in guarded]
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    for a, b in zip(guarded, before):
        assert a.tobytes() == b.tobytes(), "an array was written before the error"
