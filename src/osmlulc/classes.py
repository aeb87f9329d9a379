"""The land use / land cover class table (``config/classes.yaml``) that drives every stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml


@dataclass(frozen=True)
class LandClass:
    code: int
    name: str
    corine: tuple[int, ...]
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class ClassTable:
    """Ordered class table.  Models output one probability per class in this order."""

    classes: tuple[LandClass, ...]
    nodata: int = 0
    water: int | None = None  # the water class (the table's `water` key): water layers and metrics

    def water_code(self, override: int | None = None) -> int:
        """The water class code: ``override`` if given, else the table's ``water``."""
        code = self.water if override is None else int(override)
        if code is None:
            raise ValueError("class table: no water class; name its code under `water` in the class table")
        if code not in [c.code for c in self.classes]:
            raise ValueError(f"class table: water code {code} is not a class code of the table")
        return code

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ClassTable":
        with open(path) as f:
            return cls.from_dict(yaml.safe_load(f))

    @classmethod
    def from_config(cls, config: dict) -> "ClassTable":
        """The class table that a workflow config names (its ``classes`` key: the path of the table's YAML)."""
        return cls.from_yaml(config["classes"])

    @classmethod
    def from_dict(cls, data: dict) -> "ClassTable":
        classes = tuple(
            LandClass(int(c["code"]), str(c["name"]), tuple(int(x) for x in c.get("corine", [])), tuple(c["colour"]))
            for c in data["classes"]
        )
        codes = [c.code for c in classes]
        nodata = int(data.get("nodata", 0))
        water = int(data["water"]) if data.get("water") is not None else None
        if len(set(codes)) != len(codes):
            raise ValueError(f"class table: duplicate class codes in {codes}")
        if nodata in codes:
            raise ValueError(f"class table: nodata value {nodata} is also a class code")
        if not all(1 <= c <= 254 for c in codes):
            raise ValueError(f"class table: class codes must be within 1..254, got {codes}")
        if water is not None and water not in codes:
            raise ValueError(f"class table: water = {water} is not a class code of the table {codes}")
        return cls(classes, nodata, water)

    @property
    def codes(self) -> np.ndarray:
        return np.array([c.code for c in self.classes], dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.classes)

    def name(self, code: int) -> str:
        return {c.code: c.name for c in self.classes}[int(code)]

    def index_of_code(self) -> np.ndarray:
        """Lookup array: code -> position in the table (-1 for nodata / unknown)."""
        lut = np.full(256, -1, dtype=np.int16)
        lut[self.codes] = np.arange(len(self.classes))
        return lut

    def corine_lookup(self) -> np.ndarray:
        """Lookup array: CORINE level-3 code (0..999) -> class code (nodata where unmapped)."""
        lut = np.full(1000, self.nodata, dtype=np.uint8)
        for c in self.classes:
            lut[list(c.corine)] = c.code
        return lut

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        cmap = {i: (0, 0, 0, 0) for i in range(256)}
        for c in self.classes:
            cmap[c.code] = (*c.colour, 255)
        return cmap

    def names_tags(self) -> dict[str, str]:
        return {f"CLASS_{c.code}": c.name for c in self.classes}
