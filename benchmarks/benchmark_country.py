"""Country-scale benchmark: the post-processing chain of a 70-tile country (Germany), stage by stage.

    python benchmarks/benchmark_country.py --size 1098         # 1/10 of a tile's edge per tile
    python benchmarks/benchmark_country.py --size 2196         # 1/5
    python benchmarks/benchmark_country.py --size 10980        # real tiles (hours, tens of GB of scratch)

The tiles are Germany's 70 Sentinel-2 tiles (``config/countries/DE.yaml``) on their real MGRS grids
(``osmlulc.mgrs``: UTM zones 31, 32 and 33), each with a synthetic classified raster, confidence and
valid-observation count of ``--size`` px per edge (so a pixel is 10 * 10980 / size m); the country
products are made at that pixel size too, so every raster has (size / 10980)^2 of its real pixel count.
A synthetic label mosaic (EPSG:3035, ~30 % of the pixels labelled) stands in for the OSM labels.

Then the country chain as the workflow's rules run it (rules/postprocessing.smk), through the same
library functions, each stage in a fresh process whose peak resident memory is its ``ru_maxrss``
(``os.wait4``): extent clip of every tile (own footprints), merge to EPSG:3035 (bounds of all tiles),
boundary clip, label transfer, product merge, land-use extraction, sieve and COG with overviews of the
classified map and the water layer, and the confidence and valid-observation mosaics (clip, merge,
boundary clip, COG). A workflow runs the per-tile clips as one job per tile; here one process clips
all 70 in turn (its peak is the largest tile's, plus anything that leaks from tile to tile).

Not run by CI. Results: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["synthetic", "clip_extent", "clip_continuous", "merge", "clip_boundary", "label_transfer",
          "product_merge", "extract_land_use", "sieve_classified", "sieve_land_use", "merge_confidence",
          "confidence_product", "merge_valid_observations", "valid_observations_product"]


def settings():
    """The workflow's settings with config/countries/DE.yaml (osmlulc.settings): tile grids, own footprints and
    the mosaic's bounds as the rules get them."""
    from osmlulc.settings import workflow_settings

    return workflow_settings(ROOT, "config/countries/DE.yaml")


class Paths:
    def __init__(self, workdir: Path, tiles: list[str]):
        self.w = workdir
        self.tiles = {t: workdir / "tiles" / t for t in tiles}
        self.label = workdir / "DE_label_3035.tif"

    def tile(self, tile: str, name: str) -> Path:
        return self.tiles[tile] / f"{name}.tif"

    def product(self, name: str) -> Path:
        return self.w / f"DE_10m_3035_{name}.tif"


def smooth_classes(rng, shape, codes, cell: int) -> np.ndarray:
    """Class codes in patches of ~``cell`` px with 2 % single-pixel speckle (work for the sieve)."""
    coarse = rng.choice(codes, size=(shape[0] // cell + 2, shape[1] // cell + 2))
    out = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:shape[0], :shape[1]]
    speckle = rng.random(shape) < 0.02
    out[speckle] = rng.choice(codes, size=int(speckle.sum()))
    return out.astype(np.uint8)


def write(path: Path, data: np.ndarray, crs, transform, table=None) -> None:
    import rasterio

    from osmlulc.io import class_profile, write_class_colormap

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **class_profile(crs, transform, data.shape[1], data.shape[0], table)) as dst:
        if table is not None:
            write_class_colormap(dst, table)
        dst.write(data, 1)


def stage_synthetic(p: Paths, size: int, s) -> dict:
    from rasterio.transform import from_origin

    rng = np.random.default_rng(23)
    table, tiles = s.classes, s.tiles("DE")
    codes = np.asarray(table.codes, dtype=np.uint8)
    grid = s.tile_grid("DE")
    for tile in tiles:
        left, bottom, right, top = grid[tile]["bounds"]
        res = (right - left) / size
        transform = from_origin(left, top, res, res)
        classes = smooth_classes(rng, (size, size), codes, max(4, size // 100))
        classes[: size // 20, :] = table.nodata    # a strip without observation
        write(p.tile(tile, "classified"), classes, grid[tile]["crs"], transform, table)
        write(p.tile(tile, "confidence"), rng.integers(40, 101, (size, size), dtype=np.uint8),
              grid[tile]["crs"], transform)
        count = rng.integers(0, 12, (size, size), dtype=np.uint8)
        count[: size // 20, :] = 0
        write(p.tile(tile, "valid_observations"), count, grid[tile]["crs"], transform)
    bounds = s.country_bounds("DE")
    res = 10 * 10980 / size
    width, height = int((bounds[2] - bounds[0]) // res) + 1, int((bounds[3] - bounds[1]) // res) + 1
    labels = np.full((height, width), table.nodata, np.uint8)
    # labelled patches on ~30 % of the country, written in strips (the label mosaic of a real country is large)
    cell = max(4, size // 50)
    for row in range(0, height, 1024):
        n = min(1024, height - row)
        block = smooth_classes(rng, (n, width), codes, cell)
        keep = np.repeat(np.repeat(rng.random((n // cell + 2, width // cell + 2)) < 0.3, cell, 0), cell, 1)
        labels[row:row + n] = np.where(keep[:n, :width], block, table.nodata)
    write(p.label, labels, "EPSG:3035", from_origin(bounds[0], bounds[3], res, res), table)
    return {"mpx": len(tiles) * size * size / 1e6}


def run_stage(name: str, p: Paths, size: int) -> dict:
    s = settings()
    table, tiles, boundary, product = s.classes, s.tiles("DE"), str(ROOT / s.country("DE")["boundary"]), s.product
    res = 10 * 10980 / size
    if name == "synthetic":
        return stage_synthetic(p, size, s)
    if name in ("clip_extent", "clip_continuous"):
        from osmlulc.footprints import clip_to_footprint

        own = s.own_footprints("DE")
        layers = [("classified", table)] if name == "clip_extent" else [("confidence", None),
                                                                          ("valid_observations", None)]
        for tile in tiles:
            for layer, t in layers:
                clip_to_footprint(p.tile(tile, layer), own[tile], p.tile(tile, f"{layer}_clipped"), t)
        return {"mpx": len(tiles) * len(layers) * size * size / 1e6}
    if name.startswith("merge"):
        from osmlulc.mosaic import merge_tiles

        layer = {"merge": "classified", "merge_confidence": "confidence",
                 "merge_valid_observations": "valid_observations"}[name]
        bounds = s.country_bounds("DE")
        merge_tiles([str(p.tile(t, f"{layer}_clipped")) for t in tiles], p.product(f"{layer}_mosaic"),
                    table if layer == "classified" else None, crs=product["crs"], resolution=res, bounds=bounds)
        return mpx_of(p.product(f"{layer}_mosaic"))
    if name == "clip_boundary":
        from osmlulc.footprints import clip_to_boundary

        clip_to_boundary(p.product("classified_mosaic"), boundary, p.product("classified_clipped"), table)
        return mpx_of(p.product("classified_clipped"))
    if name == "label_transfer":
        from osmlulc.labels import labels_onto_grid

        labels_onto_grid(p.label, p.product("classified_clipped"), p.product("label"), table, coding="classes")
        return mpx_of(p.product("label"))
    if name == "product_merge":
        from osmlulc.mosaic import merge_product

        merge_product(p.product("classified_clipped"), p.product("label"), p.product("product"), table)
        return mpx_of(p.product("product"))
    if name == "extract_land_use":
        from osmlulc.mosaic import extract_land_use

        extract_land_use(p.product("product"), product["land_use"][0], p.product("lu12"), table)
        return mpx_of(p.product("lu12"))
    if name.startswith("sieve"):
        from functools import partial

        from osmlulc.io import write_as_cog
        from osmlulc.sieve import sieve

        src, dst = {"sieve_classified": ("product", "classified_sieved"),
                    "sieve_land_use": ("lu12", "lu12_sieved")}[name]
        sv = product["sieve"]
        write_as_cog(p.product(dst), partial(sieve, p.product(src), size=sv["size"], connectivity=sv["connectivity"],
                                             halo=sv["halo_px"]))
        return mpx_of(p.product(dst))
    if name in ("confidence_product", "valid_observations_product"):
        from osmlulc.footprints import clip_to_boundary
        from osmlulc.io import write_as_cog

        layer = name.removesuffix("_product")
        write_as_cog(p.product(layer), lambda tmp: clip_to_boundary(p.product(f"{layer}_mosaic"), boundary, tmp, None),
                     resampling="average")
        return mpx_of(p.product(layer))
    raise SystemExit(f"unknown stage {name}")


def mpx_of(path) -> dict:
    import rasterio

    with rasterio.open(path) as src:
        return {"mpx": src.width * src.height / 1e6}


def child(args) -> None:
    start = time.perf_counter()
    info = run_stage(args.child, Paths(Path(args.workdir), settings().tiles("DE")), args.size)
    info["seconds"] = time.perf_counter() - start
    Path(args.result).write_text(json.dumps(info))


def run_child(name: str, args) -> dict:
    config = settings().config
    out = Path(args.workdir) / "timings" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # as rules/common.smk sets it for every job (or --gdal-cache-mb)
    env = dict(os.environ, GDAL_CACHEMAX=str(args.gdal_cache_mb or config["gdal_cache_mb"]))
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GDAL_NUM_THREADS"):
        env[var] = "1"
    cmd = [sys.executable, __file__, "--child", name, "--result", str(out), "--size", str(args.size),
           "--workdir", str(args.workdir)]
    with open(out.with_suffix(".log"), "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stage {name} failed:\n" + "\n".join(out.with_suffix(".log").read_text().splitlines()[-8:]))
    info = json.loads(out.read_text())
    info.update(name=name, process_seconds=time.perf_counter() - start, peak_rss_mb=usage.ru_maxrss / 1024)
    out.write_text(json.dumps(info))
    return info


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1098, help="tile edge in px (1098, 2196; 10980: real tiles)")
    parser.add_argument("--workdir", default=None, help="scratch (default: <tmp>/osmlulc-country-<size>)")
    parser.add_argument("--stages", default=None, help=f"comma-separated subset of {STAGES}")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--gdal-cache-mb", type=int, default=None,
                        help="GDAL_CACHEMAX (default: the config's gdal_cache_mb)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workdir is None:
        import tempfile

        args.workdir = str(Path(tempfile.gettempdir()) / f"osmlulc-country-{args.size}")
    if args.child:
        return child(args)
    stages = args.stages.split(",") if args.stages else STAGES
    results = []
    for name in stages:
        r = run_child(name, args)
        results.append(r)
        print(f"{name}: {r['seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB peak RSS, {r['mpx']:.1f} Mpx", flush=True)
    print(f"\nsize {args.size} px per tile ({10 * 10980 / args.size:g} m pixels), 70 tiles\n")
    print("| stage | Mpx | seconds | process s | peak RSS (MB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['name']} | {r['mpx']:.1f} | {r['seconds']:.1f} | {r['process_seconds']:.1f} | "
              f"{r['peak_rss_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "stages": results}, indent=1))


if __name__ == "__main__":
    main()
