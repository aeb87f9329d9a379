#!/usr/bin/env bash
# Runs inside the new conda environment, in the working directory of snakemake (the workflow's
# directory, whose Snakefile may be a link into the project): install osmlulc, without dependencies
# (the environment file holds them). Snakemake copies environment files into .snakemake/conda/,
# so a relative `-e ../` in the file's pip section would point to the wrong place.
set -euo pipefail
project=$(dirname "$(readlink -f Snakefile)")
python -m pip install --no-deps --editable "$project"  # editable: the rules always run the checkout's code
