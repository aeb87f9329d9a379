"""Reused model files are code: joblib unpickles them and Keras may run what they hold.

A model named in a country's ``models:`` can carry its SHA-256 (``{path, sha256}``):
:func:`verified_copy` reads the file once, checks the digest and writes exactly the bytes it
checked to the workflow's own copy, which is what prediction loads (a file changed after the
check is never loaded).  A mismatch fails in one line before anything is loaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from osmlulc.io import InputError, atomic_output


def reused_model(entry) -> tuple[str, str | None]:
    """(path, sha256 or None) of a ``models:`` entry: a path, or ``{path, sha256}``."""
    if isinstance(entry, dict):
        return entry["path"], entry["sha256"].lower()
    return entry, None


def verified_copy(path: str | os.PathLike, sha256: str, out: str | os.PathLike) -> None:
    """Copy ``path`` to ``out`` if its SHA-256 is ``sha256``; a one-line error (and no ``out``) otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"model {path} cannot be read ({err.strerror}); fix countries.<CC>.models") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256.lower():
        raise InputError(f"model {path} has SHA-256 {digest}, not the configured {sha256.lower()}; "
                         "not loaded (a model file is code: use only files you trust)")
    with atomic_output(out) as tmp:
        Path(tmp).write_bytes(data)
