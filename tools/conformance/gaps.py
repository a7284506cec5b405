"""API gaps: ``multiprocessing.*`` names the suite uses that resolve in the stdlib but not in ours.

A name missing at import time of ``test._test_multiprocessing`` (a class body
reading ``multiprocessing.util.X``) makes *every* test of a module error, so
one missing attribute hides everything behind it.  This scan reads the test
sources statically (``multiprocessing.a.b`` attribute chains,
``from multiprocessing.a import b``, ``import multiprocessing.a``) and
resolves every name under both implementations in the venv, listing what
ours lacks -- all at once, with the line that uses it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence

from .venv import Venv, clean_env

SCANNER = r'''
import ast, importlib, json, sys

def dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None

def aliases(tree):
    """Module-level names bound to multiprocessing things: ``from multiprocessing import util``."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.Try):
            body = node.body
        else:
            body = [node]
        for stmt in body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0 and (
                    stmt.module == "multiprocessing" or stmt.module.startswith("multiprocessing.")):
                for alias in stmt.names:
                    names[alias.asname or alias.name] = stmt.module + "." + alias.name
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname and alias.name.startswith("multiprocessing"):
                        names[alias.asname] = alias.name
    return names

def references(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    bound = aliases(tree)
    refs = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = dotted(node)
            if chain:
                root, _, rest = chain.partition(".")
                if root in bound:
                    chain = bound[root] + "." + rest
            if chain and chain.startswith("multiprocessing."):
                refs.setdefault(chain, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
                node.module == "multiprocessing" or node.module.startswith("multiprocessing.")):
            for alias in node.names:
                if alias.name != "*":
                    refs.setdefault(node.module + "." + alias.name, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("multiprocessing."):
                    refs.setdefault(alias.name, node.lineno)
    return refs

def resolve(name):
    parts = name.split(".")
    obj = importlib.import_module(parts[0])
    done = parts[0]
    for part in parts[1:]:
        if hasattr(obj, part):
            obj = getattr(obj, part)
        else:
            try:
                obj = importlib.import_module(done + "." + part)
            except ImportError as exc:
                return "missing: %s has no %s (%s)" % (done, part, exc.__class__.__name__)
            except Exception as exc:
                return "error importing %s.%s: %r" % (done, part, exc)
        done += "." + part
    return None

out = {}
for path in sys.argv[1:]:
    for name, line in sorted(references(path).items()):
        try:
            problem = resolve(name)
        except Exception as exc:
            problem = "error: %r" % (exc,)
        out.setdefault(name, {"where": "%s:%d" % (path.rsplit("/", 1)[-1], line), "problem": problem})
print(json.dumps(out))
'''


def scan(venv: Venv, impl: str, sources: Sequence[Path]) -> Dict[str, Dict[str, object]]:
    proc = subprocess.run(
        [str(venv.python), "-c", SCANNER, *map(str, sources)],
        capture_output=True,
        text=True,
        env=clean_env(impl),
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"API scan under {impl} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gaps(stdlib: Dict[str, Dict[str, object]], ours: Dict[str, Dict[str, object]]) -> List[Dict[str, object]]:
    """Names that resolve with the stdlib and not with ours; a missing parent hides its children."""
    missing = sorted(
        name for name, info in ours.items() if info["problem"] and name in stdlib and not stdlib[name]["problem"]
    )
    out = []
    for name in missing:
        if any(name.startswith(m + ".") for m in missing if m != name):
            continue
        out.append({"name": name, "where": ours[name]["where"], "problem": ours[name]["problem"]})
    return out


def test_sources(venv: Venv) -> List[Path]:
    test_dir = venv.stdlib / "test"
    paths = [test_dir / "_test_multiprocessing.py", test_dir / "test_multiprocessing_main_handling.py"]
    return [p for p in paths if p.exists()]
