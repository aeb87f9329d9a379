"""Composite benchmark: speed and peak memory of rule composite on full-size tiles, median and medoid.

    nice -n 19 python benchmarks/benchmark_composite.py                   # 5 products of 10980 px
    python benchmarks/benchmark_composite.py --size 2196 --products 3     # quick check

Writes ``--products`` synthetic L2A products of one tile (folders of tiled, compressed band GeoTIFFs
at their native 10 / 20 m, their SCL and an MTD_MSIL2A.xml; clouds and shadows of a smooth random
field covering ``--cloud-cover`` of each date, half of the dates of baseline 04.00 with their
offset) into ``--workdir`` (cached), then composites them with ``osmlulc.composite.composite_products``
(the rule's function, config.yaml's bands, masks, ``composite.memory_mb`` and ``gdal_cache_mb``) once
per method, each in a fresh Python process; its peak resident memory is the child's ``ru_maxrss`` (``os.wait4``).
Prints a table: seconds, Mpx/s per product (tile pixels x products / s), peak RSS (must stay under
3 GB), valid observations.  Not run by CI.
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
TILE = "32UNU"
RSS_LIMIT_GB = 3.0


def load_settings():
    """The workflow's settings (osmlulc.settings: config/config.yaml, the schema's defaults filled in)."""
    from osmlulc.settings import workflow_settings

    return workflow_settings(ROOT)


def tile_bands(settings) -> dict:
    """band -> native resolution of the bands a composite writes (rule composite: the reference and the stack)."""
    return {b: settings.bands["resolution"][b] for b in settings.tile_bands}


def write_products(workdir: Path, size: int, n: int, cover: float, seed: int = 11) -> list[str]:
    """The tile's products (cached: a product folder with its MTD file is complete)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from osmlulc.demo.dates import CLOUD_REFLECTANCE, _cloud_field, _cloud_threshold, _mtd_msil2a
    from osmlulc.demo.noise import value_noise
    from osmlulc.io import atomic_output, block_windows, raster_profile

    bands = tile_bands(load_settings())
    left, top = 499980.0, 5400000.0
    paths = []
    for k in range(n):
        day = f"202006{5 + 5 * k:02d}"
        baseline = "04.00" if k % 2 else "02.14"
        add = 1000 if k % 2 else 0
        folder = workdir / f"S2A_MSIL2A_{day}T103031_N{baseline.replace('.', '')}_R108_T{TILE}_{day}T120000"
        paths.append(str(folder))
        if (folder / "MTD_MSIL2A.xml").exists():
            continue
        rng = np.random.default_rng([seed, k])
        salts = rng.integers(0, 2**63, size=2, dtype=np.uint64)
        threshold = _cloud_threshold(cover, salts)
        started = time.perf_counter()
        with atomic_output(folder) as tmp:
            tmp.mkdir()
            dsts = {}
            for band, res in list(bands.items()) + [("SCL", 20)]:
                f = res // 10
                dsts[band] = rasterio.open(tmp / f"T{TILE}_{day}_{band}.tif", "w", **raster_profile(
                    crs="EPSG:32632", transform=from_origin(left, top, res, res), width=-(-size // f),
                    height=-(-size // f), dtype="uint8" if band == "SCL" else "uint16",
                    nodata=None if band == "SCL" else 0))
            for window in block_windows(size, size, 2048):
                r0, c0, h, w = window.row_off, window.col_off, window.height, window.width
                gx = np.arange(c0, c0 + w, dtype=np.int64)
                gy = np.arange(r0, r0 + h, dtype=np.int64)
                cloud = _cloud_field(gx, gy, salts) > threshold
                surface = value_noise(gx, gy, 40.0, np.uint64(3)) + 0.3 * value_noise(gx, gy, 5.0, np.uint64(5))
                for i, (band, res) in enumerate(bands.items()):
                    f = res // 10
                    value = (1500 + 300 * i + 600 * surface[::f, ::f]) * (1.0, 0.97, 1.03, 0.99, 1.01)[k % 5]
                    value = np.where(cloud[::f, ::f], CLOUD_REFLECTANCE.get(band, 7000), value)
                    dsts[band].write((np.clip(value, 1, 60000) + add).astype(np.uint16), 1,
                                     window=Window(c0 // f, r0 // f, -(-w // f), -(-h // f)))
                scl = np.where(cloud, 9, 4).astype(np.uint8)[::2, ::2]
                dsts["SCL"].write(scl, 1, window=Window(c0 // 2, r0 // 2, scl.shape[1], scl.shape[0]))
            for dst in dsts.values():
                dst.close()
            (tmp / "MTD_MSIL2A.xml").write_text(_mtd_msil2a(baseline, -add))
        print(f"product {k + 1}/{n} written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return paths


def child(args) -> None:
    """One composite (in its own process): prints its seconds and the observation statistics as JSON."""
    import rasterio

    from osmlulc.composite import composite_products

    settings = load_settings()
    config, bands = settings.config, tile_bands(settings)
    out = Path(args.workdir) / f"composite_{args.method}"
    started = time.perf_counter()
    composite_products(TILE, products=json.loads(args.products), bands=bands,
                       reference_band=settings.bands["reference"],
                       band_outputs={b: out / f"{b}.tif" for b in bands},
                       valid_observations=out / "valid_observations.tif", valid_mask=out / "valid_mask.tif",
                       method=args.method, memory_mb=args.memory_mb or config["composite"]["memory_mb"],
                       mask_settings=config["sentinel2"])
    seconds = time.perf_counter() - started
    with rasterio.open(out / "valid_observations.tif") as src:
        count = src.read(1)
    print(json.dumps({"seconds": seconds, "mean_obs": float(count.mean()), "no_obs": float((count == 0).mean())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--products", type=int, default=5)
    parser.add_argument("--cloud-cover", type=float, default=0.3)
    parser.add_argument("--memory-mb", type=float, default=None, help="composite.memory_mb (default: config.yaml's)")
    parser.add_argument("--methods", nargs="+", default=["median", "medoid"])
    parser.add_argument("--workdir", default=str(ROOT / ".benchmark_composite"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--products-json", dest="products_json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.products = args.products_json
        return child(args)
    workdir = Path(args.workdir) / f"{args.size}px"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    products = write_products(workdir, args.size, args.products, args.cloud_cover)
    print(f"{args.products} products of {args.size} px ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows = []
    for method in args.methods:
        cmd = [sys.executable, __file__, "--child", "--method", method, "--workdir", str(workdir),
               "--products-json", json.dumps(products)]
        cmd += ["--memory-mb", str(args.memory_mb)] if args.memory_mb else []
        # As every workflow job: GDAL's block cache bounded by the config (gdal_cache_mb), not 5 % of the machine.
        env = {**os.environ, "GDAL_CACHEMAX": str(load_settings().config["gdal_cache_mb"])}
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        out = process.stdout.read()
        if status != 0:
            raise SystemExit(f"composite {method} failed with status {status}")
        result = json.loads(out.strip().splitlines()[-1])
        rss_gb = usage.ru_maxrss / 1024**2
        mpx = args.size**2 * args.products / 1e6
        rows.append((method, result["seconds"], mpx / result["seconds"], rss_gb, result["mean_obs"], result["no_obs"]))
    print(f"\ncomposite of {args.products} products of {args.size} x {args.size} px (10 bands + SCL mask), "
          f"cloud cover {args.cloud_cover:.0%} per date, {os.cpu_count()} CPUs")
    print("| method | seconds | Mpx/s per product | peak RSS (GB) | mean valid obs. | no valid obs. |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method, seconds, rate, rss, mean_obs, no_obs in rows:
        flag = "" if rss < RSS_LIMIT_GB else f" (over {RSS_LIMIT_GB} GB!)"
        print(f"| {method} | {seconds:.0f} | {rate:.2f} | {rss:.2f}{flag} | {mean_obs:.2f} | {no_obs:.2%} |")


if __name__ == "__main__":
    main()
