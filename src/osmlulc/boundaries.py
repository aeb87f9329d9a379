"""Country boundaries: the outline a country's products are clipped to and its tiles are checked against.

:func:`read_boundary` reads any OGR vector file (it must have a CRS), repairs its geometries, keeps the
areal parts and unites them into one prepared geometry in the CRS asked for; users are
:mod:`osmlulc.footprints` (the clip of the country mosaic), :mod:`osmlulc.validate` (does a tile
overlap the country) and :mod:`osmlulc.mgrs` (the tiles of a country).
"""

from __future__ import annotations

import os

import fiona
import fiona.errors
import fiona.transform
import shapely
from shapely.geometry import Polygon, shape

from osmlulc.io import InputError


def read_boundary(boundary_path: str | os.PathLike, dst_crs):
    """The union of all (multi)polygons of a vector file, reprojected to ``dst_crs``."""
    try:
        with fiona.open(boundary_path) as layer:
            if layer.crs is None or not layer.crs:
                raise InputError(f"boundary {boundary_path} has no CRS; save it with one (e.g. EPSG:4326)")
            geometries = []
            for feature in layer:
                if feature.geometry is None:
                    continue
                projected = fiona.transform.transform_geom(layer.crs, dst_crs.to_wkt(), feature.geometry)
                geometries.append(shape(projected))
    except (fiona.errors.FionaError, fiona.errors.DriverError, OSError) as err:
        raise InputError(f"boundary {boundary_path} cannot be read as a vector file ({err})") from None
    # Repair self-intersections etc. and keep only the areal parts.
    polygons = [shapely.make_valid(g) for g in geometries if not g.is_empty]
    polygonal = [p for g in polygons for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    boundary = shapely.union_all(polygonal) if polygonal else Polygon()
    if boundary.is_empty or boundary.area <= 0:
        raise InputError(f"boundary {boundary_path} contains no polygon with an area; it must be the country outline")
    shapely.prepare(boundary)
    return boundary
