from osmlulc.coverage import count_nodata_causes, write_coverage_table
from osmlulc.logs import run_logged
from osmlulc.validate import missing_tiles

i, p = snakemake.input, snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=snakemake.wildcards.country) as log:
    missing = missing_tiles(i.get("tiles_passed"))
    counts = count_nodata_causes(i.classified, i.product, i.boundary, p.footprints, missing)
    write_coverage_table(counts, p.pixel_area_m2, snakemake.output[0])
    log.info("pixels per cause: %s", counts)
