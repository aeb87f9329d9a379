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


def _imported_modules(tree: ast.AST, package: str, module: str = "", is_package: bool = False) -> set[str]:
    """Names (dotted, without the package prefix) of the package's modules that ``tree`` imports, anywhere in it.

    ``module`` is the importing module's own name (``""`` for a script outside the package, ``"demo.dates"``
    for ``osmlulc/demo/dates.py``, ``"demo"`` with ``is_package`` for ``osmlulc/demo/__init__.py``): relative
    imports are resolved against it.  Importing a module of a subpackage imports the subpackage too (its
    ``__init__``), and ``from X import name`` may name a module of X: every candidate is returned,
    :func:`modules_used` keeps those that are files.
    """
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package (or a parent of it)
                here = _containing_package(module, is_package)
                base = here[:len(here) - (node.level - 1)]
                targets = [[package, *base, *((node.module or "").split(".") if node.module else [])]]
            else:
                targets = [(node.module or "").split(".")]
            names = [alias.name for alias in node.names]
        else:
            continue
        for parts in targets:
            if parts[0] != package:
                continue
            inner = parts[1:]
            for i in range(1, len(inner) + 1):  # the module and every subpackage above it
                found.add(".".join(inner[:i]))
            found.update(".".join([*inner, name]) for name in names)
    return found


def _containing_package(module: str, is_package: bool) -> list[str]:
    """Parts of the package (within ours) that ``module`` belongs to: itself for a package's ``__init__``."""
    if module in ("", "__init__"):
        return []
    parts = module.split(".")
    return parts if is_package else parts[:-1]


def module_path(name: str, pkg_dir: str | os.PathLike) -> Path | None:
    """The file of module ``name`` (dotted, in the package; ``__init__``: the package's own), or None."""
    pkg_dir = Path(pkg_dir)
    if name == "__init__":
        return pkg_dir / "__init__.py"
    parts = name.split(".")
    as_module = pkg_dir.joinpath(*parts[:-1], f"{parts[-1]}.py")
    if as_module.exists():
        return as_module
    as_package = pkg_dir.joinpath(*parts, "__init__.py")
    return as_package if as_package.exists() else None


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


def direct_imports(script: str | os.PathLike, pkg_dir: str | os.PathLike | None = None) -> list[str]:
    """Sorted names of the package modules (or subpackages) that ``script`` imports itself, not transitively."""
    pkg_dir = Path(pkg_dir) if pkg_dir is not None else package_dir()
    names = _imported_modules(ast.parse(Path(script).read_text(), filename=str(script)), PACKAGE)
    return sorted(n for n in names if module_path(n, pkg_dir) is not None)


def modules_used(script: str | os.PathLike, pkg_dir: str | os.PathLike | None = None) -> list[str]:
    """Sorted names of the package modules that ``script`` uses, transitively (``__init__`` always)."""
    pkg_dir = Path(pkg_dir) if pkg_dir is not None else package_dir()
    todo = _imported_modules(ast.parse(Path(script).read_text(), filename=str(script)), PACKAGE)
    seen = {"__init__"}
    while todo:
        name = todo.pop()
        path = module_path(name, pkg_dir)
        if name in seen or path is None:  # a name imported from a package, not a module
            continue
        seen.add(name)
        todo |= _imported_modules(_module_tree(str(path)), PACKAGE, name, path.name == "__init__.py") - seen
    return sorted(seen)


#: Data files a module reads from its own folder (importlib.resources), e.g. demo/endmembers.csv.
DATA_SUFFIXES = (".csv", ".json", ".yaml")


def data_files(modules: list[str], pkg_dir: str | os.PathLike) -> list[Path]:
    """The data files in the folders of the package's subpackages among ``modules`` (sorted)."""
    pkg_dir = Path(pkg_dir)
    folders = {module_path(name, pkg_dir).parent for name in modules} - {pkg_dir}
    return sorted(p for folder in folders for p in folder.iterdir() if p.suffix in DATA_SUFFIXES)


def code_hash(modules: list[str], pkg_dir: str | os.PathLike | None = None) -> str:
    """A hash of the modules' code (their syntax trees, so comments and formatting do not count) and of
    the data files of the subpackages they belong to."""
    pkg_dir = Path(pkg_dir) if pkg_dir is not None else package_dir()
    digest = hashlib.sha256()
    for name in sorted(modules):
        digest.update(name.encode())
        digest.update(ast.dump(_module_tree(str(module_path(name, pkg_dir)))).encode())
    for path in data_files(modules, pkg_dir):
        digest.update(path.relative_to(pkg_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_version(script: str | os.PathLike, pkg_dir: str | os.PathLike | None = None) -> str:
    """``<package version>+<hash>`` of the package code that ``script`` runs (see the module docstring)."""
    import osmlulc

    return f"{osmlulc.__version__}+{code_hash(modules_used(script, pkg_dir), pkg_dir)}"
