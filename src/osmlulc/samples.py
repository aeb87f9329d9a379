"""Training and validation samples from OSM label rasters on the tile grids.

A sample is a labelled pixel with the image patch around it.  Samples are balanced per
class (up to ``per_class`` each).  Validation samples come from spatial blocks that are
held out from training, so validation pixels are not neighbours of training pixels; a
buffer (``validation_buffer_px``) also drops held-out pixels that lie closer than that to a
training block.  A second, *random* validation set is drawn like the original method's: from
the labelled pixels of the training blocks that were not picked for training, i.e. pixels
that may neighbour training pixels.  Comparing the two shows how much a random split
overstates the accuracy.
Both passes over the label rasters are windowed, so memory depends on the number of
samples, not on the tile size.

OSM labels are noisy: polygons are drawn loosely, their borders hold mixed pixels, and some are
mis-tagged.  Three cleaning steps (each a config switch, measured in
``benchmarks/benchmark_accuracy.py``) act on the candidates before any is drawn:

* ``erosion_px``: a pixel is a candidate only if every pixel within that Chebyshev distance
  carries the same label (polygons eroded, mixed border pixels out);
* ``method: superpixel`` (the OSMLULC method's sampling): only superpixels (SNIC segments of the
  tile) whose pixels are at least ``purity`` one OSM class give samples -- their centroid pixel
  (``superpixel_pixels: centroid``, the centroids the ``snic`` rule writes) or all their pixels
  (``all``); ``method: pixel`` samples any labelled pixel;
* ``outlier_mad``: per class and split, samples whose centre spectrum lies more than that many
  (scaled) median absolute deviations from the class median in any band are dropped.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from osmlulc.classes import ClassTable
from osmlulc.gaps import fill_patch, gap_distances, valid_pixels
from osmlulc.io import InputError, atomic_output, block_windows, open_raster, write_csv_rows
from osmlulc.sample_cleaning import LabelFilter

log = logging.getLogger("osmlulc")

SPLITS = ("train", "validation", "validation_random")


@dataclass(frozen=True)
class SampleSettings:
    patch_size: int
    per_class: int
    validation_per_class: int
    split_block_px: int
    validation_fraction: float
    seed: int
    #: Held-out pixels closer than this (Chebyshev distance, px) to a training block are not used:
    #: >= patch_size // 2 + 1 keeps every training pixel out of the validation patches.
    validation_buffer_px: int = 0
    #: Label polygons eroded by this many px before sampling (0: off).
    erosion_px: int = 0
    #: ``pixel`` or ``superpixel`` (samples from pure superpixels only; needs segments per tile).
    method: str = "pixel"
    #: Superpixel sampling: least share of a superpixel's pixels that carry its majority OSM class.
    purity: float = 0.9
    #: Superpixel sampling: ``centroid`` (one sample per pure superpixel) or ``all`` (its pixels).
    superpixel_pixels: str = "centroid"
    #: Per-class spectral outlier rejection threshold in scaled MADs (None: off).
    outlier_mad: float | None = None
    #: Least share of a sample's patch that must be valid (not masked or nodata); the gaps of a kept patch are
    #: filled as prediction fills them (osmlulc.gaps.fill_patch), so that pixels near clouds are trained and
    #: validated on what prediction shows the model.  1.0: a patch touching a gap is dropped.
    min_valid_share: float = 1.0
    #: Edge (odd, px) of the label chip stored around each sample (``label_chips``): the ResNet then
    #: trains densely on every clean labelled pixel of the chip, not only the centre.  1: off.
    #: ``patch_size`` must hold it: model patch + chip_px - 1.
    chip_px: int = 1
    #: Validation samples store their distance to the nearest gap up to this many px (``gap_distance``), for the
    #: water decision's threshold near gaps (``models.ensemble.water.near_gap``); 0: not stored.
    gap_reach_px: int = 0


def validation_blocks(shape: tuple[int, int], block_px: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean grid of ``block_px`` blocks over a tile: True where the block is held out for validation."""
    n_rows = -(-shape[0] // block_px)
    n_cols = -(-shape[1] // block_px)
    return rng.random((n_rows, n_cols)) < fraction


def buffered_out(rows: np.ndarray, cols: np.ndarray, held_out: np.ndarray, block_px: int, buffer_px: int) -> np.ndarray:
    """True for pixels with a training block (``~held_out``) within ``buffer_px`` (Chebyshev distance).

    The square of radius ``buffer_px`` around a pixel touches the blocks from
    (row - buffer) // block to (row + buffer) // block (clipped to the grid); a summed-area
    table of the training blocks answers "any training block in that range" per pixel.
    """
    if buffer_px <= 0:
        return np.zeros(rows.shape, dtype=bool)
    training = np.pad((~held_out).astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    n_rows, n_cols = held_out.shape
    r0 = np.clip((rows - buffer_px) // block_px, 0, n_rows - 1)
    r1 = np.clip((rows + buffer_px) // block_px, 0, n_rows - 1) + 1
    c0 = np.clip((cols - buffer_px) // block_px, 0, n_cols - 1)
    c1 = np.clip((cols + buffer_px) // block_px, 0, n_cols - 1) + 1
    return (training[r1, c1] - training[r0, c1] - training[r1, c0] + training[r0, c0]) > 0


def _candidates(label_src, stack_src, window: Window, half: int, held_out: np.ndarray, block_px: int,
                buffer_px: int = 0, label_filter: LabelFilter | None = None):
    """Labelled, valid pixels in a window whose whole patch lies inside the image: rows, cols, labels, split (0/1).

    Held-out pixels within ``buffer_px`` of a training block are left out, and so are pixels
    that ``label_filter`` (erosion, superpixel purity) rejects.
    """
    labels = label_src.read(1, window=window)
    valid = stack_src.read(1, window=window) > 0
    labelled = label_filter.keep(label_src, window, labels) if label_filter is not None else labels > 0
    rows, cols = np.nonzero(labelled & valid)
    rows = rows + int(window.row_off)
    cols = cols + int(window.col_off)
    inside = ((rows >= half) & (rows < label_src.height - half) & (cols >= half) & (cols < label_src.width - half))
    rows, cols = rows[inside], cols[inside]
    split = held_out[rows // block_px, cols // block_px].astype(np.int8)
    keep = ~((split == 1) & buffered_out(rows, cols, held_out, block_px, buffer_px))
    rows, cols, split = rows[keep], cols[keep], split[keep]
    return rows, cols, labels[rows - int(window.row_off), cols - int(window.col_off)], split


#: Samples are cut from one read per block of this many px (their bounding box grown by the patch),
#: not one read per sample: benchmarks/benchmark_tile.py, stage ``samples``.
GROUP_PX = 512


def sample_groups(rows: np.ndarray, cols: np.ndarray, half: int, group_px: int = GROUP_PX):
    """Samples grouped by ``group_px`` blocks of the grid: yields (indices into rows/cols, window), the window
    being the group's bounding box grown by ``half`` px (the samples' patches must lie inside the raster)."""
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    if len(rows) == 0:
        return
    key = (rows // group_px) * (int(cols.max()) // group_px + 1) + cols // group_px
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.diff(key[order])) + 1
    for idx in np.split(order, starts):
        r0, c0 = int(rows[idx].min()) - half, int(cols[idx].min()) - half
        r1, c1 = int(rows[idx].max()) + half + 1, int(cols[idx].max()) + half + 1
        yield idx, Window(c0, r0, c1 - c0, r1 - r0)


def cut_around(block: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` cut-outs of ``block`` (H, W, ...) centred at block positions rows, cols."""
    offsets = np.arange(size) - size // 2
    return block[rows[:, None, None] + offsets[None, :, None], cols[:, None, None] + offsets[None, None, :]]


def _read_patches(stack_src, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    half = size // 2
    patches = np.empty((len(rows), size, size, stack_src.count), dtype=np.uint16)
    for idx, window in sample_groups(rows, cols, half):
        block = np.moveaxis(stack_src.read(window=window), 0, -1)
        patches[idx] = cut_around(block, rows[idx] - int(window.row_off), cols[idx] - int(window.col_off), size)
    return patches


def _pick_outside(n: int, excluded: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` distinct numbers from range(n) minus the sorted ``excluded`` ones, sorted (no range in memory).

    Number i of the complement is i + #{j : excluded[j] - j <= i}.
    """
    free = n - len(excluded)
    picks = np.sort(rng.choice(free, size=min(size, free), replace=False))
    return picks + np.searchsorted(excluded - np.arange(len(excluded)), picks, side="right")


def draw_samples(tiles: dict[str, tuple[str, str]], table: ClassTable, settings: SampleSettings,
                 train_path: str | os.PathLike, validation_path: str | os.PathLike,
                 validation_random_path: str | os.PathLike | None = None, *,
                 segments: dict[str, str] | None = None, centroids: dict[str, str] | None = None) -> dict:
    """Draw balanced train/validation samples from ``tiles``: tile id -> (stack path, label path on the tile grid).

    ``segments`` / ``centroids``: tile id -> superpixel segments raster / centroids GeoPackage (rule
    ``snic``), needed for ``settings.method == "superpixel"``; with ``superpixel_pixels: centroid``
    and no centroids file given, ``<segments folder>/snic_centroids.gpkg`` is used.

    ``validation_random_path``, if given, receives the random-split validation set: up to
    ``validation_per_class`` pixels per class drawn from the training blocks' candidates
    that were not picked for training (drawn after the other two sets, so those do not
    depend on it).

    Returns a summary {split: {class code: count}}.  Classes with no labelled pixel are
    reported in the log and in the summary with count 0 (the models still cover them).
    """
    if settings.patch_size % 2 != 1:
        raise ValueError(f"patch size must be odd, got {settings.patch_size}")
    if settings.chip_px % 2 != 1 or settings.chip_px > settings.patch_size:
        raise ValueError(f"samples.chip_px must be odd and at most the patch size {settings.patch_size}, "
                         f"got {settings.chip_px}")
    half = settings.patch_size // 2
    rng = np.random.default_rng(settings.seed)
    index = table.index_of_code()
    n_classes = len(table)

    # Pass 1: count candidates per (split, class) over all tiles, in a fixed order.
    tile_ids = sorted(tiles)
    segments = segments or {}
    centroids = dict(centroids or {})
    for tile, path in segments.items():
        centroids.setdefault(tile, str(Path(path).with_name("snic_centroids.gpkg")))

    purity_of_tile: dict[str, dict] = {}  # the superpixel purity, computed once per tile for all passes

    def label_filter(tile, label):
        return LabelFilter(settings, label, table, segments.get(tile), centroids.get(tile),
                           cache=purity_of_tile.setdefault(tile, {}))

    held_out = {}
    counts = np.zeros((2, n_classes), dtype=np.int64)
    for tile in tile_ids:
        stack_path, label_path = tiles[tile]
        with open_raster(stack_path, f"band stack of tile {tile}") as stack, \
                open_raster(label_path, f"label raster of tile {tile}") as label:
            if (stack.width, stack.height) != (label.width, label.height):
                raise InputError(f"label raster {label_path} is not on the grid of tile {tile}'s stack {stack_path}")
            held_out[tile] = validation_blocks((label.height, label.width), settings.split_block_px,
                                               settings.validation_fraction, rng)
            with label_filter(tile, label) as cleaning:
                for window in block_windows(label.width, label.height):
                    _, _, labels, split = _candidates(label, stack, window, half, held_out[tile],
                                                      settings.split_block_px, settings.validation_buffer_px, cleaning)
                    known = index[labels] >= 0
                    np.add.at(counts, (split[known], index[labels[known]]), 1)
    if counts.sum() == 0:
        raise InputError(f"no labelled pixel in the training tiles {tile_ids}: check that the label raster "
                         "overlaps them")

    # Choose which candidates (by running number per split and class) become samples.
    wanted = (settings.per_class, settings.validation_per_class)
    chosen = [[np.sort(rng.choice(counts[s, c], size=min(wanted[s], counts[s, c]), replace=False))
               for c in range(n_classes)] for s in range(2)]
    # The random split: training-block candidates that are not training samples.
    chosen_random = [_pick_outside(int(counts[0, c]), chosen[0][c], settings.validation_per_class, rng)
                     if validation_random_path is not None else np.empty(0, np.int64) for c in range(n_classes)]

    # Pass 2: collect the chosen pixels and cut their patches.
    seen = np.zeros((2, n_classes), dtype=np.int64)
    picked = {s: [] for s in range(3)}
    for tile in tile_ids:
        stack_path, label_path = tiles[tile]
        with open_raster(stack_path, "band stack") as stack, open_raster(label_path, "label raster") as label:
            with label_filter(tile, label) as cleaning:
                for window in block_windows(label.width, label.height):
                    rows, cols, labels, split = _candidates(label, stack, window, half, held_out[tile],
                                                            settings.split_block_px, settings.validation_buffer_px,
                                                            cleaning)
                    for s in range(2):
                        for c in range(n_classes):
                            sel = (split == s) & (index[labels] == c)
                            n = int(sel.sum())
                            if n == 0:
                                continue
                            running = np.arange(seen[s, c], seen[s, c] + n)
                            take = np.isin(running, chosen[s][c], assume_unique=True)
                            seen[s, c] += n
                            if take.any():
                                picked[s].append((tile, rows[sel][take], cols[sel][take], labels[sel][take]))
                            if s == 0:
                                take = np.isin(running, chosen_random[c], assume_unique=True)
                                if take.any():
                                    picked[2].append((tile, rows[sel][take], cols[sel][take], labels[sel][take]))
            band_names = np.array(stack.descriptions, dtype=str)
    def read_chips(tile, rows, cols, split):
        """(n, chip, chip) uint8 labels around each sample: clean labelled pixels of the sample's split, else 0."""
        stack_path, label_path = tiles[tile]
        half_chip = settings.chip_px // 2
        chips = np.zeros((len(rows), settings.chip_px, settings.chip_px), dtype=np.uint8)
        with open_raster(stack_path, "band stack") as stack, open_raster(label_path, "label raster") as label:
            with label_filter(tile, label) as cleaning:
                for idx, window in sample_groups(rows, cols, half_chip):
                    labels = label.read(1, window=window)
                    keep = cleaning.keep(label, window, labels) & (stack.read(1, window=window) > 0)
                    rr, cc = np.indices(labels.shape)
                    rr, cc = rr.ravel() + int(window.row_off), cc.ravel() + int(window.col_off)
                    same = held_out[tile][rr // settings.split_block_px, cc // settings.split_block_px] == bool(split)
                    if split == 1:
                        same &= ~buffered_out(rr, cc, held_out[tile], settings.split_block_px,
                                              settings.validation_buffer_px)
                    keep &= same.reshape(labels.shape) & (index[labels] >= 0)
                    chips[idx] = cut_around(np.where(keep, labels, 0), rows[idx] - int(window.row_off),
                                            cols[idx] - int(window.col_off), settings.chip_px)
        return chips

    summary = {}
    paths = (train_path, validation_path, validation_random_path)
    for s, path in enumerate(paths):
        if path is not None:
            chip_reader = None
            if settings.chip_px > 1:
                chip_reader = functools.partial(read_chips, split=1 if s == 1 else 0)
            summary[SPLITS[s]] = _write_samples(picked[s], tiles, settings.patch_size, band_names, table, path,
                                                outlier_mad=settings.outlier_mad, chip_reader=chip_reader,
                                                candidates=counts[1 if s == 1 else 0],
                                                min_valid_share=settings.min_valid_share,
                                                gap_reach_px=settings.gap_reach_px if s == 1 else 0)
    return summary


def spectral_outliers(spectra: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """True for samples whose spectrum is more than ``threshold`` scaled MADs from its class median in any band.

    Scaled MAD = 1.4826 x median absolute deviation (the standard deviation for normal data);
    a band whose MAD is 0 within a class is not used for that class.
    """
    spectra = np.asarray(spectra, dtype=np.float64)
    outlier = np.zeros(len(labels), dtype=bool)
    for code in np.unique(labels):
        sel = labels == code
        x = spectra[sel]
        median = np.median(x, axis=0)
        mad = 1.4826 * np.median(np.abs(x - median), axis=0)
        z = np.abs(x - median) / np.where(mad > 0, mad, np.inf)
        outlier[sel] = (z > threshold).any(axis=1)
    return outlier


def read_gap_distances(stack_src, rows: np.ndarray, cols: np.ndarray, reach: int) -> np.ndarray:
    """(N,) distance (px, chessboard) of each sample pixel to the nearest gap of the stack, ``reach + 1`` where
    none is within ``reach``: what prediction's near-gap mask (:func:`osmlulc.gaps.near_gaps`) sees.  The
    raster's border is not a gap."""
    out = np.empty(len(rows), dtype=np.int16)
    for idx, window in sample_groups(rows, cols, reach):
        window = window.intersection(Window(0, 0, stack_src.width, stack_src.height))
        valid = valid_pixels(np.moveaxis(stack_src.read(window=window), 0, -1))
        out[idx] = gap_distances(valid, rows[idx] - int(window.row_off), cols[idx] - int(window.col_off), reach)
    return out


def _cut_per_tile(tile_col: np.ndarray, cut) -> np.ndarray | None:
    """``cut(tile, indices)`` for each tile's samples, assembled in sample order (None without samples)."""
    out = None
    for tile in sorted(set(tile_col.tolist())):
        of_tile = np.flatnonzero(tile_col == tile)
        part = cut(tile, of_tile)
        if len(of_tile) == len(tile_col):  # a single tile: no copy
            return part
        if out is None:
            out = np.empty((len(tile_col), *part.shape[1:]), part.dtype)
        out[of_tile] = part
    return out


def _fill_or_drop_gaps(patches: np.ndarray, min_valid_share: float) -> np.ndarray:
    """Which patches to keep: those with at least ``min_valid_share`` valid pixels and their centre valid; their
    gaps are filled in place (:func:`osmlulc.gaps.fill_patch`); a gap left unfilled drops the patch."""
    if not len(patches):
        return np.zeros(0, bool)
    valid = valid_pixels(patches)
    share = valid.mean(axis=(1, 2))
    centre = patches.shape[1] // 2
    keep = (share >= min_valid_share) & valid[:, centre, centre] if min_valid_share < 1 else share == 1
    for i in np.flatnonzero(keep & (share < 1)):
        patches[i] = fill_patch(patches[i], valid[i], patches.shape[1] // 2)
        keep[i] = bool((patches[i] > 0).all())
    return keep


def _write_samples(picked, tiles, size, band_names, table: ClassTable, path, *,
                   outlier_mad: float | None = None, chip_reader=None, candidates=None,
                   min_valid_share: float = 1.0, gap_reach_px: int = 0) -> dict[int, int]:
    """Cut the picked samples' patches (and label chips) and save them; ``candidates``: per class (table
    order) the number of clean labelled pixels the samples were drawn from, stored so that training can
    weight classes by their share of the labels (``class_weight: prior``) rather than of the samples;
    ``gap_reach_px`` > 0: each sample's distance to the nearest gap, up to that (``gap_distance``)."""
    n_bands = len(band_names)
    tile_col = np.array([tile for tile, r, _, _ in picked for _ in range(len(r))], dtype=str)
    rows, cols, labels = (np.concatenate([entry[i] for entry in picked]) if picked else np.empty(0, np.int64)
                          for i in (1, 2, 3))

    def cut_patches(tile, of_tile):  # all of a tile's samples at once: one read per block of samples
        with open_raster(tiles[tile][0], "band stack") as stack:
            return _read_patches(stack, rows[of_tile], cols[of_tile], size)

    patches = _cut_per_tile(tile_col, cut_patches)
    if patches is None:
        patches = np.empty((0, size, size, n_bands), np.uint16)
    # A patch touching nodata (swath edge, clouds) would teach the model zeros: its gaps are filled as
    # prediction fills them, or the patch is dropped when less than min_valid_share of it is valid.
    keep = _fill_or_drop_gaps(patches, min_valid_share)
    if outlier_mad is not None and len(labels):
        c = size // 2
        bad = spectral_outliers(patches[keep][:, c, c, :], labels[keep], float(outlier_mad))
        log.info("%s: %d of %d samples rejected as spectral outliers of their class (> %g MAD)", path,
                 int(bad.sum()), len(bad), outlier_mad)
        keep[np.flatnonzero(keep)[bad]] = False
    if not keep.all():
        tile_col, rows, cols, labels, patches = (a[keep] for a in (tile_col, rows, cols, labels, patches))
    extra = {}
    if candidates is not None:
        extra["candidates"] = np.asarray(candidates, dtype=np.int64)
    if chip_reader is not None:
        chips = _cut_per_tile(tile_col, lambda tile, of_tile: chip_reader(tile, rows[of_tile], cols[of_tile]))
        extra["label_chips"] = chips if chips is not None else np.empty((0, 1, 1), np.uint8)
    if gap_reach_px > 0:
        def read_distances(tile, of_tile):
            with open_raster(tiles[tile][0], "band stack") as stack:
                return read_gap_distances(stack, rows[of_tile], cols[of_tile], gap_reach_px)

        distances = _cut_per_tile(tile_col, read_distances)
        extra["gap_distance"] = distances if distances is not None else np.empty(0, np.int16)
    result = dict(
        patches=patches,
        labels=labels.astype(np.uint8),
        rows=rows.astype(np.int32),
        cols=cols.astype(np.int32),
        tiles=tile_col,
        bands=band_names,
        **extra,
    )
    per_class = {int(code): int((result["labels"] == code).sum()) for code in table.codes}
    absent = [code for code, n in per_class.items() if n == 0]
    if absent:
        log.warning("%s: no sample for class(es) %s (%s)", path, absent, ", ".join(table.name(c) for c in absent))
    log.info("%s: %d samples, per class %s", path, len(result["labels"]), per_class)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **result)
    return per_class


def write_sample_summary(sample_paths: dict[str, str | os.PathLike], table: ClassTable,
                         dst_path: str | os.PathLike) -> list[dict]:
    """Per-class sample counts of each split as CSV: code, name, one column per split, absent.

    Every class of the table has a row (0 where it has no sample); ``absent`` is true for a class
    without a training sample anywhere: the models still output it, but cannot predict it, which
    the run report should say.
    """
    counts = {}
    for split, path in sample_paths.items():
        with np.load(path) as data:
            labels = data["labels"]
        counts[split] = {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True))}
    rows = []
    for code in table.codes.tolist():
        row = {"code": code, "name": table.name(code)}
        row.update({split: counts[split].get(code, 0) for split in sample_paths})
        row["absent"] = "train" in counts and counts["train"].get(code, 0) == 0
        rows.append(row)
    write_csv_rows(dst_path, rows, list(rows[0]))
    return rows
