from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.predict import predict_superpixels_from_sums, predict_tile_superpixels

w, inp = snakemake.wildcards, snakemake.input
table = ClassTable.from_dict(snakemake.params.classes)
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile, model=w.model):
    if inp.get("segment_sums"):  # the ensemble: the sums its one pass wrote, no probability raster
        predict_superpixels_from_sums(inp.segment_sums, inp.segments, inp.confidence, table, snakemake.output[0])
    else:
        predict_tile_superpixels(inp.probabilities, inp.segments, table, snakemake.output[0])
