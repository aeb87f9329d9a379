# Input functions and helpers of the rules in rules/report.smk (snakemake --lint: no rules and functions in one file).

from osmlulc.coverage import coverage_rst
from osmlulc.io import atomic_output


def report_description():
    """The report's front page: the page of the last run (write_report_description), else report/workflow.rst."""
    return str(REPORT_PAGE.resolve() if REPORT_PAGE.exists() else REPORT_DIR / "workflow.rst")


def write_report_description():
    """report/workflow.rst plus the coverage of the products and the run status of the run (failed tiles), for
    `snakemake --report`.

    Written by the onsuccess/onerror handlers (rules/validate.smk), after the run status; loading the
    workflow (also a dry run or --lint) writes nothing.
    """
    status = run_status_rst({cc: run_status_path(cc) for cc in config["run_countries"]})
    # the share of each country the products classify, fill from labels or leave nodata, and why
    coverage = {cc: output_file(rules.product_coverage.output[0], country=cc) for cc in config["run_countries"]}
    status = f"{coverage_rst(coverage)}\n{status}"
    text = (REPORT_DIR / "workflow.rst").read_text()
    # raw: a message from a log must not be read as a Jinja template.
    with atomic_output(REPORT_PAGE) as tmp:
        tmp.write_text(f"{text}\n\n{{% raw %}}\n{status}\n{{% endraw %}}\n")


def quicklook_products(country):
    """Final products that get a quicklook: product name -> kind (classes or continuous)."""
    products = {"classified_sieved": "classes", "confidence": "continuous"}
    products.update({f"lu{code}_sieved": "classes" for code in PRODUCT["land_use"]})
    if has_valid_observations(country):
        products["valid_observations"] = "continuous"
    return products


def get_stac_item_inputs(wildcards):
    """Optional inputs of a country's STAC item: its valid-observations layer and the tiles' STAC manifests."""
    inputs = {"manifests": get_tile_manifests(wildcards), "composite_records": get_composite_records(wildcards)}
    if has_valid_observations(wildcards.country):
        inputs["valid_observations"] = output_file(
            rules.valid_observations_product.output[0], country=wildcards.country
        )
    return inputs


def trains_resnet(country):
    return "resnet" in MODELS and not country_cfg(country)["models"].get("resnet")


def report_targets(country):
    """Everything of a country that the report shows, and the STAC item."""
    targets = [output_file(rules.quicklook.output[0], country=country, product=p) for p in quicklook_products(country)]
    targets += [
        output_file(rules.confusion_plot.output[0], country=country, assessment="validation"),
        output_file(rules.run_config.output[0], country=country),
        output_file(rules.stac_item.output[0], country=country),
        output_file(rules.product_coverage.output[0], country=country),
    ]
    if has_reference(country):
        targets.append(output_file(rules.confusion_plot.output[0], country=country, assessment="reference"))
    if has_valid_observations(country):
        targets.append(output_file(rules.observations_histogram.output[0], country=country))
    if trains_resnet(country):
        targets.append(output_file(rules.training_curves.output[0], country=country))
    return targets


def all_targets(wildcards=None):
    """Everything `snakemake` builds. The input function of the `all` rule, as with allow_missing_tiles the
    tiles of the products are known once their checks ran."""
    targets = []
    for country in config["run_countries"]:
        targets.append(output_file(rules.sieve_classified.output[0], country=country))
        targets += expand(rules.sieve_land_use.output[0], country=country, code=PRODUCT["land_use"])
        targets += expand(rules.ndwi.output[0], country=country, tile=product_tiles_of(country))
        targets.append(output_file(rules.validation_accuracy.output.table, country=country))
        targets.append(output_file(rules.sample_summary.output[0], country=country))  # per-class counts
        if has_reference(country):
            targets.append(output_file(rules.accuracy.output.table, country=country))
        targets += report_targets(country)  # rules/report.smk: quicklooks, plots, config, STAC item
    return targets
