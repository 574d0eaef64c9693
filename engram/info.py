"""The configuration ``python -m engram info`` prints."""
from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> str:
    """NumPy's BLAS: name, version and the kernel it picked (via threadpoolctl if installed)."""
    import numpy as np

    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # NumPy < 1.26 has no mode="dicts"
        text = "unknown"
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                text += f" (kernel {pool.get('architecture', '?')}, {pool.get('num_threads')} threads)"
                break
    except ImportError:
        pass
    return text


def collect() -> dict:
    import numpy as np

    import engram

    return {
        "engram": engram.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_model(),
        "backend": engram.backend_info(),
        "simd": engram.simd_info(),
        "arena": engram.arena.config(),
        "threads": engram.get_num_threads(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("ENGRAM_")},
    }


def format_info() -> str:
    d = collect()
    b, s, a = d["backend"], d["simd"], d["arena"]
    lines = [
        f"engram {d['engram']}  (Python {d['python']}, {d['platform']})",
        f"cpu:      {d['cpu']}",
        f"backend:  {b['active']} (default {b['default']}; available: {', '.join(b['available'])})",
    ]
    if b["c_core_error"]:
        lines.append(f"          C core not loaded: {b['c_core_error']}")
    lines += [
        f"simd:     active {s['active']}; detected {', '.join(s['detected']) or '-'}; "
        f"compiled {', '.join(s['compiled']) or '-'}",
        f"arena:    {a['size']} bytes per thread ({a['size'] / 2**20:g} MiB), "
        f"overflow={a['overflow']}, zero_on_reset={a['zero_on_reset']}",
        f"threads:  {d['threads']} for large calls ({d['cores']} cores)",
        f"numpy:    {d['numpy']}, BLAS {d['blas']}",
        "env:      " + (", ".join(f"{k}={v}" for k, v in sorted(d["env"].items())) or "(no ENGRAM_* set)"),
    ]
    return "\n".join(lines)
