import shapely

from osmlulc.io import scratch_file
from osmlulc.logs import run_logged
from osmlulc.footprints import clip_to_footprint
from osmlulc.predict import tile_confidence

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile), \
        scratch_file(snakemake.output[0]) as confidence:
    tile_confidence(snakemake.input.probabilities, confidence, segments_path=snakemake.input.get("segments"))
    # no class table: the confidence layer is continuous (nodata 0)
    clip_to_footprint(confidence, shapely.from_wkt(snakemake.params.footprint), snakemake.output[0], None)
