"""The typed stubs describe the public API as it is."""
from __future__ import annotations

import ast
import inspect
import pathlib

import engram

STUB = pathlib.Path(engram.__file__).with_name("__init__.pyi")


def stub_names() -> dict[str, ast.AST]:
    names = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            names[node.name] = node
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def test_every_public_name_has_a_stub():
    names = stub_names()
    missing = [n for n in engram.__all__ if n not in names]
    assert not missing, missing
    assert (pathlib.Path(engram.__file__).with_name("py.typed")).exists()


def test_stub_keywords_match_the_functions():
    """Keyword names in the stubs are the ones the C functions accept (from their text signatures)."""
    names = stub_names()
    for name in engram.KERNEL_NAMES:
        fn = getattr(engram, name)
        real = inspect.signature(fn)
        node = names[name]
        stub = [a.arg for a in node.args.args] + [a.arg for a in node.args.kwonlyargs]
        assert stub == list(real.parameters), (name, stub, list(real.parameters))
