from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.validate import TileInputs, check_tile_inputs, check_tile_inputs_or_record_missing

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    inputs = TileInputs(
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
        composite_record=snakemake.input.get("composite_record"),
    )
    table = ClassTable.from_dict(snakemake.params.classes)
    # Not recorded as a param on purpose: a good tile's record is the same either way (switching it reruns nothing).
    if p.allow_missing_tiles.value:
        check_tile_inputs_or_record_missing(inputs, table, snakemake.output[0], step=snakemake.rule,
                                            min_valid_fraction=p.min_valid_fraction)
    else:
        check_tile_inputs(inputs, table, snakemake.output[0], min_valid_fraction=p.min_valid_fraction)
