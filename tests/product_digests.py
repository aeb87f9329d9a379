"""Digests of a demo run's rasters: pixels and georeferencing, so a refactor can show it changed no product.

A digest covers the decoded pixels of every band, the CRS, transform, dtype, nodata and colour table; not
the file's bytes, whose metadata (GDAL's version, a creation date) may differ between machines without
any product changing.

    python tests/product_digests.py RUN_DIR            # print {relative path: digest} of all rasters
    python tests/product_digests.py RUN_DIR --check tests/data/small_demo_digests.json

``MODEL_FREE`` names the products that no trained model touches and whose pixels do not hang on the
last bit of a float: their digests are the same across machines and library releases. Products
downstream of training are reproducible on one machine (tests/test_reproducible.py) but their last
bits may follow the CPU's vector unit and TensorFlow's build, so the stored reference
(tests/data/small_demo_digests.json) holds only the model-free ones. The SNIC superpixels are left
out too: the kernel's priority queue breaks ties on float Lab distances, and a fresh install
(2026-12-02: numpy 2.4.6, numba 0.68.1; scikit-image is not the cause) moved the segments of two of
the three small-demo tiles for an identical stack; like the model products, they are compared
between two runs in one environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import rasterio

#: Rasters of a run (relative to the run folder) whose pixels come from GDAL, numpy and scikit-image only.
MODEL_FREE = (
    r"resources/demo/.+\.tif",
    r"results/[^/]+/tiles/[^/]+/(stack_10m|ndwi|valid_observations|valid_observations_clipped|label)"
    r"\.tif",
    r"results/[^/]+/tiles/[^/]+/(composite|bands_10m)/.+\.tif",
    r"results/[^/]+/[^/]+_10m_3035_(label|valid_observations|valid_observations_mosaic)\.tif",
)


def raster_digest(path: str | Path) -> str:
    """sha256 of a raster's pixels (all bands, block by block) and georeferencing."""
    digest = hashlib.sha256()
    with rasterio.open(path) as src:
        colormap = {}
        try:
            colormap = {int(k): list(v) for k, v in src.colormap(1).items()}
        except ValueError:
            pass  # no colour table
        header = {"crs": src.crs.to_wkt() if src.crs else None, "transform": list(src.transform)[:6],
                  "shape": [src.count, src.height, src.width], "dtypes": list(src.dtypes),
                  "nodata": src.nodata, "colormap": colormap}
        digest.update(json.dumps(header, sort_keys=True).encode())
        for _, window in src.block_windows(1):
            digest.update(np.ascontiguousarray(src.read(window=window)).tobytes())
    return digest.hexdigest()


def run_rasters(run_dir: str | Path) -> dict[str, Path]:
    """Every GeoTIFF of a run below resources/ and results/, by its path relative to the run folder."""
    run_dir = Path(run_dir)
    found = {}
    for top in ("resources", "results"):
        for path in sorted((run_dir / top).rglob("*.tif")):
            found[path.relative_to(run_dir).as_posix()] = path
    return found


def is_model_free(relative: str) -> bool:
    return any(re.fullmatch(pattern, relative) for pattern in MODEL_FREE)


def digests(run_dir: str | Path, *, model_free_only: bool = False) -> dict[str, str]:
    return {rel: raster_digest(path) for rel, path in run_rasters(run_dir).items()
            if not model_free_only or is_model_free(rel)}


def compare(found: dict[str, str], reference: dict[str, str]) -> list[str]:
    """One line per product that differs from, is missing in, or is new against the reference."""
    lines = [f"{rel}: changed" for rel in sorted(set(found) & set(reference)) if found[rel] != reference[rel]]
    lines += [f"{rel}: missing from the run" for rel in sorted(set(reference) - set(found))]
    lines += [f"{rel}: not in the reference" for rel in sorted(set(found) - set(reference))]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--model-free", action="store_true", help="only the products no trained model touches")
    parser.add_argument("--check", metavar="JSON", help="compare with a stored set of digests")
    args = parser.parse_args(argv)
    if args.check:
        reference = json.loads(Path(args.check).read_text())
        found = digests(args.run_dir, model_free_only=args.model_free)
        problems = compare(found, reference)
        print("\n".join(problems) or f"{len(reference)} products identical")
        return 1 if problems else 0
    json.dump(digests(args.run_dir, model_free_only=args.model_free), sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
