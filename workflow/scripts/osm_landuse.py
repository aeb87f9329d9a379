from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.osm import OsmClassTable, extract_landuse

with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country):
    table = OsmClassTable.from_yaml(snakemake.input.table, ClassTable.from_dict(snakemake.params.classes))
    extract_landuse(snakemake.input.pbf, snakemake.output[0], table)
