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
    log.info("start %s %s (GDAL_CACHEMAX %s)", step, context, os.environ.get("GDAL_CACHEMAX", "GDAL default"))
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


def progress(items, what: str, *, every_s: float = 10.0):
    """Yield from ``items`` (a sized sequence), logging "what: i/n (p %), elapsed, eta" at most every ``every_s`` s
    and at the end, so long raster loops show how far they are in their rule's log."""
    total = len(items)
    started = last = time.perf_counter()
    for i, item in enumerate(items, start=1):
        yield item
        now = time.perf_counter()
        if now - last >= every_s or i == total:
            last = now
            elapsed = now - started
            log.info("%s: %d/%d (%.0f %%), %.0f s, about %.0f s left", what, i, total, 100 * i / total, elapsed,
                     elapsed / i * (total - i))
