"""Full JSON-schema validation of STAC items without the network: :class:`LocalSchemas`."""

import json
import os

from pystac.validation.stac_validator import JsonSchemaSTACValidator

from conftest import ROOT

SCHEMAS = os.path.join(ROOT, "tests", "data", "stac_schemas")


class LocalSchemas(JsonSchemaSTACValidator):
    """A pystac validator that reads schemas only from disk: pystac's own copy of the core STAC schemas and the
    extension schemas of tests/data/stac_schemas/<name>/<version>/schema.json (see its README.md)."""

    def __init__(self):
        super().__init__()
        for name in sorted(os.listdir(SCHEMAS)):
            if not os.path.isdir(os.path.join(SCHEMAS, name)):
                continue
            for version in sorted(os.listdir(os.path.join(SCHEMAS, name))):
                with open(os.path.join(SCHEMAS, name, version, "schema.json")) as f:
                    self.schema_cache[f"https://stac-extensions.github.io/{name}/{version}/schema.json"] = json.load(f)

    def _get_schema(self, schema_uri):
        if schema_uri not in self.schema_cache:
            raise AssertionError(f"no local copy of the schema {schema_uri}: add it to tests/data/stac_schemas")
        return self.schema_cache[schema_uri]
