import shapely

from osmlulc.io import scratch_file
from osmlulc.logs import run_logged
from osmlulc.footprints import clip_to_footprint
from osmlulc.predict import unclipped_tile_confidence

w, inp = snakemake.wildcards, snakemake.input
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile), \
        scratch_file(snakemake.output[0]) as scratch:
    # the product model's probabilities, or what the ensemble's one pass wrote (confidence, segment sums)
    confidence = unclipped_tile_confidence(scratch, probabilities_path=inp.get("probabilities"),
                                           confidence_path=inp.get("confidence"), segments_path=inp.get("segments"),
                                           segment_sums_path=inp.get("segment_sums"))
    # no class table: the confidence layer is continuous (nodata 0)
    clip_to_footprint(confidence, shapely.from_wkt(snakemake.params.footprint), snakemake.output[0], None)
