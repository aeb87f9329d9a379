from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.selection import build_ensemble

p = snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country) as log:
    members = {m: snakemake.input[m] for m in p.settings["members"]}
    table = ClassTable.from_dict(p.classes)
    chosen = build_ensemble(members, snakemake.input.validation, table, p.settings, p.index_definitions,
                            snakemake.output[0], rotations=p.rotations,
                            train_path=snakemake.input.train, seed=p.seed)
    log.info("ensemble weights %s, water decision %s (chosen on the validation samples: %s)", chosen["weights"],
             chosen["water"], chosen["selection"])
