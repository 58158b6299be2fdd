"""No pickle anywhere: a static check over the project's own source (an AST walk).

Pickle runs code while it loads; so do marshal's code objects and shelve (pickle underneath);
multiprocessing and concurrent.futures' process pools pickle every call and result between
processes. None of them may appear in realtime/, signaling/, media/ or clients/ (the attachment
workers speak msgpack: realtime/attachments/frames.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("realtime", "signaling", "media", "clients")
MODULES = frozenset(
    {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "copyreg"}
    | {"multiprocessing", "joblib", "concurrent.futures.process"}
)
NAMES = frozenset({"ProcessPoolExecutor", "__reduce__", "__reduce_ex__", "dumps_pickle"})


def _banned_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in MODULES)


def offences(source: str) -> list[str]:
    """What in ``source`` pickles, or may: one line per finding, with its line number."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if _banned_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if _banned_module(node.module):
                found.append(f"{line}: from {node.module} import ...")
            found += [f"{line}: import {a.name}" for a in node.names if a.name in NAMES]
            found += [
                f"{line}: from {node.module} import {a.name}"
                for a in node.names
                if _banned_module(f"{node.module}.{a.name}")
            ]
        elif isinstance(node, ast.Attribute) and node.attr in NAMES:
            found.append(f"{line}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in NAMES:
            found.append(f"{line}: {node.id}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in NAMES:
            found.append(f"{line}: def {node.name}")
        elif isinstance(node, ast.Call) and node.args:
            # __import__("pickle"), importlib.import_module("marshal")
            fn = node.func
            name = (
                fn.id
                if isinstance(fn, ast.Name)
                else fn.attr
                if isinstance(fn, ast.Attribute)
                else ""
            )
            arg = node.args[0]
            if (
                name in ("__import__", "import_module")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and _banned_module(arg.value)
            ):
                found.append(f"{line}: {name}({arg.value!r})")
    return found


def _sources() -> list[Path]:
    files = [
        p
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
        if "node_modules" not in p.parts
    ]
    assert len(files) > 50  # the walk found the project (not an empty directory)
    return files


def test_no_module_pickles() -> None:
    bad = {
        str(p.relative_to(ROOT)): found
        for p in _sources()
        if (found := offences(p.read_text(encoding="utf-8")))
    }
    assert bad == {}


def test_the_check_finds_each_way_in() -> None:
    for snippet in (
        "import pickle",
        "import pickle as p",
        "import marshal",
        "import shelve",
        "import multiprocessing.pool",
        "from multiprocessing import Pool",
        "from concurrent.futures import ProcessPoolExecutor",
        "from concurrent.futures import process",
        "import concurrent.futures\nconcurrent.futures.ProcessPoolExecutor()",
        "from concurrent import futures\nfutures.ProcessPoolExecutor(2)",
        "x = __import__('pickle')",
        "import importlib\nimportlib.import_module('marshal')",
        "class E(Exception):\n    def __reduce__(self):\n        return (E, ())",
    ):
        assert offences(snippet), snippet
    for fine in (
        "from concurrent.futures import ThreadPoolExecutor",
        "import msgspec\nmsgspec.msgpack.decode(b'')",
        "import asyncio\nasyncio.create_subprocess_exec('python', '-m', 'x')",
        "pickled = False",
    ):
        assert offences(fine) == [], fine
