"""Print, as JSON, mem_mb and runtime of every rule of the workflow in the cwd for attempts 1 and 2, with the
cluster profile's default-resources and set-resources applied as snakemake applies them (tests/test_resources.py).

Usage: python rule_resources.py PROFILE_CONFIG CONFIGFILE...
"""
import asyncio
import json
import sys
from pathlib import Path

import yaml
from snakemake.api import SnakemakeApi
from snakemake.cli import parse_set_resources
from snakemake.resources import Resources
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

profile = yaml.safe_load(open(sys.argv[1]))
overwrite = parse_set_resources([f"{rule}:{k}={v}"
                                 for rule, res in profile["set-resources"].items() for k, v in res.items()])
defaults = Resources.parse([f"{k}={v}" for k, v in profile["default-resources"].items()], allow_expressions=True)
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1, overwrite_resources=overwrite,
                                                         default_resources=defaults),
                      config_settings=ConfigSettings(configfiles=[Path(f) for f in sys.argv[2:]]),
                      storage_settings=StorageSettings(), snakefile=Path("Snakefile"), workdir=Path("."))
    out = {}
    for rule in wf._workflow.rules:
        if rule.name == "all":
            continue
        out[rule.name] = {}
        for name in ("mem_mb", "runtime"):
            res = rule.resources.get(name)
            values = []
            for attempt in (1, 2):
                if res is None:
                    values.append(None)
                    continue
                r = res.evaluate({}, input=[], threads=4, attempt=attempt, rulename=rule.name, async_run=asyncio.run)
                values.append(r.value)
            out[rule.name][name] = values
    print("RESOURCES " + json.dumps(out))
