"""Deterministic generator of an embedded demo "country" that exercises the whole method.

Modules: :mod:`.spec` (the ``demo:`` config section, tile grid), :mod:`.surfaces` (feature kinds, spectra,
OSM labels), :mod:`.landscape` (vector geometry), :mod:`.noise` (position-hashed noise), :mod:`.render`
(tile and country rasters), :mod:`.country` (outline; :func:`~.country.generate_demo_country`, the entry
point) and :mod:`.dates` (dated products with synthetic clouds).

The demo replaces the downloads of a real run (Sentinel-2 L2A tiles, an OSM land-use
label raster, a country outline and a reference land-cover map) with synthetic but
realistic stand-ins, so the workflow can be run and tested end to end offline.

A landscape is defined once as vector geometry in UTM coordinates over the union of the
tiles (land-use zones from a coarse Voronoi partition: agricultural areas split into
field parcels of a few hectares, forest and scrub stands, pasture, towns with a street
grid, industrial blocks and parks; main roads; a meandering river with a tributary;
lakes with wetland fringes).  Every feature gets an id; each output grid is rasterized
to feature ids with :func:`rasterio.features.rasterize`, and class codes, OSM labels and
reflectances are looked up from the ids.  Textures and sensor noise are hash functions of
the global 10 m pixel position, so overlapping tiles agree exactly.

Outputs (see :func:`generate_demo_country`):

* per tile and band: a single-band uint16 GeoTIFF of surface reflectance x 10000
  (nodata 0, values >= 1), 10 m bands at 10 m, 20 m bands as 2 x 2 block means;
* per tile: the ground truth (uint8 class codes, nodata 0 where the bands are nodata);
* the ground truth on an EPSG:3035 10 m grid covering the union of tiles;
* an OSM-like label raster on the same grid: only part of the parcels, a few wrong;
* a GeoJSON country outline (EPSG:4326) that cuts through the tiles.

The ``spec`` dictionary (``demo:`` section of the config)::

    tile_size_px: 1098        # tile edge in 10 m pixels (real MGRS: 10980; 1:10 scale)
    tile_spacing_px: 1000     # grid step between neighbouring tiles (-> 98 px overlap)
    utm_epsg: 32632           # CRS of the tiles
    origin: [499980, 5400000] # upper-left (x, y) of the tile at grid position [0, 0]
    tiles: {32UNU: [0, 0], 32UPU: [1, 0], 32UNV: [0, 1]}
                              # tile id -> [column east, row north];
                              # tile upper-left = origin + (col, row) * spacing * 10 m
    bands: {B02: 10, B03: 10, B04: 10, B08: 10, B05: 20, B06: 20, B07: 20, B8A: 20,
            B11: 20, B12: 20} # band -> resolution in m (10 or 20)
    osm_coverage: 0.6         # fraction of land parcels present in the OSM label raster
    osm_wrong_fraction: 0.03  # fraction of included OSM land parcels with a wrong class
    nodata_corner: {tile: 32UPU, size_px: 150}
                              # triangle of this size in a corner of the tile is nodata

Optional keys: ``nodata_corner.corner`` (``upper_right`` (default), ``upper_left``,
``lower_left``, ``lower_right``), ``osm_water_coverage`` (0.95: lakes and rivers are
almost always mapped in OSM), ``osm_road_coverage`` (0.9), ``country_name`` ("Demoland"),
``osm_border_shift_px`` (0: OSM polygon borders wander from the true ones by up to this many px,
smoothly along each border, as hand-digitised polygons and a misregistered image do).

The OSM label is noisy the way real OSM land use is, so the demo can tell a good training
procedure from a bad one: parcels unmapped (whole areas mapped with less effort), a share
mis-tagged with a plausible wrong class, borders shifted by 1-2 px, and mixed pixels at every
border (the sensor's point-spread function blends neighbouring surfaces in the image).
"""
