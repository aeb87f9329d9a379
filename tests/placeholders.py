"""Empty stand-ins for a country's user-provided files, for dry runs without the data (tests, benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path


def touch_placeholder_inputs(workdir: str | os.PathLike, country: dict, bands: list[str]) -> list[Path]:
    """Create empty stand-ins for a country's user-provided files, for a dry run without the data.

    Snakemake needs every input that no rule makes (band files, label raster) to exist, even in
    ``snakemake -n``; planning a country's job graph away from its data (a laptop, CI, a
    benchmark) needs placeholders.  Existing files are left alone.  Returns the paths created.
    """
    workdir = Path(workdir)
    paths = [country["bands"].format(tile=tile, band=band) for tile in country["tiles"] for band in bands]
    paths += [country[key] for key in ("label_raster",) if key in country]
    created = []
    for relative in paths:
        path = workdir / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            created.append(path)
    return created
