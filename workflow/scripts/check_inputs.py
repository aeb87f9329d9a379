from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.validate import TileInputs, check_tile_inputs

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    check_tile_inputs(
        TileInputs(
            country=w.country,
            tile=w.tile,
            bands=dict(zip(p.band_names, snakemake.input.bands)),
            resolution=p.resolution,
            reference=p.reference,
            label_raster=snakemake.input.get("label_raster"),
            boundary=snakemake.input.boundary,
            label_coding=p.label_coding,
            training=p.training,
            grid=p.grid,
            hints=p.hints,
        ),
        ClassTable.from_yaml(snakemake.config["classes"]),
        snakemake.output[0],
        min_valid_fraction=p.min_valid_fraction,
    )
