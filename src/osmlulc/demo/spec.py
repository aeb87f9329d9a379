"""The demo spec (the ``demo:`` section of the config, see :mod:`osmlulc.demo`) and the demo tile grid."""

from __future__ import annotations

from dataclasses import dataclass

#: Pixel size of the tile grid (m).
PIXEL_M = 10.0
#: CRS of the country-wide truth and label rasters.
COUNTRY_CRS = "EPSG:3035"
#: Bands the demo can synthesize, in wavelength order.
BAND_ORDER = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")




@dataclass(frozen=True)
class DemoSpec:
    """Parsed and validated ``spec``."""

    size: int
    spacing: int
    crs: str
    origin: tuple[float, float]
    tiles: dict[str, tuple[int, int]]
    bands: dict[str, int]
    osm_coverage: float
    osm_wrong_fraction: float
    osm_water_coverage: float
    osm_road_coverage: float
    nodata_tile: str
    nodata_size: int
    nodata_corner: str
    country_name: str
    osm_border_shift_px: int = 0

    def tile_offset_px(self, tile: str) -> tuple[int, int]:
        """(column, row) of the tile's upper-left pixel on the global 10 m grid (rows grow southwards)."""
        col, row = self.tiles[tile]
        return col * self.spacing, -row * self.spacing

    def tile_ul(self, tile: str) -> tuple[float, float]:
        gx, gy = self.tile_offset_px(tile)
        return self.origin[0] + gx * PIXEL_M, self.origin[1] - gy * PIXEL_M

    def tile_bounds(self, tile: str) -> tuple[float, float, float, float]:
        left, top = self.tile_ul(tile)
        extent = self.size * PIXEL_M
        return left, top - extent, left + extent, top


def parse_spec(spec: dict) -> DemoSpec:
    """Validate the demo spec with messages that name the offending key."""
    required = ("tile_size_px", "tile_spacing_px", "utm_epsg", "origin", "tiles", "bands", "osm_coverage",
                "osm_wrong_fraction", "nodata_corner")
    missing = [k for k in required if k not in spec]
    if missing:
        raise ValueError(f"demo spec: missing keys {missing}")
    size, spacing = int(spec["tile_size_px"]), int(spec["tile_spacing_px"])
    if size < 64 or spacing <= 0:
        raise ValueError(f"demo spec: need tile_size_px >= 64 and tile_spacing_px > 0, got {size} and {spacing}")
    tiles = {str(t): (int(cr[0]), int(cr[1])) for t, cr in dict(spec["tiles"]).items()}
    if not tiles:
        raise ValueError("demo spec: tiles is empty")
    bands = {str(b): int(r) for b, r in dict(spec["bands"]).items()}
    unknown = [b for b in bands if b not in BAND_ORDER]
    if unknown:
        raise ValueError(f"demo spec: unknown bands {unknown}; known: {list(BAND_ORDER)}")
    bad_res = {b: r for b, r in bands.items() if r not in (10, 20)}
    if bad_res:
        raise ValueError(f"demo spec: band resolutions must be 10 or 20 m, got {bad_res}")
    corner = dict(spec["nodata_corner"])
    if corner.get("tile") not in tiles:
        raise ValueError(f"demo spec: nodata_corner.tile {corner.get('tile')!r} is not one of the tiles {list(tiles)}")
    corner_name = str(corner.get("corner", "upper_right"))
    if corner_name not in ("upper_left", "upper_right", "lower_left", "lower_right"):
        raise ValueError(f"demo spec: nodata_corner.corner must be upper_left/upper_right/lower_left/lower_right, "
                         f"got {corner_name!r}")
    fractions = {k: float(spec.get(k, d)) for k, d in (("osm_coverage", None), ("osm_wrong_fraction", None),
                                                         ("osm_water_coverage", 0.95), ("osm_road_coverage", 0.9))}
    bad = {k: v for k, v in fractions.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"demo spec: fractions must be within 0..1, got {bad}")
    return DemoSpec(
        size=size, spacing=spacing, crs=f"EPSG:{int(spec['utm_epsg'])}",
        origin=(float(spec["origin"][0]), float(spec["origin"][1])), tiles=tiles, bands=bands,
        osm_coverage=fractions["osm_coverage"], osm_wrong_fraction=fractions["osm_wrong_fraction"],
        osm_water_coverage=fractions["osm_water_coverage"], osm_road_coverage=fractions["osm_road_coverage"],
        nodata_tile=str(corner["tile"]), nodata_size=int(corner.get("size_px", 0)), nodata_corner=corner_name,
        country_name=str(spec.get("country_name", "Demoland")),
        osm_border_shift_px=int(spec.get("osm_border_shift_px", 0)),
    )


def demo_tile_grid(spec: dict) -> dict[str, dict]:
    """tile id -> {"crs": "EPSG:<utm_epsg>", "bounds": [left, bottom, right, top]} (10 m grid) from the spec."""
    s = parse_spec(spec)
    return {t: {"crs": s.crs, "bounds": [float(v) for v in s.tile_bounds(t)]} for t in s.tiles}


#: Where rule demo_data may write: paths from the config must not point elsewhere.
DEMO_ROOT = "resources/demo/"


def demo_output_paths(country: dict, tiles, bands) -> dict:
    """The files rule demo_data writes for a demo ``country`` (its config) over ``tiles`` and ``bands``."""
    outputs = {
        "label": country["label_raster"],
        "boundary": country["boundary"],
        "bands": [country["bands"].format(tile=t, band=b) for t in tiles for b in bands],
    }
    if "reference" in country:
        outputs["truth_tiles"] = [country["reference"]["tile"].format(tile=t) for t in tiles]
        outputs["truth_country"] = country["reference"]["country"]
    return outputs


def check_demo_outputs(code: str, outputs: dict) -> None:
    """Refuse (one line) a demo output outside ``resources/demo/``: the demo rule writes where the config says."""
    import posixpath

    from osmlulc.io import InputError

    for key, paths in outputs.items():
        for path in [paths] if isinstance(paths, str) else paths:
            normal = posixpath.normpath(str(path).replace("\\", "/"))
            if not (normal + "/").startswith(DEMO_ROOT) or normal.startswith("/"):
                raise InputError(f"countries.{code}: demo output {path} ({key}) is not under {DEMO_ROOT}; "
                                 f"the demo writes only there")
