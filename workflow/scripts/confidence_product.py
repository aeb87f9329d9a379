from osmlulc.io import write_as_cog
from osmlulc.logs import run_logged
from osmlulc.footprints import clip_to_boundary

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    # table None: a continuous layer (no colour table); overviews averaged, not picked.
    write_as_cog(
        snakemake.output[0],
        lambda tmp: clip_to_boundary(snakemake.input.mosaic, snakemake.input.boundary, tmp, None),
        resampling="average",
    )
