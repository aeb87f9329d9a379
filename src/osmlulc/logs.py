"""Logging for workflow steps: one log file per rule instance, and one-line errors for bad input.

The lines :func:`run_logged` writes and their parsers stand side by side here: the start line, the
completion line, the one-line error of bad input and the line of any other failure.
:func:`osmlulc.run_status.failures_in_logs` reads the logs through :func:`parse_start`,
:func:`parse_error` and :func:`is_done` only, so a change of a message changes its parser with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time

from osmlulc.io import InputError

log = logging.getLogger("osmlulc")

#: Every line of a rule's log: time, level, message.
LINE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def context_text(where: dict) -> str:
    """``where`` (country, tile, ...) as the ``key=value`` words of the log lines."""
    return " ".join(f"{k}={v}" for k, v in where.items())


def parse_context(text: str) -> dict:
    """The ``where`` of :func:`context_text` back from its words."""
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def start_message(step: str, context: str) -> str:
    """The first line of a step's log: what runs where, and GDAL's cache size."""
    return f"start {step} {context} (GDAL_CACHEMAX {os.environ.get('GDAL_CACHEMAX', 'GDAL default')})"


def done_message(step: str, seconds: float) -> str:
    """The last line of a step that finished."""
    return f"done {step} in {seconds:.1f} s"


def input_error_message(step: str, context: str, err) -> str:
    """The one-line error of bad input (also printed to stderr)."""
    return f"osmlulc: {step} ({context}): {err}"


def failed_message(step: str, context: str) -> str:
    """The error line of any other exception (its traceback follows)."""
    return f"{step} ({context}) failed"


_START_LINE = re.compile(r" INFO start (?P<rule>\S+) ?(?P<where>[^(]*)\(GDAL_CACHEMAX")
_DONE_LINE = re.compile(r" INFO done \S+ in [\d.]+ s$")
_ERROR_LINE = re.compile(r" ERROR (?:osmlulc: (?P<rule>\S+) \((?P<where>[^)]*)\): (?P<message>.*)"
                         r"|(?P<rule2>\S+) \((?P<where2>[^)]*)\) failed)$")


def parse_start(line: str) -> dict | None:
    """rule and where (a dict) of a :func:`start_message` log line; None for another line."""
    match = _START_LINE.search(line)
    return {"rule": match["rule"], "where": parse_context(match["where"])} if match else None


def is_done(line: str) -> bool:
    """Whether a log line is the :func:`done_message` of a finished step."""
    return _DONE_LINE.search(line) is not None


def parse_error(line: str) -> dict | None:
    """rule, where (a dict) and message of an :func:`input_error_message` log line, or of a
    :func:`failed_message` line (message None: the traceback follows); None for another line."""
    match = _ERROR_LINE.search(line)
    if not match:
        return None
    if match["rule"]:
        return {"rule": match["rule"], "where": parse_context(match["where"]), "message": match["message"]}
    return {"rule": match["rule2"], "where": parse_context(match["where2"]), "message": None}


@contextlib.contextmanager
def run_logged(log_path: str | os.PathLike, step: str, **where):
    """Log the step to ``log_path``; on bad input, say what and where in one line and fail.

    ``where`` (e.g. country, tile) is added to the error line, so a user sees which rule
    and which tile to fix without reading a traceback.
    """
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    context = context_text(where)
    started = time.perf_counter()
    log.info(start_message(step, context))
    try:
        yield log
    except InputError as err:
        line = input_error_message(step, context, err)
        log.error(line)
        print(line, file=sys.stderr)
        raise SystemExit(1) from None
    except Exception:
        log.exception(failed_message(step, context))
        raise
    else:
        log.info(done_message(step, time.perf_counter() - started))
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
