from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.mosaic import extract_land_use

w = snakemake.wildcards
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, code=w.code):
    extract_land_use(
        snakemake.input[0], int(w.code), snakemake.output[0], ClassTable.from_dict(snakemake.params.classes)
    )
