from osmlulc.logs import run_logged
from osmlulc.segmentation import segment_tile

w, p = snakemake.wildcards, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile) as log:
    n = segment_tile(
        snakemake.input.stack,
        p.rgb_bands,
        snakemake.output.segments,
        snakemake.output.centroids,
        spacing=p.spacing,
        compactness=p.compactness,
        block_size=p.block_size,
        colour_space=p.colour_space,
        method=p.method,
        threads=snakemake.threads,
    )
    log.info("%d superpixels (%s)", n, p.method)
