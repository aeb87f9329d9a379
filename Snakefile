# osmlulc: national land use / land cover and surface water maps from Sentinel-2 + OpenStreetMap.
# `snakemake --cores 2` builds the embedded demo country; see README.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/functions/inputs.smk"
include: "rules/inputs.smk"
include: "rules/functions/validate.smk"
include: "rules/validate.smk"
include: "rules/functions/demo.smk"
include: "rules/demo.smk"
include: "rules/functions/features.smk"
include: "rules/features.smk"
include: "rules/segmentation.smk"
include: "rules/functions/samples.smk"
include: "rules/samples.smk"
include: "rules/functions/training.smk"
include: "rules/training.smk"
include: "rules/functions/prediction.smk"
include: "rules/prediction.smk"
include: "rules/functions/postprocessing.smk"
include: "rules/postprocessing.smk"
include: "rules/functions/accuracy.smk"
include: "rules/accuracy.smk"
include: "rules/functions/report.smk"
include: "rules/report.smk"


report: report_description()


rule all:
    input:
        all_targets,
    default_target: True
