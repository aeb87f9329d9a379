"""osmlulc: OSM-labelled Sentinel-2 land use / land cover mapping."""
__version__ = "0.1.0"
