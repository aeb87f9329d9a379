"""Logging for workflow steps: one log file per rule instance, and one-line errors for bad input."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time

from osmlulc.io import InputError

log = logging.getLogger("osmlulc")


@contextlib.contextmanager
def run_logged(log_path: str | os.PathLike, step: str, **where):
    """Log the step to ``log_path``; on bad input, say what and where in one line and fail.

    ``where`` (e.g. country, tile) is added to the error line, so a user sees which rule
    and which tile to fix without reading a traceback.
    """
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    context = " ".join(f"{k}={v}" for k, v in where.items())
    started = time.perf_counter()
    log.info("start %s %s", step, context)
    try:
        yield log
    except InputError as err:
        line = f"osmlulc: {step} ({context}): {err}"
        log.error(line)
        print(line, file=sys.stderr)
        raise SystemExit(1) from None
    except Exception:
        log.exception("%s (%s) failed", step, context)
        raise
    else:
        log.info("done %s in %.1f s", step, time.perf_counter() - started)
    finally:
        log.removeHandler(handler)
        handler.close()
