"""What an output depends on besides its input files: the library code a rule's script runs.

Snakemake's ``code`` rerun trigger covers a rule's own script, not the package it calls. A rule's
``version`` param is :func:`code_version` of its script: the package version plus a hash of the
package modules the script imports, directly or through other package modules. A change of such a
module (its code, not its comments or layout) changes the param, so Snakemake's ``params`` trigger
reruns exactly the rules whose code changed.
"""

from __future__ import annotations

import ast
import hashlib
import os
from functools import lru_cache
from pathlib import Path

PACKAGE = "osmlulc"


def _imported_modules(tree: ast.AST, package: str) -> set[str]:
    """Names (without the package prefix) of the package's modules that ``tree`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 1 and node.module:  # from .io import x (inside the package)
                found.add(parts[0])
            elif node.level == 1 or (parts[0] == package and len(parts) == 1):  # from . / from osmlulc import io
                found.update(alias.name for alias in node.names)
            elif parts[0] == package:
                found.add(parts[1])
    return found


def _module_tree(path: str) -> ast.AST:
    stat = os.stat(path)
    return _parsed(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=None)
def _parsed(path: str, mtime_ns: int, size: int) -> ast.AST:  # keyed by the file's state: an edit is seen
    return ast.parse(Path(path).read_text(), filename=path)


def package_dir() -> Path:
    """The directory of the package that is imported (the code that the jobs run)."""
    import osmlulc

    return Path(osmlulc.__file__).resolve().parent


def modules_used(script: str | os.PathLike, pkg_dir: str | os.PathLike | None = None) -> list[str]:
    """Sorted names of the package modules that ``script`` uses, transitively (``__init__`` always)."""
    pkg_dir = Path(pkg_dir) if pkg_dir is not None else package_dir()
    todo = _imported_modules(ast.parse(Path(script).read_text(), filename=str(script)), PACKAGE)
    seen = {"__init__"}
    while todo:
        name = todo.pop()
        path = pkg_dir / f"{name}.py"
        if name in seen or not path.exists():  # a name imported from __init__, not a module
            continue
        seen.add(name)
        todo |= _imported_modules(_module_tree(str(path)), PACKAGE) - seen
    return sorted(seen)


def code_hash(modules: list[str], pkg_dir: str | os.PathLike | None = None) -> str:
    """A hash of the modules' code: their syntax trees, so comments and formatting do not count."""
    pkg_dir = Path(pkg_dir) if pkg_dir is not None else package_dir()
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode())
        digest.update(ast.dump(_module_tree(str(pkg_dir / f"{name}.py"))).encode())
    return digest.hexdigest()[:16]


def code_version(script: str | os.PathLike, pkg_dir: str | os.PathLike | None = None) -> str:
    """``<package version>+<hash>`` of the package code that ``script`` runs (see the module docstring)."""
    import osmlulc

    return f"{osmlulc.__version__}+{code_hash(modules_used(script, pkg_dir), pkg_dir)}"
