"""Every code block in README.md and docs/*.md runs, so the docs cannot rot.

```python blocks of one file run in order in one fresh interpreter (they may
build on each other); every line of a ```sh block runs as a shell command.
```text blocks are output or diagrams and are not run.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(path, lang):
    return [body for kind, body in FENCE.findall(path.read_text()) if kind == lang]


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def test_every_doc_has_runnable_blocks():
    for path in DOCS:
        found = FENCE.findall(path.read_text())
        assert all(kind in ("python", "sh", "text") for kind, _ in found), path.name
        assert any(kind in ("python", "sh") for kind, _ in found), f"{path.name} has nothing to run"


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "python")], ids=lambda p: p.name)
def test_python_blocks(path):
    program = "\n".join(
        f"exec(compile({body!r}, '{path.name} block {i + 1}', 'exec'))"
        for i, body in enumerate(blocks(path, "python"))
    )
    r = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=clean_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


SH_LINES = [(p, line) for p in DOCS for body in blocks(p, "sh")
            for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("path, line", SH_LINES, ids=[f"{p.name}: {l[:50]}" for p, l in SH_LINES])
def test_sh_lines(path, line):
    r = subprocess.run(["bash", "-c", line], cwd=ROOT, env=clean_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
