"""Text from outside (log messages, config values, STAC fields) made inert for the Snakemake report.

The report's front page is a Jinja template rendered to reStructuredText and then to HTML: a
message holding ``{% endraw %}{{ ... }}`` would run during ``snakemake --report``, and reST
markup such as ```x <javascript:...>`_`` would become a live link.  :func:`rst_text`
backslash-escapes every ASCII punctuation character (reST shows ``\\X`` as ``X``), so the text
appears literally, no markup is recognised and no Jinja delimiter (``{%``, ``%}``, ``{{``,
``}}``, ``{#``, ``#}``) survives; line breaks become spaces.
"""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def rst_text(text) -> str:
    """``text`` (any value, shown by its str) as inert inline reStructuredText on one line."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
