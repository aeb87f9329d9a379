"""Label cleaning before sampling: erosion of the OSM polygons and superpixel purity (:class:`LabelFilter`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from rasterio.windows import Window
from scipy import ndimage

from osmlulc.classes import ClassTable
from osmlulc.io import InputError, block_windows, open_raster

if TYPE_CHECKING:
    from osmlulc.samples import SampleSettings

log = logging.getLogger("osmlulc")


class LabelFilter:
    """Which labelled pixels of one tile may become samples: erosion and superpixel purity (:mod:`osmlulc.samples`).

    ``segments_path`` / ``centroids_path``: the tile's superpixels (rule ``snic``), needed for
    ``method: superpixel``.  The per-segment purity is computed once per tile in a windowed
    pass; it holds one label per segment (memory grows with the number of segments).
    Use as a context manager (it holds the superpixel raster open).
    """

    def __init__(self, settings: SampleSettings, label_src, table: ClassTable, segments_path=None,
                 centroids_path=None, cache: dict | None = None):
        if settings.method not in ("pixel", "superpixel"):
            raise ValueError(f"samples.method must be pixel or superpixel, got {settings.method!r}")
        if settings.superpixel_pixels not in ("centroid", "all"):
            raise ValueError(f"samples.superpixel_pixels must be centroid or all, got {settings.superpixel_pixels!r}")
        self.erosion = int(settings.erosion_px)
        self.superpixel = settings.method == "superpixel"
        self.segments = None
        self.centroid_index = None
        if not self.superpixel:
            return
        if segments_path is None:
            raise InputError(f"samples.method superpixel needs the superpixels of tile raster {label_src.name}")
        self.segments = open_raster(segments_path, "superpixel segments")
        if (self.segments.width, self.segments.height) != (label_src.width, label_src.height):
            raise InputError(f"superpixels {segments_path} are not on the grid of label raster {label_src.name}")
        # The purity pass reads the whole tile: a filter made again for the same tile (draw_samples makes one
        # per pass over it) takes it from ``cache`` (one dict per tile) instead.
        cache = {} if cache is None else cache
        if "pure_label" not in cache:
            cache["pure_label"] = self._pure_labels(label_src, table, settings.purity)
            log.info("%s: %d of %d superpixels are at least %.0f %% one OSM class", segments_path,
                     int((cache["pure_label"] > 0).sum()), len(cache["pure_label"]) - 1, 100 * settings.purity)
        self.pure_label = cache["pure_label"]
        if settings.superpixel_pixels == "centroid":
            if "centroid_index" not in cache:
                cache["centroid_index"] = self._centroid_pixels(centroids_path, label_src)
            self.centroid_index = cache["centroid_index"]

    def close(self) -> None:
        if self.segments is not None:
            self.segments.close()

    def __enter__(self) -> "LabelFilter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pure_labels(self, label_src, table: ClassTable, purity: float) -> np.ndarray:
        """Per segment id: its majority class code if that class covers >= ``purity`` of its pixels, else 0."""
        n_codes = int(table.codes.max()) + 1
        counts = np.zeros((1, n_codes), dtype=np.int64)
        for window in block_windows(label_src.width, label_src.height):
            seg = self.segments.read(1, window=window).astype(np.int64).ravel()
            lab = label_src.read(1, window=window).ravel()
            lab = np.where(table.index_of_code()[lab] >= 0, lab, 0).astype(np.int64)  # unknown codes: unlabelled
            top = int(seg.max(initial=0))
            if top >= len(counts):
                counts = np.vstack([counts, np.zeros((top + 1 - len(counts), n_codes), np.int64)])
            np.add.at(counts, (seg, lab), 1)
        size = counts.sum(axis=1)
        majority = counts[:, 1:].argmax(axis=1) + 1
        share = counts[np.arange(len(counts)), majority] / np.maximum(size, 1)
        pure = np.where((share >= purity) & (counts[:, 1:].sum(axis=1) > 0), majority, 0)
        pure[0] = 0
        return pure.astype(np.int64)

    def _centroid_pixels(self, centroids_path, label_src) -> np.ndarray:
        """Sorted linear pixel indexes of the centroids of pure superpixels that lie inside their superpixel."""
        import pyogrio

        if centroids_path is None:
            raise InputError(f"samples.superpixel_pixels centroid needs the superpixel centroids of {label_src.name}")
        try:
            _, _, _, fields = pyogrio.raw.read(str(centroids_path), columns=["segment", "row", "col"],
                                               read_geometry=False)
        except Exception as err:  # pyogrio raises several types for missing / corrupt files
            raise InputError(f"superpixel centroids {centroids_path} cannot be read ({err}); rerun rule snic") from None
        segment, rows, cols = (np.asarray(f) for f in fields)
        rows = np.clip(np.rint(rows).astype(np.int64), 0, label_src.height - 1)
        cols = np.clip(np.rint(cols).astype(np.int64), 0, label_src.width - 1)
        pure = self.pure_label[np.clip(segment, 0, len(self.pure_label) - 1)] > 0
        pure &= segment < len(self.pure_label)
        return np.sort(rows[pure] * label_src.width + cols[pure])

    def keep(self, label_src, window: Window, labels: np.ndarray) -> np.ndarray:
        """Boolean mask over ``labels`` (the window's label block): labelled pixels that may be sampled."""
        keep = labels > 0
        if self.erosion > 0:
            e = self.erosion
            grown = Window(window.col_off - e, window.row_off - e, window.width + 2 * e, window.height + 2 * e)
            # Outside the raster counts as unlabelled, so image borders erode too.
            block = label_src.read(1, window=grown, boundless=True, fill_value=0)
            size = 2 * e + 1
            same = ndimage.minimum_filter(block, size) == ndimage.maximum_filter(block, size)
            keep &= same[e:e + labels.shape[0], e:e + labels.shape[1]]
        if self.superpixel:
            seg = self.segments.read(1, window=window).astype(np.int64)
            keep &= self.pure_label[np.clip(seg, 0, len(self.pure_label) - 1)] == labels
            if self.centroid_index is not None:
                rows, cols = np.indices(labels.shape)
                linear = (rows + int(window.row_off)) * label_src.width + cols + int(window.col_off)
                pos = np.searchsorted(self.centroid_index, linear)
                pos = np.minimum(pos, max(len(self.centroid_index) - 1, 0))
                keep &= (self.centroid_index[pos] == linear) if len(self.centroid_index) else False
        return keep
