from osmlulc.classes import ClassTable
from osmlulc.demo.country import generate_demo_country
from osmlulc.logs import run_logged

p = snakemake.params
with run_logged(snakemake.log[0], snakemake.rule, country=p.country):
    tiles = list(p.spec["tiles"])
    generate_demo_country(
        dict(p.spec),
        ClassTable.from_dict(snakemake.params.classes),
        band_paths={t: {b: p.band_pattern.format(tile=t, band=b) for b in p.spec["bands"]} for t in tiles},
        truth_tile_paths={t: p.reference["tile"].format(tile=t) for t in tiles},
        truth_country_path=p.reference["country"],
        label_path=snakemake.output.label,
        boundary_path=snakemake.output.boundary,
        seed=p.spec["seed"],
    )
