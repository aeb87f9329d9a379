# Input functions and helpers of the rules in rules/demo.smk (snakemake --lint: no rules and functions in one file).

from osmlulc.demo.dates import demo_date_names
from osmlulc.demo.spec import demo_output_paths


def demo_outputs(country):
    return demo_output_paths(country_cfg(country), config["demo"]["tiles"], STACK_ORDER)


def demo_products(country, tile):
    """The demo tile's dated products (rule demo_dates), one folder per date."""
    return [f"resources/demo/{country}/products/{tile}/{name}" for name in demo_date_names(config["demo"], tile)]


def demo_clear_bands(country, tile):
    """The demo tile's cloud-free bands (made by rule demo_data) as band -> path, from which its dated products are made."""
    return {b: country_cfg(country)["bands"].format(tile=tile, band=b) for b in TILE_BANDS}
