from functools import partial

from osmlulc.io import write_as_cog
from osmlulc.logs import run_logged
from osmlulc.sieve import sieve

s = snakemake.params.sieve
with run_logged(snakemake.log[0], snakemake.rule, **dict(snakemake.wildcards.items())):
    write_as_cog(
        snakemake.output[0],
        partial(sieve, snakemake.input[0], size=s["size"], connectivity=s["connectivity"], halo=s["halo_px"]),
    )
