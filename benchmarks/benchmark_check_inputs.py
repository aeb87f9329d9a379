"""Time of the per-tile input check (rule check_inputs) against the first rule that reads the same files.

Generates a one-tile demo country at --size px (10 m; 20 m bands at half the size), then times
osmlulc.validate.check_tile_inputs (header checks + a full read of every block of all 10 bands +
label and boundary checks) and osmlulc.features.resample_to_grid of the six 20 m bands.  Prints a table.

    python benchmarks/benchmark_check_inputs.py --size 2196
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from osmlulc.classes import ClassTable
from osmlulc.demo.country import generate_demo_country
from osmlulc.demo.spec import demo_tile_grid
from osmlulc.features import resample_to_grid
from osmlulc.validate import TileInputs, check_tile_inputs

ROOT = Path(__file__).resolve().parents[1]
BANDS = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20}
TILE = "32UNU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1098, help="tile edge in 10 m pixels (real tiles: 10980)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.gettempdir()) / f"osmlulc-check-benchmark-{args.size}"
    spec = {"tile_size_px": args.size, "tile_spacing_px": args.size, "utm_epsg": 32632, "origin": [499980, 5400000],
            "tiles": {TILE: [0, 0]}, "bands": BANDS, "osm_coverage": 0.6, "osm_wrong_fraction": 0.03,
            "nodata_corner": {"tile": TILE, "size_px": 0}}
    table = ClassTable.from_yaml(ROOT / "config" / "classes.yaml")
    bands = {b: str(work / TILE / f"{b}.tif") for b in BANDS}
    if not all(Path(p).exists() for p in bands.values()):
        generate_demo_country(spec, table, seed=1, band_paths={TILE: bands},
                              truth_tile_paths={TILE: str(work / "t.tif")},
                              truth_country_path=str(work / "t3035.tif"), label_path=str(work / "label.tif"),
                              boundary_path=str(work / "boundary.geojson"))
    inputs = TileInputs(country="XT", tile=TILE, bands=bands, resolution=BANDS, reference="B02",
                        label_raster=str(work / "label.tif"), boundary=str(work / "boundary.geojson"), training=True,
                        grid=demo_tile_grid(spec)[TILE])
    rows = []
    started = time.perf_counter()
    check_tile_inputs(inputs, table, work / "out" / "inputs_ok.json")
    rows.append(("check_inputs (10 bands, full read)", time.perf_counter() - started))
    started = time.perf_counter()
    for band, res in BANDS.items():
        if res == 20:
            resample_to_grid(bands[band], bands["B02"], work / "out" / f"{band}_10m.tif", band_resolution=20)
    rows.append(("resample (6 bands 20 -> 10 m)", time.perf_counter() - started))
    mpx = args.size ** 2 / 1e6
    print(f"tile {args.size} x {args.size} px ({mpx:.1f} Mpx at 10 m)")
    print(f"{'stage':40s} {'s':>8s} {'Mpx/s':>8s}")
    for name, seconds in rows:
        print(f"{name:40s} {seconds:8.2f} {mpx / seconds:8.1f}")


if __name__ == "__main__":
    main()
