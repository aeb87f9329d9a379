from osmlulc.classifiers import write_ensemble
from osmlulc.logs import run_logged

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country) as log:
    members = {m: snakemake.input[m] for m in snakemake.params.weights}
    write_ensemble(members, dict(snakemake.params.weights), snakemake.output[0])
    log.info("ensemble of %s", {m: (members[m], w) for m, w in snakemake.params.weights.items()})
