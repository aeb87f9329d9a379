from osmlulc.classes import ClassTable
from osmlulc.coverage import product_area
from osmlulc.io import open_raster
from osmlulc.labels import labels_onto_grid
from osmlulc.logs import run_logged
from osmlulc.validate import missing_tiles

i, p = snakemake.input, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    # product.fill_gaps_with_labels: labels wherever the product may have a class (inside the boundary, not in
    # a missing tile), gaps of the classification included, so product_merge can fill them; else where the
    # classification has a class.
    area = None
    if p.fill_gaps:
        with open_raster(i.grid, "grid raster") as grid:
            area = product_area(i.boundary, p.footprints, missing_tiles(i.get("tiles_passed")), grid.crs)
    labels_onto_grid(i.labels, i.grid, snakemake.output[0], ClassTable.from_dict(p.classes),
                     coding=p.coding, area=area)
