"""The thread-local scratch arena every kernel call allocates from.

Each thread that calls a kernel gets its own 64-byte-aligned block
(``ENGRAM_ARENA_SIZE``, default 2 MiB) handed out by bumping a pointer and
reset in bulk after every call.  A call that needs more either takes the
rest from the heap (``overflow="heap"``, the default: freed at reset and
counted in ``stats()["total"]["overflows"]``) or raises ``MemoryError``
(``overflow="raise"``).  A thread's block is freed when the thread exits.
"""
from __future__ import annotations

import os

try:
    from . import _core
except Exception:  # engram/__init__ has warned already
    _core = None

__all__ = ["configure", "config", "stats", "reset_stats", "parse_size"]

DEFAULT_SIZE = 2 << 20
MIN_SIZE = 64 << 10
MAX_SIZE = 1 << 30

# what configure() keeps when the C core is missing (nothing allocates then)
_fallback_config = {"size": DEFAULT_SIZE, "overflow": "heap", "zero_on_reset": False}


def parse_size(text: str | int) -> int:
    """Bytes from ``"2M"``, ``"4MiB"``, ``"512k"`` or ``"1048576"`` (binary units).

    Raises ValueError outside 64 KiB to 1 GiB.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if not MIN_SIZE <= text <= MAX_SIZE:
            raise ValueError(f"arena size must be between 64 KiB and 1 GiB, got {text} bytes")
        return text
    if not isinstance(text, str):
        raise TypeError(f"arena size must be an int or a str like '2M', got {type(text).__name__}")
    try:
        return _size_from_text(text)
    except ValueError as exc:
        raise ValueError(f"arena size {exc}") from None


def _size_from_text(text: str) -> int:
    """Bytes from text, or ValueError("'<text>' is not a size ...")."""
    if _core is not None and text.isascii():  # no size has other characters (nor surrogates)
        return _core._parse_size(text)
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kmg]?)(?:i?b)?\s*", text, re.IGNORECASE | re.ASCII)
    if not m:
        raise ValueError(f"{text!r} is not a size (expected bytes, or a number with K/M/G, "
                         "e.g. '2M' or '4MiB')")
    value = int(float(m.group(1)) * 1024 ** " kmg".index(m.group(2).lower() or " "))
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise ValueError(f"{text!r} is outside 64 KiB to 1 GiB ({value} bytes)")
    return value


def configure(size: int | str | None = None, overflow: str | None = None,
              zero_on_reset: bool | None = None) -> dict:
    """Set the arena size of every thread, the overflow policy, zeroing on reset.

    ``size`` in bytes or as text (``"4MiB"``), 64 KiB to 1 GiB; it takes
    effect in each thread at its next kernel call.  ``overflow`` is
    ``"heap"`` or ``"raise"``.  Arguments left as None keep their value.
    Returns the new configuration.
    """
    current = config()
    new_size = current["size"] if size is None else parse_size(size)
    new_overflow = current["overflow"] if overflow is None else overflow
    if not isinstance(new_overflow, str):
        raise TypeError(f"overflow must be 'heap' or 'raise', got {type(new_overflow).__name__}")
    if new_overflow not in ("heap", "raise"):
        raise ValueError(f"overflow must be 'heap' or 'raise', got {new_overflow!r}")
    zero = current["zero_on_reset"] if zero_on_reset is None else bool(zero_on_reset)
    if _core is None:
        _fallback_config.update(size=new_size, overflow=new_overflow, zero_on_reset=zero)
    else:
        _core._arena_configure(new_size, new_overflow, zero)
    return config()


def config() -> dict:
    """``{"size", "overflow", "zero_on_reset"}`` as configured now."""
    if _core is None:
        return dict(_fallback_config)
    return _core._arena_config()


def stats() -> dict:
    """``{"threads": [per live thread], "total": {...}}``.

    Each entry has capacity, in_use, high_water, allocations, overflows,
    overflow_bytes, resets (per thread also ``thread_id`` ==
    ``threading.get_ident()`` of its owner).  The total covers exited
    threads too; its high_water is the largest of any thread.
    """
    if _core is None:
        zero = dict(capacity=0, in_use=0, high_water=0, allocations=0, overflows=0,
                    overflow_bytes=0, resets=0)
        return {"threads": [], "total": zero}
    return _core._arena_stats()


def reset_stats() -> None:
    """Zero the counters of every arena (high water restarts from what is in use)."""
    if _core is not None:
        _core._arena_reset_stats()


def _apply_environment(warn) -> None:
    text = os.environ.get("ENGRAM_ARENA_SIZE", "").strip()
    if not text:
        return
    try:
        size = _size_from_text(text)
    except ValueError as exc:
        warn(f"ENGRAM_ARENA_SIZE={exc}; using the default {DEFAULT_SIZE >> 20} MiB")
        return
    configure(size=size)
