from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.predict import predict_tile_superpixels

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile, model=w.model):
    predict_tile_superpixels(snakemake.input.probabilities, snakemake.input.segments,
                             ClassTable.from_dict(snakemake.params.classes), snakemake.output[0])
