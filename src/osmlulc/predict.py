"""Per-tile prediction: dense per-pixel classification of a band stack, and per-superpixel
classes from the pixel probabilities.

Pixel prediction reads the stack block by block with a halo of ``P // 2`` px (P = the
classifier's patch size), pads at the image edges by repeating the edge pixels, and classifies
the whole block in one call: for the ResNet this is exact dense inference, identical to
classifying every pixel's own edge-padded patch (:func:`predict_patches`, the reference).
The original architecture (``models.resnet.architecture: original``) takes the same path but
its classifier cuts and classifies one patch per pixel of the block (the slow path, kept for
comparison).  For an even patch size P the pixel sits at index P // 2 of its patch: P // 2 px
of context above / left of it, P // 2 - 1 below / right.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import numba
import numpy as np
import rasterio
from rasterio.windows import Window

from osmlulc.classes import ClassTable
from osmlulc.io import (BLOCK_SIZE, InputError, atomic_output, block_windows, open_raster, raster_profile,
                        same_grid, write_class_colormap)
from osmlulc.gaps import fill_gaps as fill_gap_pixels
from osmlulc.gaps import near_gaps, valid_pixels
from osmlulc.logs import progress
from osmlulc.windows import core_slices, grown_window
from osmlulc.classifiers import Classifier, load_classifier, read_ensemble

LOG = logging.getLogger("osmlulc")

#: Probabilities are stored as uint8: p * PROBABILITY_SCALE, rounded.
PROBABILITY_SCALE = 255


def read_block_with_halo(src, window: Window, halo: int) -> np.ndarray:
    """(h + 2 halo, w + 2 halo, B) float32 block around ``window``; outside the image: edge pixels repeated.

    Reading only what exists and padding in numpy with 'edge' mode gives an edge pixel the same
    context a per-patch classifier would get from an edge-padded image.
    """
    grown = grown_window(window, halo, src.width, src.height)
    return _block_with_halo(src.read(window=grown), window, grown, halo)


def _block_with_halo(data: np.ndarray, window: Window, grown: Window, halo: int) -> np.ndarray:
    """:func:`read_block_with_halo` of the (B, rows, cols) data read for ``grown``."""
    block = _bands_last_float32(data)
    rows, cols = core_slices(window, grown)  # where the window lies in what was read: pad the rest to the halo
    pad = ((halo - rows.start, halo - (grown.height - rows.stop)),
           (halo - cols.start, halo - (grown.width - cols.stop)), (0, 0))
    if any(p for pair in pad for p in pair):
        block = np.pad(block, pad, mode="edge")
    return block


@numba.njit(cache=True, nogil=True)
def _bands_last_float32(data):
    """(B, rows, cols) -> (rows, cols, B) float32 in one pass (numpy's moveaxis + astype took 15 x as long)."""
    bands, rows, cols = data.shape
    out = np.empty((rows, cols, bands), np.float32)
    for i in range(rows):
        for b in range(bands):
            for j in range(cols):
                out[i, j, b] = np.float32(data[b, i, j])
    return out


def predict_window_probabilities(src, classifier: Classifier, window: Window, *, fill_gaps: bool = True,
                                 valid_windows: bool = True, read=None) -> tuple[np.ndarray, np.ndarray]:
    """Float probabilities (h, w, n_classes) of one window of an open stack, and its valid-pixel mask.

    A pixel is valid when no band is nodata (0, :func:`osmlulc.gaps.valid_pixels`); invalid pixels get
    all-zero probabilities.  Gaps in a valid pixel's receptive field: with ``fill_gaps`` the model
    sees them filled from the valid pixels around them (:func:`osmlulc.gaps.fill_gaps`, radius
    ``P // 2``: the halo grows by as much), with ``valid_windows`` the window statistics leave them
    out; otherwise the model sees zeros (what it never saw in training).  ``read(window, halo)``: the block
    (:func:`read_block_with_halo` of ``src`` by default; :func:`predict_tile_product` reads it once for all members).
    """
    size = classifier.patch_size
    halo = size // 2
    radius = halo if fill_gaps and classifier.needs_filled_gaps(valid_windows) else 0
    height, width = int(window.height), int(window.width)
    # An even patch has one pixel less of context below / right: drop the last halo row / column.
    read = read or (lambda w, h: read_block_with_halo(src, w, h))
    grown = read(window, halo + radius)[:height + size - 1 + 2 * radius, :width + size - 1 + 2 * radius]
    grown_valid = valid_pixels(grown)
    block_valid = grown_valid[radius:radius + height + size - 1, radius:radius + width + size - 1]
    valid = block_valid[halo:halo + height, halo:halo + width]
    if not valid.any():
        # Nothing to classify (e.g. outside the orbit swath): skip the model call.
        return np.zeros((*valid.shape, classifier.n_classes), dtype=np.float32), valid
    block = fill_gap_pixels(grown, grown_valid, radius) if radius else grown
    gaps_known = valid_windows and not block_valid.all()
    probabilities = classifier.predict_proba_block(block, valid=valid, block_valid=block_valid if gaps_known else None)
    probabilities[~valid] = 0
    return probabilities, valid


def predict_patches(classifier: Classifier, patches: np.ndarray, *, fill_gaps: bool = False,
                    valid_windows: bool = False) -> np.ndarray:
    """Classify explicit (N, P', P', B) patches one by one -> (N, n_classes) float32.

    The reference against which dense inference is tested; patches larger than the classifier's
    own patch size P (plus ``2 (P // 2)`` with ``fill_gaps``) are centre-cropped to it (pixel at index
    P' // 2, see :func:`osmlulc.sample_data.centre_crop`); the gap options are those of
    :func:`predict_window_probabilities`, applied to each patch on its own.
    """
    size = classifier.patch_size
    radius = size // 2 if fill_gaps and classifier.needs_filled_gaps(valid_windows) else 0
    need, have = size + 2 * radius, patches.shape[1]
    if have < need or patches.shape[2] != have:
        raise ValueError(f"predict_patches: need square patches of at least {need} px, got {patches.shape[1:3]}")
    start = have // 2 - need // 2
    patches = np.asarray(patches[:, start:start + need, start:start + need, :], dtype=np.float32)
    patch_valid = valid_pixels(patches)
    if radius:
        patches = np.stack([fill_gap_pixels(p, v, radius) for p, v in zip(patches, patch_valid)])
        patch_valid = patch_valid[:, radius:radius + size, radius:radius + size]
    return classifier.predict_proba_patches(patches, patch_valid=patch_valid if valid_windows else None)


def check_stack(src, stack_path, classifier: Classifier, model_path) -> None:
    """One-line error when the stack's bands do not match what the model was trained on."""
    if src.count != classifier.n_bands:
        raise InputError(f"stack {stack_path} has {src.count} bands but model {model_path} "
                         f"expects {classifier.n_bands}")
    if classifier.bands and all(src.descriptions):
        if tuple(src.descriptions) != tuple(classifier.bands):
            raise InputError(f"stack {stack_path} has bands {list(src.descriptions)} but model {model_path} "
                             f"was trained on {list(classifier.bands)}")


def _probability_profile(grid: dict, table: ClassTable) -> dict:
    """The uint8 probability rasters' profile: an intermediate of the tile chain, ZSTD level 1 (the same values,
    written 4 x faster than deflate level 6 and about as small; benchmarks/RESULTS.md, issue 24)."""
    profile = raster_profile(**grid, count=len(table), dtype="uint8")
    profile.update(compress="zstd", zstd_level=1)
    return profile


@numba.njit(cache=True, nogil=True)
def _classes_and_stored(probabilities, valid, codes, nodata):
    """(h, w, n) probabilities -> the uint8 class codes of their argmax (``nodata`` where not ``valid``) and the
    (n, h, w) stored probabilities round(p * 255), band by band as written: one pass for argmax, rint, cast and
    transpose."""
    height, width, n = probabilities.shape
    classes = np.empty((height, width), np.uint8)
    stored = np.empty((n, height, width), np.uint8)
    scale = np.float32(PROBABILITY_SCALE)
    for i in range(height):
        for j in range(width):
            best = 0
            top = probabilities[i, j, 0]
            for c in range(n):
                v = probabilities[i, j, c]
                if v > top:
                    top, best = v, c
                stored[c, i, j] = np.uint8(np.rint(v * scale))
            classes[i, j] = codes[best] if valid[i, j] else nodata
    return classes, stored


def _output_block_size(block_size: int) -> int:
    """GeoTIFF tile edge for outputs: the processing block if smaller (multiple of 16), else the default."""
    return max(16, (min(block_size, BLOCK_SIZE) // 16) * 16)


def _write_class_probabilities(grid: dict, windows, table: ClassTable, classified_path, probabilities_path,
                               window_probabilities, what: str, decide_classes=None, also=None) -> None:
    """Write the classified raster and the uint8 probabilities of ``window_probabilities(window)``
    (-> float (h, w, n_classes) probabilities and the valid mask), window by window, atomically.
    ``decide_classes(window, probabilities, classes, valid)``: the classes of a window other than the argmax
    (the ensemble's water decision); ``also(window, stored)``: what else is made of a window's stored
    probabilities (the one pass's confidence and segment sums), run after its write, in the writer's thread."""
    codes = np.asarray(table.codes, np.uint8)
    # A block is written (compressed) in the background while the next one is predicted; one at a time.
    with _ClassProbabilityWriter(grid, table, classified_path, probabilities_path) as out, \
            ThreadPoolExecutor(1) as writer:
        start, done_px, pending = time.perf_counter(), 0, None
        for i, window in enumerate(windows, start=1):
            probabilities, valid = window_probabilities(window)
            classes, stored = _classes_and_stored(probabilities, valid, codes, table.nodata)
            if decide_classes is not None:
                classes = decide_classes(window, probabilities, classes, valid)
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_block, out, also, window, classes, stored)
            done_px += int(window.width * window.height)
            elapsed = time.perf_counter() - start
            LOG.info("%s: block %d/%d, %.0f px/s", what, i, len(windows), done_px / max(elapsed, 1e-9))
        if pending is not None:
            pending.result()


def _write_block(out, also, window, classes, stored) -> None:
    out.write(window, classes, stored)
    if also is not None:
        also(window, stored)


def predict_tile_pixels(stack_path, model_path, table: ClassTable, classified_path, probabilities_path, *,
                        block_size: int, rotations: int = 1, fill_gaps: bool = True,
                        valid_windows: bool = True, threads: int = 1) -> None:
    """Classify every pixel of a 10-band uint16 stack (nodata 0), window by window.

    Writes ``classified_path`` (uint8 class codes of the most probable class, 0 at nodata, with
    the class colour table) and ``probabilities_path`` (uint8, one band per class in table order,
    round(p * 255), 0 at nodata, band descriptions = class names).  ``rotations``: test-time
    rotations of the dense ResNet (mean over 1, 4 or 8 transforms; :class:`osmlulc.classifiers.ResnetClassifier`).
    ``fill_gaps``, ``valid_windows``: what the model sees of gaps (:func:`predict_window_probabilities`).
    ``threads``: for the models that use them (the logistic regression; TensorFlow has its own).
    """
    classifier = _with_threads(load_classifier(model_path, rotations=rotations), threads)
    if classifier.n_classes != len(table):
        raise InputError(f"model {model_path} has {classifier.n_classes} classes, the class table {len(table)}")
    with open_raster(stack_path, "band stack") as src:
        check_stack(src, stack_path, classifier, model_path)
        grid = dict(crs=src.crs, transform=src.transform, width=src.width, height=src.height,
                    block_size=_output_block_size(block_size))

        windows = list(block_windows(src.width, src.height, block_size))
        with _BlockReader(src, windows, member_halo(classifier, fill_gaps, valid_windows)) as reader:

            def window_probabilities(window):
                return predict_window_probabilities(src, classifier, window, fill_gaps=fill_gaps,
                                                    valid_windows=valid_windows, read=reader.read)

            _write_class_probabilities(grid, windows, table, classified_path, probabilities_path, window_probabilities,
                                       f"predict {os.path.basename(stack_path)} with {classifier.kind}")


def _with_threads(classifier: Classifier, threads: int) -> Classifier:
    if hasattr(classifier, "threads"):
        classifier.threads = max(1, int(threads))
    return classifier


def _member_factors(weights: dict, names: list) -> dict:
    """Each member's float32 share of the ensemble (its weight over the sum), checked."""
    total = float(sum(weights[n] for n in names))
    if total <= 0 or any(weights[n] < 0 for n in names):
        raise ValueError(f"ensemble: weights {weights} must be >= 0 with a positive sum")
    return {n: np.float32(weights[n] / total) for n in names}


def _weighted_mean(stored: dict, factors: dict) -> tuple[np.ndarray, np.ndarray]:
    """Members' stored uint8 probabilities (name -> (n_classes, h, w)) -> their weighted mean (h, w, n_classes)
    float32 and the pixels where every member has probabilities (0 elsewhere)."""
    mixed, valid = None, None
    for name, probabilities in stored.items():
        member = np.moveaxis(probabilities, 0, -1).astype(np.float32) / PROBABILITY_SCALE
        member_valid = member.sum(axis=-1) > 0
        valid = member_valid if valid is None else valid & member_valid
        part = member * factors[name]
        mixed = part if mixed is None else mixed + part
    mixed[~valid] = 0
    return mixed, valid


def _water_index_bands(stack_src, stack_path, water, table: ClassTable) -> tuple[list[int], int]:
    """The 0-based stack bands a water decision reads (its ``stack_bands``: its pixel model's, then its index's;
    one line if the stack lacks one) and the water class's column of the table."""
    names = list(stack_src.descriptions)
    missing = [b for b in water.stack_bands if b not in names]
    if missing:
        raise InputError(f"band stack {stack_path} lacks band(s) {missing} of the water decision "
                         f"({water.index} and its pixel water model)")
    return [names.index(band) for band in water.stack_bands], int(table.index_of_code()[table.water_code()])


def blend_tile_probabilities(member_probabilities: dict, weights: dict, table: ClassTable, classified_path,
                             probabilities_path, *, block_size: int, water=None, stack_path=None) -> None:
    """The ensemble of a tile: the weighted mean of its members' stored probabilities, window by window.

    ``member_probabilities``: model name -> probabilities raster of :func:`predict_tile_pixels` (same
    grid); ``weights``: model name -> weight (normalised to sum 1).  Writes the same two rasters as
    :func:`predict_tile_pixels`; a pixel is nodata where a member has no probabilities.  The mean of the
    uint8-stored probabilities differs from that of the float ones by at most 1 / 510 per class.
    ``water`` (:class:`osmlulc.selection.WaterDecision`, with the tile's band ``stack_path``): the classified
    raster's water is the decision's (the probabilities stay the blend's).
    """
    names = list(member_probabilities)
    if not names or set(names) != set(weights):
        raise ValueError(f"ensemble: members {names} and weights {sorted(weights)} must name the same models")
    factors = _member_factors(weights, names)
    with ExitStack() as stack:
        sources = {n: stack.enter_context(open_raster(member_probabilities[n], f"{n} probabilities")) for n in names}
        first = sources[names[0]]
        for name, src in sources.items():
            if src.count != len(table):
                raise InputError(f"probabilities {member_probabilities[name]} have {src.count} bands, "
                                 f"the class table {len(table)} classes")
            if not same_grid(src, first):
                raise InputError(f"probabilities {member_probabilities[name]} are not on the grid of "
                                 f"{member_probabilities[names[0]]}; predict both on the same stack")

        def window_probabilities(window):
            return _weighted_mean({name: sources[name].read(window=window) for name in names}, factors)

        decide_classes = None
        if water is not None:
            if stack_path is None:
                raise ValueError("ensemble: a water decision needs the tile's band stack")
            decide_classes = _water_decision(stack.enter_context(open_raster(stack_path, "band stack")), stack_path,
                                             first, water, table)
        grid = dict(crs=first.crs, transform=first.transform, width=first.width, height=first.height,
                    block_size=_output_block_size(block_size))
        _write_class_probabilities(grid, list(block_windows(first.width, first.height, block_size)), table,
                                   classified_path, probabilities_path, window_probabilities,
                                   f"ensemble of {', '.join(f'{n} x {weights[n]:g}' for n in names)}", decide_classes)


def member_halo(classifier: Classifier, fill_gaps: bool, valid_windows: bool) -> int:
    """Halo (px) :func:`predict_window_probabilities` reads around a window for ``classifier``."""
    halo = classifier.patch_size // 2
    return halo + (halo if fill_gaps and classifier.needs_filled_gaps(valid_windows) else 0)


def predict_tile_product(stack_path, ensemble_path, table: ClassTable, classified_path, probabilities_path, *,
                         block_size: int, rotations: int = 1, fill_gaps: bool = True, valid_windows: bool = True,
                         member_outputs: dict | None = None, member_paths: dict | None = None,
                         confidence_path=None, segments_path=None, segment_sums_path=None,
                         threads: int = 1) -> None:
    """The ensemble of a tile in one pass: per block the stack is read once (with the largest halo any member
    needs), every member predicts it, and the weighted mean of their probabilities -- each rounded to the
    stored uint8 first, so the numbers are those of :func:`blend_tile_probabilities` on the rasters
    :func:`predict_tile_pixels` writes -- gives the classified and probability rasters, with the water decision.

    ``member_outputs``: model name -> (classified path, probabilities path) of members whose own rasters are
    wanted too (the accuracy rows of a member); the others are never written.  ``member_paths``: model name ->
    model file, in place of the paths the ensemble file names (the workflow passes its rule's inputs).

    From the same blocks' stored probabilities, so that nothing reads the probability raster again:
    ``confidence_path``: the pixel confidence (what :func:`tile_confidence` makes of the probability raster;
    0 = no probabilities); ``segment_sums_path`` with ``segments_path`` (segment ids on the stack's grid): the
    per-segment probability sums and pixel counts over the tile (:func:`write_segment_sums`; a segment may span
    blocks), from which :func:`predict_superpixels_from_sums` and :func:`superpixel_confidence_from_sums` give
    what :func:`predict_tile_superpixels` and :func:`tile_confidence` give from the probability raster.
    """
    if (segments_path is None) != (segment_sums_path is None):
        raise ValueError("ensemble: segment sums need a segments raster and a path to write them, or neither")
    members, weights, water = read_ensemble(ensemble_path)
    names = list(members)
    if member_paths is not None:
        if set(member_paths) != set(names):
            raise InputError(f"ensemble {ensemble_path} has members {names}, the rule's model files are of "
                             f"{sorted(member_paths)}; rebuild the ensemble")
        members = {n: member_paths[n] for n in names}
    factors = _member_factors(weights, names)
    member_outputs = dict(member_outputs or {})
    unknown = sorted(set(member_outputs) - set(names))
    if unknown:
        raise ValueError(f"ensemble: {unknown} are not members of {ensemble_path} ({names})")
    classifiers = {n: _with_threads(load_classifier(members[n], rotations=rotations), threads) for n in names}
    for name, classifier in classifiers.items():
        if classifier.n_classes != len(table):
            raise InputError(f"model {members[name]} has {classifier.n_classes} classes, the class table {len(table)}")
    codes = np.asarray(table.codes, np.uint8)
    with ExitStack() as stack:
        src = stack.enter_context(open_raster(stack_path, "band stack"))
        for name, classifier in classifiers.items():
            check_stack(src, stack_path, classifier, members[name])
        grid = dict(crs=src.crs, transform=src.transform, width=src.width, height=src.height,
                    block_size=_output_block_size(block_size))
        windows = list(block_windows(src.width, src.height, block_size))
        reach = water.near_gap_reach if water is not None else 0
        halo = max([member_halo(c, fill_gaps, valid_windows) for c in classifiers.values()] + [reach])
        reader = stack.enter_context(_BlockReader(src, windows, halo))
        writers = {name: stack.enter_context(_ClassProbabilityWriter(grid, table, *paths))
                   for name, paths in member_outputs.items()}
        layers = []  # made of each block's stored probabilities (the pass's confidence and segment sums)
        if confidence_path is not None:
            layers.append(stack.enter_context(_ConfidenceWriter(grid, confidence_path)).write)
        segment_sums = None
        if segments_path is not None:
            seg_src = stack.enter_context(open_raster(segments_path, "segments"))
            if not same_grid(seg_src, src):
                raise InputError(f"segments {segments_path} are not on the grid of the band stack {stack_path}")
            segment_sums = _SegmentSums(seg_src, segments_path, len(table))
            layers.append(segment_sums.add)
        if water is not None:
            water_bands, water_column = _water_index_bands(src, stack_path, water, table)
        current = {}

        def window_probabilities(window):
            block = reader.read(window, halo)
            current["centre"] = block[halo:halo + int(window.height), halo:halo + int(window.width)]
            if reach:
                current["near_gap"] = near_gaps(valid_pixels(_centre(block, halo - reach)), reach)

            def read(w, h):  # the member's halo: the centre of the block read once (edge padding included)
                return _centre(block, halo - h)

            stored = {}
            for name in names:
                probabilities, member_valid = predict_window_probabilities(
                    src, classifiers[name], window, fill_gaps=fill_gaps, valid_windows=valid_windows, read=read)
                member_classes, stored[name] = _classes_and_stored(probabilities, member_valid, codes, table.nodata)
                if name in writers:
                    writers[name].write(window, member_classes, stored[name])
            return _weighted_mean(stored, factors)

        decide_classes = None
        if water is not None:
            def decide_classes(window, probabilities, classes, valid):
                return water.apply(probabilities, classes, current["centre"][..., water_bands], valid, water_column,
                                   table.water_code(), current.get("near_gap"))

        def also(window, stored):
            for layer in layers:
                layer(window, stored)

        _write_class_probabilities(grid, windows, table, classified_path, probabilities_path, window_probabilities,
                                   f"product of {', '.join(f'{n} x {weights[n]:g}' for n in names)} (one pass)",
                                   decide_classes, also if layers else None)
        if segment_sums is not None:
            write_segment_sums(segment_sums_path, *segment_sums.result(), table)


class _ClassProbabilityWriter:
    """A classified raster and its uint8 probability raster, written window by window and atomically (every
    prediction: :func:`_write_class_probabilities`, and the members' own rasters of :func:`predict_tile_product`)."""

    def __init__(self, grid: dict, table: ClassTable, classified_path, probabilities_path):
        self.grid, self.table, self.paths = grid, table, (classified_path, probabilities_path)

    def __enter__(self):
        self._stack = ExitStack()
        tmp_classified = self._stack.enter_context(atomic_output(self.paths[0]))
        tmp_prob = self._stack.enter_context(atomic_output(self.paths[1]))
        table = self.table
        self.dst = self._stack.enter_context(rasterio.open(tmp_classified, "w", **raster_profile(
            **self.grid, dtype="uint8", nodata=table.nodata)))
        self.prob_dst = self._stack.enter_context(rasterio.open(tmp_prob, "w", **_probability_profile(
            self.grid, table)))
        write_class_colormap(self.dst, table)
        for band, land_class in enumerate(table.classes, start=1):
            self.prob_dst.set_band_description(band, land_class.name)
        return self

    def write(self, window, classes, stored) -> None:
        """The window's class codes (h, w) and stored probabilities (n_classes, h, w) (:func:`_classes_and_stored`)."""
        self.dst.write(classes, 1, window=window)
        self.prob_dst.write(stored, window=window)

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


class _ConfidenceWriter:
    """The pixel confidence (:func:`_pixel_confidence`) of stored probabilities, written window by window and
    atomically (the one pass of :func:`predict_tile_product`)."""

    def __init__(self, grid: dict, path):
        self.grid, self.path = grid, path

    def __enter__(self):
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_output(self.path))
        self.dst = self._stack.enter_context(rasterio.open(tmp, "w", **_confidence_profile(self.grid)))
        _describe_confidence(self.dst)
        return self

    def write(self, window, stored) -> None:
        self.dst.write(_pixel_confidence(stored), 1, window=window)

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


class _SegmentSums:
    """Per-segment sums of stored probabilities and pixels with probabilities, added block by block (a segment
    may span blocks): the numbers of :func:`segment_probability_sums` on the raster of the same blocks, as integers.
    Memory: n_segment_ids x n_classes, not the tile."""

    def __init__(self, seg_src, segments_path, n_classes: int):
        self.src, self.path = seg_src, segments_path
        self.sums = np.zeros((1, n_classes), np.int64)   # (segment id, class): one segment's classes together
        self.counts = np.zeros(1, np.int64)
        self.n_ids = 1

    def add(self, window, stored) -> None:
        seg = _segment_block(self.src, window, self.path)
        n_ids = int(seg.max(initial=0)) + 1
        if n_ids > self.sums.shape[0]:
            grow = max(n_ids, 2 * self.sums.shape[0]) - self.sums.shape[0]
            self.sums = np.pad(self.sums, ((0, grow), (0, 0)))
            self.counts = np.pad(self.counts, (0, grow))
        self.n_ids = max(self.n_ids, n_ids)
        _add_segment_sums(seg, stored, self.sums, self.counts)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_classes, n_ids) sums and (n_ids,) counts, ids up to the largest seen."""
        return self.sums[:self.n_ids].T, self.counts[:self.n_ids]


@numba.njit(cache=True, nogil=True)
def _add_segment_sums(segments, stored, sums, counts):
    """Add a block's stored probabilities (n_classes, h, w) to ``sums[segment, class]``, and its pixels with
    probabilities to ``counts[segment]``."""
    n, height, width = stored.shape
    for i in range(height):
        for j in range(width):
            s = segments[i, j]
            seen = False
            for c in range(n):
                v = stored[c, i, j]
                if v:
                    sums[s, c] += v
                    seen = True
            if seen:
                counts[s] += 1


class _BlockReader:
    """:func:`read_block_with_halo` of each of ``windows`` in turn, the next one read in a background thread while
    the current one is classified (the stack is only read here: one reader per open dataset), from the stack's
    tiles decoded once each (:class:`_StackTiles`)."""

    def __init__(self, src, windows, halo: int):
        self.src, self.windows, self.halo = src, list(windows), halo
        self._tiles = _StackTiles(src, self.windows, halo)
        self._pool = ThreadPoolExecutor(1)
        self._pending = {}
        self._next = 0
        self._ahead()

    def _ahead(self):
        if self._next < len(self.windows):
            window = self.windows[self._next]
            self._pending[_window_key(window)] = self._pool.submit(self._read, self._next)
            self._next += 1

    def _read(self, index: int) -> np.ndarray:
        window = self.windows[index]
        return _block_with_halo(self._tiles.read(index), window, self._tiles.grown[index], self.halo)

    def read(self, window: Window, halo: int) -> np.ndarray:
        """The block of ``window`` with ``halo`` <= the reader's halo (the centre of what was read)."""
        future = self._pending.pop(_window_key(window), None)
        if future is None:  # not one of the windows, or asked for twice: read it now
            block = read_block_with_halo(self.src, window, self.halo)
        else:
            self._ahead()
            block = future.result()
        if halo > self.halo:
            raise ValueError(f"block reader: halo {halo} > the {self.halo} px read")
        return _centre(block, self.halo - halo)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pool.shutdown(wait=True, cancel_futures=True)
        return False


class _StackTiles:
    """The (B, rows, cols) data of the grown windows of a run of ``windows`` read in their order, from the stack's
    internal tiles (in units of at least 256 x 256 px), each decoded once and kept only for as long as, and as far
    as, a later window needs it.

    A block's halo reaches into the tiles around it; reading each grown window from GDAL decoded those again when
    its block cache (GDAL_CACHEMAX, 256 MB in the workflow) no longer held them -- a 10-band 10980 px stack has
    110 MB of tiles per row of tiles -- which cost the logistic regression's tile a third of its CPU time.  Kept
    here: the rows of the tiles that later windows need, about one row of tiles.
    """

    def __init__(self, src, windows, halo: int):
        self.src = src
        self.grown = [grown_window(w, halo, src.width, src.height) for w in windows]
        block_rows, block_cols = src.block_shapes[0] if len(set(src.block_shapes)) == 1 else (1, src.width)
        self.unit = (block_rows * -(-256 // block_rows), block_cols * -(-256 // block_cols))
        # Per unit: the windows that need it, in order, and the first row any window from there on needs.
        needs: dict = {}
        for index, grown in enumerate(self.grown):
            for key, first_row in self._units(grown):
                needs.setdefault(key, []).append((index, first_row))
        self._needs = {}
        for key, uses in needs.items():
            first_rows = [row for _, row in uses]
            for i in range(len(first_rows) - 2, -1, -1):
                first_rows[i] = min(first_rows[i], first_rows[i + 1])
            self._needs[key] = ([index for index, _ in uses], first_rows)
        self._cache = {}   # unit -> (its first row held, (B, rows, cols) data)
        self._done = -1

    def _units(self, grown: Window):
        unit_rows, unit_cols = self.unit
        row0, col0 = int(grown.row_off), int(grown.col_off)
        row1, col1 = row0 + int(grown.height), col0 + int(grown.width)
        for unit_row in range(row0 // unit_rows, (row1 - 1) // unit_rows + 1):
            for unit_col in range(col0 // unit_cols, (col1 - 1) // unit_cols + 1):
                yield (unit_row, unit_col), max(row0, unit_row * unit_rows)

    def _unit(self, key, first_row: int):
        held = self._cache.get(key)
        if held is None or held[0] > first_row:   # (a window out of order would need rows already dropped)
            unit_rows, unit_cols = self.unit
            row0, col0 = key[0] * unit_rows, key[1] * unit_cols
            window = Window(col0, row0, min(unit_cols, self.src.width - col0), min(unit_rows, self.src.height - row0))
            held = self._cache[key] = (row0, self.src.read(window=window))
        return held

    def read(self, index: int) -> np.ndarray:
        """The data of grown window ``index``, the same as ``src.read(window=grown[index])``."""
        grown = self.grown[index]
        row0, col0 = int(grown.row_off), int(grown.col_off)
        out = np.empty((self.src.count, int(grown.height), int(grown.width)), dtype=self.src.dtypes[0])
        unit_rows, unit_cols = self.unit
        for key, first_row in self._units(grown):
            held_row, data = self._unit(key, first_row)
            unit_col0 = key[1] * unit_cols
            rows = slice(first_row, min(row0 + out.shape[1], (key[0] + 1) * unit_rows))
            cols = slice(max(col0, unit_col0), min(col0 + out.shape[2], unit_col0 + unit_cols))
            out[:, rows.start - row0:rows.stop - row0, cols.start - col0:cols.stop - col0] = \
                data[:, rows.start - held_row:rows.stop - held_row, cols.start - unit_col0:cols.stop - unit_col0]
        self._done = max(self._done, index)
        self._forget()
        return out

    def _forget(self) -> None:
        """Drop what no later window needs: whole units, or the rows of a unit above those still needed."""
        for key in list(self._cache):
            indices, first_rows = self._needs.get(key, ([], []))
            later = bisect.bisect_right(indices, self._done)
            if later == len(indices):
                del self._cache[key]
                continue
            held_row, data = self._cache[key]
            if first_rows[later] > held_row:
                self._cache[key] = (first_rows[later], data[:, first_rows[later] - held_row:].copy())


def _centre(block: np.ndarray, cut: int) -> np.ndarray:
    """``block`` without ``cut`` rows and columns on every side (a smaller halo of the same window)."""
    return block[cut:block.shape[0] - cut, cut:block.shape[1] - cut] if cut else block


def _window_key(window: Window) -> tuple:
    return int(window.col_off), int(window.row_off), int(window.width), int(window.height)


def _water_decision(stack_src, stack_path, grid_src, water, table: ClassTable):
    """``decide_classes`` of :func:`_write_class_probabilities` for a :class:`osmlulc.selection.WaterDecision`."""
    if not same_grid(stack_src, grid_src):
        raise InputError(f"band stack {stack_path} is not on the grid of the probabilities it should decide water for")
    bands, water_column = _water_index_bands(stack_src, stack_path, water, table)
    read_bands = [band + 1 for band in bands]
    reach = water.near_gap_reach

    def decide(window, probabilities, classes, valid):
        near_gap = None
        if reach:  # every band with the halo: the gaps around the window, and the decision's bands from its centre
            block = read_block_with_halo(stack_src, window, reach)
            near_gap = near_gaps(valid_pixels(block), reach)
            pixels = _centre(block, reach)[..., bands]
        else:
            pixels = np.moveaxis(stack_src.read(read_bands, window=window), 0, -1)
        return water.apply(probabilities, classes, pixels, valid, water_column, table.water_code(), near_gap)

    return decide


def _segment_block(segments_src, window: Window, segments_path) -> np.ndarray:
    seg = segments_src.read(1, window=window)
    if np.issubdtype(seg.dtype, np.floating) or (seg < 0).any():
        raise InputError(f"segments {segments_path} must hold non-negative integer segment ids")
    return seg.astype(np.int64)


def _require_segments_grid(seg_src, prob_src, segments_path, probabilities_path) -> None:
    if not same_grid(seg_src, prob_src):
        raise InputError(f"segments {segments_path} are not on the grid of {probabilities_path}")


def segment_probability_sums(prob_src, seg_src, windows, segments_path) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment sums of the stored probabilities (n_classes, n_ids) and pixels with probabilities (n_ids,).

    One pass over ``windows`` of an open probability raster and its segment raster; uint8
    sums are exact in float64.  The arrays grow with the largest segment id seen.
    """
    n_classes = prob_src.count
    sums = np.zeros((n_classes, 1), dtype=np.float64)
    counts = np.zeros(1, dtype=np.int64)
    for window in progress(windows, f"segment probability sums {os.path.basename(str(segments_path))}"):
        seg = _segment_block(seg_src, window, segments_path).ravel()
        prob = prob_src.read(window=window).reshape(n_classes, -1)
        n_ids = int(seg.max(initial=0)) + 1
        if n_ids > sums.shape[1]:
            grow = max(n_ids, 2 * sums.shape[1]) - sums.shape[1]
            sums = np.pad(sums, ((0, 0), (0, grow)))
            counts = np.pad(counts, (0, grow))
        for c in range(n_classes):
            sums[c] += np.bincount(seg, weights=prob[c], minlength=sums.shape[1])
        counts += np.bincount(seg[(prob > 0).any(axis=0)], minlength=counts.shape[0])
    return sums, counts


#: The confidence layer is uint8 percent: round(100 * maximum probability); 0 = nodata (a maximum
#: probability is at least 1 / n_classes, so a valid pixel is never 0).
CONFIDENCE_SCALE = 100


def _pixel_confidence(stored: np.ndarray) -> np.ndarray:
    """Stored uint8 probabilities (n_classes, h, w) -> the confidence (h, w): round(100 * maximum probability),
    at least 1 where the pixel has probabilities, 0 (nodata) where it has none."""
    has_probabilities = (stored > 0).any(axis=0)
    confidence = np.rint(stored.max(axis=0) / PROBABILITY_SCALE * CONFIDENCE_SCALE)
    return np.where(has_probabilities, np.maximum(confidence, 1), 0).astype(np.uint8)


def _segment_confidence(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per segment id: the confidence of its pixels with probabilities, round(100 * maximum mean probability),
    at least 1 (:func:`segment_probability_sums`' sums and counts)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_max = np.where(counts > 0, sums.max(axis=0) / np.maximum(counts, 1), 0.0)
    return np.maximum(np.rint(mean_max / PROBABILITY_SCALE * CONFIDENCE_SCALE), 1).astype(np.uint8)


def _segment_classes(sums: np.ndarray, table: ClassTable) -> np.ndarray:
    """Per segment id: the class code of its largest probability sum (= of its largest mean); nodata for
    segment 0 and segments without probabilities."""
    segment_class = np.where(sums.sum(axis=0) > 0, table.codes[sums.argmax(axis=0)], table.nodata).astype(np.uint8)
    segment_class[0] = table.nodata
    return segment_class


def _confidence_profile(grid: dict) -> dict:
    return raster_profile(**grid, dtype="uint8", nodata=0)


def _describe_confidence(dst) -> None:
    dst.set_band_description(1, "confidence: maximum class probability (%)")
    dst.update_tags(1, UNITS="percent", SCALE="value = round(100 * maximum probability); 0 = nodata")


def _paint_segments(seg_src, segments_path, windows, per_segment: np.ndarray, has_probabilities, nodata: int, dst,
                    what: str) -> None:
    """Write each pixel's ``per_segment`` value where ``has_probabilities(window)``, ``nodata`` elsewhere."""
    for window in progress(windows, what):
        seg = _segment_block(seg_src, window, segments_path)
        if seg.max(initial=0) >= len(per_segment):
            raise InputError(f"segments {segments_path} have segment id {int(seg.max())}, beyond the "
                             f"{len(per_segment) - 1} of their probability sums; predict the tile again")
        values = np.where(has_probabilities(window), per_segment[seg], nodata).astype(np.uint8)
        dst.write(values, 1, window=window)


def tile_confidence(probabilities_path, dst_path, *, segments_path=None, block_size: int = BLOCK_SIZE * 2) -> None:
    """Per-pixel confidence of a tile's prediction: the maximum class probability, in percent (uint8, 0 = nodata).

    Pixel mode: the maximum of the pixel's stored probabilities.  Superpixel mode (with
    ``segments_path``): the maximum of the superpixel's mean probabilities — the probability
    of the class the superpixel was given (see :func:`predict_tile_superpixels`).
    The ensemble's one pass (:func:`predict_tile_product`) makes the same without the probability raster.
    """
    with ExitStack() as stack:
        prob_src = stack.enter_context(open_raster(probabilities_path, "probabilities"))
        windows = list(block_windows(prob_src.width, prob_src.height, block_size))
        grid = dict(crs=prob_src.crs, transform=prob_src.transform, width=prob_src.width, height=prob_src.height,
                    block_size=_output_block_size(block_size))
        tmp = stack.enter_context(atomic_output(dst_path))
        dst = stack.enter_context(rasterio.open(tmp, "w", **_confidence_profile(grid)))
        _describe_confidence(dst)
        if segments_path is None:
            for window in progress(windows, f"confidence {os.path.basename(str(dst_path))}"):
                dst.write(_pixel_confidence(prob_src.read(window=window)), 1, window=window)
            return
        seg_src = stack.enter_context(open_raster(segments_path, "segments"))
        _require_segments_grid(seg_src, prob_src, segments_path, probabilities_path)
        sums, counts = segment_probability_sums(prob_src, seg_src, windows, segments_path)
        _paint_segments(seg_src, segments_path, windows, _segment_confidence(sums, counts),
                        lambda window: (prob_src.read(window=window) > 0).any(axis=0), 0, dst,
                        f"confidence {os.path.basename(str(dst_path))}")


def predict_tile_superpixels(probabilities_path, segments_path, table: ClassTable, classified_path, *,
                             block_size: int = BLOCK_SIZE * 2) -> None:
    """Class of each superpixel = argmax of the mean pixel probability inside it.

    No second classifier pass: pass 1 accumulates per-segment probability sums block by block
    (``np.bincount``); pass 2 writes each segment's class.  Segment 0 and pixels without
    probabilities (nodata) get 0.  Memory grows with the number of segments, not the raster.
    The ensemble's one pass gives the sums without the probability raster (:func:`predict_superpixels_from_sums`).
    """
    n_classes = len(table)
    with open_raster(probabilities_path, "probabilities") as prob_src, \
            open_raster(segments_path, "segments") as seg_src:
        if prob_src.count != n_classes:
            raise InputError(f"probabilities {probabilities_path} have {prob_src.count} bands, "
                             f"the class table {n_classes} classes")
        _require_segments_grid(seg_src, prob_src, segments_path, probabilities_path)
        windows = list(block_windows(prob_src.width, prob_src.height, block_size))

        # Pass 1: per-segment sums of probabilities (argmax of the sums = argmax of the means,
        # as all classes of a segment share its pixel count).
        sums, _ = segment_probability_sums(prob_src, seg_src, windows, segments_path)
        LOG.info("superpixels %s: %d segment ids", os.path.basename(segments_path), sums.shape[1] - 1)

        # Pass 2: paint each segment's class; pixels without probabilities stay nodata.
        _write_superpixel_classes(classified_path, prob_src, seg_src, segments_path, windows,
                                  _segment_classes(sums, table), table,
                                  lambda window: (prob_src.read(window=window) > 0).any(axis=0), block_size)


def _write_superpixel_classes(classified_path, grid_src, seg_src, segments_path, windows, segment_class, table,
                              has_probabilities, block_size: int) -> None:
    profile = raster_profile(crs=grid_src.crs, transform=grid_src.transform, width=grid_src.width,
                             height=grid_src.height, dtype="uint8", nodata=table.nodata,
                             block_size=_output_block_size(block_size))
    with atomic_output(classified_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        write_class_colormap(dst, table)
        _paint_segments(seg_src, segments_path, windows, segment_class, has_probabilities, table.nodata, dst,
                        f"superpixel classes {os.path.basename(str(classified_path))}")


# The one pass's superpixel means: its per-segment sums and counts, kept beside the tile's other outputs.

def write_segment_sums(path, sums: np.ndarray, counts: np.ndarray, table: ClassTable) -> None:
    """Write per-segment probability sums (n_classes, n_ids) and pixel counts (n_ids,) (``.npz``, atomically),
    with the class codes they are of."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, sums=np.ascontiguousarray(sums, dtype=np.int64), counts=counts.astype(np.int64),
                            codes=np.asarray(table.codes, np.int64))


def read_segment_sums(path, table: ClassTable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sums (float64, as :func:`segment_probability_sums` gives them) and counts of :func:`write_segment_sums`;
    with ``table``: one line if they are of other classes."""
    try:
        with np.load(path) as data:
            sums, counts, codes = data["sums"].astype(np.float64), data["counts"], data["codes"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"segment probability sums {path} cannot be read: {err}") from None
    if table is not None and codes.tolist() != np.asarray(table.codes).tolist():
        raise InputError(f"segment probability sums {path} are of classes {codes.tolist()}, the class table has "
                         f"{np.asarray(table.codes).tolist()}; predict the tile again")
    return sums, counts


def _pass_layer_sources(stack, confidence_path, segments_path, segment_sums_path, table):
    """Open the one pass's pixel confidence and the segments (same grid); the sums and counts."""
    conf_src = stack.enter_context(open_raster(confidence_path, "confidence"))
    seg_src = stack.enter_context(open_raster(segments_path, "segments"))
    _require_segments_grid(seg_src, conf_src, segments_path, confidence_path)
    sums, counts = read_segment_sums(segment_sums_path, table)
    return conf_src, seg_src, sums, counts


def predict_superpixels_from_sums(segment_sums_path, segments_path, confidence_path, table: ClassTable,
                                  classified_path, *, block_size: int = BLOCK_SIZE * 2) -> None:
    """:func:`predict_tile_superpixels` from what the ensemble's one pass (:func:`predict_tile_product`) wrote: its
    per-segment sums, and its pixel confidence for which pixels have probabilities (not 0): the same classes,
    without reading the probability raster."""
    with ExitStack() as stack:
        conf_src, seg_src, sums, _ = _pass_layer_sources(stack, confidence_path, segments_path, segment_sums_path,
                                                         table)
        windows = list(block_windows(conf_src.width, conf_src.height, block_size))
        LOG.info("superpixels %s: %d segment ids", os.path.basename(str(segments_path)), sums.shape[1] - 1)
        _write_superpixel_classes(classified_path, conf_src, seg_src, segments_path, windows,
                                  _segment_classes(sums, table), table,
                                  lambda window: conf_src.read(1, window=window) > 0, block_size)


def superpixel_confidence_from_sums(segment_sums_path, segments_path, confidence_path, dst_path, *,
                                    block_size: int = BLOCK_SIZE * 2) -> None:
    """:func:`tile_confidence` in superpixel mode from what the ensemble's one pass wrote (its per-segment sums and
    its pixel confidence): the same numbers, without reading the probability raster."""
    with ExitStack() as stack:
        conf_src, seg_src, sums, counts = _pass_layer_sources(stack, confidence_path, segments_path,
                                                              segment_sums_path, None)
        grid = dict(crs=conf_src.crs, transform=conf_src.transform, width=conf_src.width, height=conf_src.height,
                    block_size=_output_block_size(block_size))
        tmp = stack.enter_context(atomic_output(dst_path))
        dst = stack.enter_context(rasterio.open(tmp, "w", **_confidence_profile(grid)))
        _describe_confidence(dst)
        _paint_segments(seg_src, segments_path, list(block_windows(conf_src.width, conf_src.height, block_size)),
                        _segment_confidence(sums, counts), lambda window: conf_src.read(1, window=window) > 0, 0,
                        dst, f"confidence {os.path.basename(str(dst_path))}")


def unclipped_tile_confidence(scratch_path, *, probabilities_path=None, confidence_path=None, segments_path=None,
                               segment_sums_path=None):
    """Rule tile_confidence before its clip to the tile's own footprint: the path of the confidence of the
    product's prediction of a tile (:func:`tile_confidence`), written to ``scratch_path`` where it is computed.

    From the product model's ``probabilities_path`` (with ``segments_path`` in superpixel mode), or from what
    the ensemble's one pass wrote: its pixel ``confidence_path`` as it is, or with ``segment_sums_path`` and
    ``segments_path`` in superpixel mode (:func:`superpixel_confidence_from_sums`)."""
    if (probabilities_path is None) == (confidence_path is None):
        raise ValueError("tile confidence: give the probabilities or the one pass's confidence")
    if probabilities_path is not None:
        tile_confidence(probabilities_path, scratch_path, segments_path=segments_path)
        return scratch_path
    if (segments_path is None) != (segment_sums_path is None):
        raise ValueError("tile confidence: the one pass's superpixel confidence needs its segment sums and segments")
    if segments_path is None:
        return confidence_path
    superpixel_confidence_from_sums(segment_sums_path, segments_path, confidence_path, scratch_path)
    return scratch_path
