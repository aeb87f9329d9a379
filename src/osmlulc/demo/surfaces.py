"""What the demo landscape is made of: feature kinds, their spectra and classes, and the OSM labels."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

import numpy as np

from osmlulc.demo.spec import BAND_ORDER, DemoSpec


def _read_endmembers() -> dict[str, tuple[int, ...]]:
    """endmembers.csv: one row per surface, a column per band of BAND_ORDER."""
    with resources.files("osmlulc.demo").joinpath("endmembers.csv").open(newline="") as f:
        return {row["surface"]: tuple(int(row[b]) for b in BAND_ORDER) for row in csv.DictReader(f)}


#: Endmember surface reflectances (x 10000) for BAND_ORDER, close to typical Sentinel-2 L2A values of
#: summer scenes in central Europe: a table of data (endmembers.csv beside this module; its content is
#: part of the code version of the rules that use this module, see osmlulc.provenance).
ENDMEMBERS = _read_endmembers()

#: Sensor noise standard deviation per band (reflectance x 10000).
SENSOR_NOISE = {"B02": 40, "B03": 40, "B04": 45, "B05": 50, "B06": 60, "B07": 60, "B08": 70, "B8A": 60, "B11": 60,
                "B12": 55}


@dataclass(frozen=True)
class FeatureKind:
    """How a kind of landscape feature looks: its class and its spectral mixture.

    A pixel's reflectance is ``(primary * (1 - f) + secondary * f) * (1 + tex * T1)`` with
    ``f = clip(f_parcel + f_amp * T2, 0, 1)``, ``f_parcel ~ U(f_lo, f_hi)`` per parcel and
    T1, T2 smooth noise fields; every parcel is also scaled by a brightness ~ N(1, bright_sd).
    """

    code: int
    primary: str
    secondary: str
    f_lo: float
    f_hi: float
    f_amp: float
    bright_sd: float
    tex: float


KINDS = {
    # arable parcels are drawn bimodally between green crop and bare soil (see feature_params)
    "arable": FeatureKind(5, "crop", "soil", 0.0, 1.0, 0.10, 0.06, 0.05),
    "pasture": FeatureKind(7, "grass", "dry_grass", 0.0, 0.35, 0.12, 0.06, 0.05),
    "forest": FeatureKind(8, "broadleaf", "conifer", 0.0, 1.0, 0.12, 0.06, 0.08),
    "scrub": FeatureKind(9, "scrub", "dry_grass", 0.0, 0.5, 0.25, 0.07, 0.08),
    "urban": FeatureKind(1, "roofs", "grass", 0.2, 0.5, 0.25, 0.08, 0.10),
    "industrial": FeatureKind(2, "concrete", "asphalt", 0.0, 0.6, 0.15, 0.08, 0.06),
    "street": FeatureKind(2, "asphalt", "roofs", 0.0, 0.3, 0.10, 0.05, 0.04),
    "road": FeatureKind(2, "asphalt", "concrete", 0.0, 0.3, 0.10, 0.05, 0.04),
    "park": FeatureKind(4, "grass", "broadleaf", 0.2, 0.7, 0.30, 0.06, 0.06),
    "wetland": FeatureKind(11, "wet_veg", "water_turbid", 0.05, 0.35, 0.20, 0.06, 0.05),
    # lakes are mostly clearer than rivers, but the ranges overlap
    "lake": FeatureKind(12, "water_clear", "water_turbid", 0.0, 0.6, 0.10, 0.05, 0.03),
    "river": FeatureKind(12, "water_clear", "water_turbid", 0.2, 0.9, 0.10, 0.05, 0.03),
}
KIND_NAMES = tuple(KINDS)
WATER_KINDS = ("lake", "river")
ROAD_KINDS = ("street", "road")

#: Plausible OSM mislabelling: class -> classes it is confused with.
WRONG_CLASSES = {1: (2, 4), 2: (1,), 4: (7, 1), 5: (7,), 7: (5, 9), 8: (9,), 9: (8, 7), 11: (7, 9), 12: (11,)}

#: Land-use zone types and their share of the zones.
ZONE_WEIGHTS = {"agri": 0.38, "forest": 0.25, "pasture": 0.13, "scrub": 0.10, "urban": 0.14}


@dataclass
class Landscape:
    """Landscape features in burn order (later features cover earlier ones).

    Feature ``i`` has raster id ``i + 1``; id 0 means "no feature".
    """

    geoms: np.ndarray  # shapely geometries, UTM
    kinds: np.ndarray  # index into KIND_NAMES
    zones: np.ndarray  # land-use zone of the feature (OSM mapping propensity is per zone)

    @property
    def codes(self) -> np.ndarray:
        kind_codes = np.array([KINDS[k].code for k in KIND_NAMES], dtype=np.uint8)
        return kind_codes[self.kinds]



@dataclass
class FeatureParams:
    """Per-id lookup tables (index 0 = no feature)."""

    primary: np.ndarray  # (n + 1, n_bands) reflectance x 10000
    secondary: np.ndarray  # (n + 1, n_bands)
    f_base: np.ndarray  # (n + 1,)
    f_amp: np.ndarray
    tex: np.ndarray
    truth: np.ndarray  # (n + 1,) uint8 class code
    osm: np.ndarray  # (n + 1,) uint8 OSM label (0 = not mapped)


def feature_params(rng, land: Landscape, bands: list[str], s: DemoSpec) -> FeatureParams:
    n = len(land.geoms)
    band_idx = [BAND_ORDER.index(b) for b in bands]
    em = {k: np.asarray(v, dtype=np.float64)[band_idx] for k, v in ENDMEMBERS.items()}
    kinds = [KINDS[KIND_NAMES[k]] for k in land.kinds]

    brightness = np.array([rng.normal(1.0, k.bright_sd) for k in kinds])
    jitter = 1.0 + rng.normal(0, 0.03, (n, len(bands)))  # per-parcel spectral shape variation
    scale = (brightness[:, None] * jitter)
    primary = np.array([em[k.primary] for k in kinds]).reshape(n, len(bands)) * scale
    secondary = np.array([em[k.secondary] for k in kinds]).reshape(n, len(bands)) * scale
    f_base = np.array([rng.uniform(k.f_lo, k.f_hi) for k in kinds])
    # arable parcels are either bare soil (ploughed, harvested) or a green crop
    arable = land.kinds == KIND_NAMES.index("arable")
    soil_like = rng.uniform(size=n) < 0.4
    f_base = np.where(arable, np.where(soil_like, rng.uniform(0.65, 1.0, n), rng.uniform(0.0, 0.35, n)), f_base)
    f_amp = np.array([k.f_amp for k in kinds])
    tex = np.array([k.tex for k in kinds])

    truth = land.codes
    osm = _osm_labels(rng, land, s)

    def with_nothing(a, fill=0):
        return np.concatenate([np.full((1,) + a.shape[1:], fill, dtype=a.dtype), a])

    return FeatureParams(with_nothing(primary), with_nothing(secondary), with_nothing(f_base), with_nothing(f_amp),
                         with_nothing(tex), with_nothing(truth.astype(np.uint8)), with_nothing(osm))


def _osm_labels(rng, land: Landscape, s: DemoSpec) -> np.ndarray:
    """OSM label per feature: whole parcels missing, a few with a plausible wrong class."""
    n = len(land.geoms)
    codes = land.codes
    kind_names = np.array(KIND_NAMES, dtype=object)[land.kinds]
    # mapping effort varies between areas (some villages mapped in detail, others not)
    zone_bias = rng.uniform(-0.25, 0.25, land.zones.max() + 1)
    p_land = np.clip(s.osm_coverage + zone_bias[land.zones], 0.02, 0.98)
    p = np.where(np.isin(kind_names, WATER_KINDS), s.osm_water_coverage,
                 np.where(np.isin(kind_names, ROAD_KINDS), s.osm_road_coverage, p_land))
    mapped = rng.uniform(size=n) < p
    wrong = mapped & ~np.isin(kind_names, WATER_KINDS) & (rng.uniform(size=n) < s.osm_wrong_fraction)
    pick = rng.uniform(size=n)
    osm = np.where(mapped, codes, 0).astype(np.uint8)
    for i in np.flatnonzero(wrong):
        options = WRONG_CLASSES[int(codes[i])]
        osm[i] = options[int(pick[i] * len(options))]
    return osm
