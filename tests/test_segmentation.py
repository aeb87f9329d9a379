"""SNIC superpixels: known answers on small arrays and on a small synthetic stack."""

from __future__ import annotations

import fiona
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from scipy import ndimage

from osmlulc.io import InputError
from osmlulc.segmentation import reflectance_to_colour, segment_tile
from osmlulc.snic import seed_grid, snic


def two_colour_image(height: int, width: int, edge_col: int) -> np.ndarray:
    """Columns < edge_col one colour, the rest another (CIELAB-like magnitudes)."""
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:, :edge_col] = (40.0, 60.0, 30.0)
    image[:, edge_col:] = (70.0, -40.0, 10.0)
    return image


def assert_labels_are_1_to_n(labels: np.ndarray) -> int:
    ids = np.unique(labels[labels > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1))
    return len(ids)


def assert_segments_connected(labels: np.ndarray) -> None:
    """Every superpixel is one 4-connected patch (SNIC grows each from one seed)."""
    for segment in np.unique(labels[labels > 0]):
        _, n_parts = ndimage.label(labels == segment)
        assert n_parts == 1, f"segment {segment} has {n_parts} parts"


# --- seed grid ---------------------------------------------------------------------------

def test_seed_grid_step_equals_spacing_when_length_is_a_multiple():
    centres, edges = seed_grid(100, 10)
    assert centres.tolist() == list(range(5, 100, 10))
    assert edges.tolist() == list(range(0, 101, 10))


def test_seed_grid_cells_tile_any_length_exactly():
    centres, edges = seed_grid(44, 16)  # 44 / 16 = 2.75 -> 3 cells of ~14.7 px
    assert edges.tolist() == [0, 14, 29, 44]
    assert centres.tolist() == [7, 22, 36]
    assert seed_grid(5, 16)[1].tolist() == [0, 5]  # shorter than one step: one cell


# --- snic on arrays -----------------------------------------------------------------------

def test_two_flat_regions_with_spacing_half_the_width_are_respected():
    image = two_colour_image(40, 40, edge_col=20)
    labels = snic(image, spacing=20, compactness=10.0)
    assert (labels > 0).all()
    assert assert_labels_are_1_to_n(labels) == 4
    left, right = set(np.unique(labels[:, :20])), set(np.unique(labels[:, 20:]))
    assert len(left) == 2 and len(right) == 2
    assert not left & right, "a segment crosses the colour edge"
    assert_segments_connected(labels)


def test_colour_edge_off_the_seed_grid_is_still_respected():
    # The edge at column 13 cuts through the left seed cell (cells 0..19 and 20..39).
    image = two_colour_image(40, 40, edge_col=13)
    labels = snic(image, spacing=20, compactness=10.0)
    assert not set(np.unique(labels[:, :13])) & set(np.unique(labels[:, 13:]))


def test_constant_image_gives_a_regular_grid_of_similar_segments():
    height, width, spacing = 100, 120, 10
    labels = snic(np.full((height, width, 3), 50.0), spacing=spacing, compactness=10.0)
    assert (labels > 0).all()
    n = assert_labels_are_1_to_n(labels)
    assert n == (height // spacing) * (width // spacing)
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.min() >= 0.6 * spacing**2 and sizes.max() <= 1.5 * spacing**2
    assert_segments_connected(labels)


def test_invalid_pixels_get_zero_and_belong_to_no_segment():
    rng = np.random.default_rng(0)
    image = rng.random((60, 60, 3)) * 100
    valid = np.ones((60, 60), dtype=bool)
    valid[:25, :25] = False        # nodata corner covering several seed points
    valid[40:50, 40:50] = False    # a nodata ring around a valid island no seed can reach
    valid[44:46, 44:46] = True
    valid[5, 35] = False           # a seed point (cell 30..39 -> seed at 35) on nodata
    labels = snic(image, spacing=10, compactness=5.0, valid=valid)
    assert (labels[~valid] == 0).all()
    assert (labels[valid] > 0).all()
    assert_labels_are_1_to_n(labels)
    island = np.unique(labels[44:46, 44:46])
    assert len(island) == 1 and (labels == island[0]).sum() == 4  # the island is a superpixel of its own
    assert_segments_connected(labels)


def test_snic_is_deterministic():
    rng = np.random.default_rng(3)
    image = rng.random((80, 90, 3)).astype(np.float32) * 100
    first = snic(image, spacing=8, compactness=2.0)
    second = snic(image.copy(), spacing=8, compactness=2.0)
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.int32


def test_snic_follows_colour_more_when_compactness_is_low():
    # A wavy colour edge: low compactness must follow it, very high compactness gives square cells.
    height, width = 60, 60
    rows, cols = np.indices((height, width))
    edge = 30 + (8 * np.sin(rows / 6.0)).astype(int)
    image = np.where((cols < edge)[..., None], 20.0, 80.0) * np.ones(3)

    def crossing_segments(labels):
        left, right = set(np.unique(labels[cols < edge])), set(np.unique(labels[cols >= edge]))
        return len(left & right)

    assert crossing_segments(snic(image, spacing=10, compactness=1.0)) == 0
    assert crossing_segments(snic(image, spacing=10, compactness=1e4)) > 0


def test_snic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="image must be"):
        snic(np.zeros((10, 10)), spacing=5, compactness=1.0)
    with pytest.raises(ValueError, match="spacing"):
        snic(np.zeros((10, 10, 3)), spacing=0, compactness=1.0)
    with pytest.raises(ValueError, match="valid mask shape"):
        snic(np.zeros((10, 10, 3)), spacing=5, compactness=1.0, valid=np.ones((9, 10), bool))


def test_reflectance_to_colour_stretch_and_lab():
    dn = np.array([[[3000, 3000, 3000], [0, 0, 0], [6000, 1500, 0]]], dtype=np.uint16)
    rgb = reflectance_to_colour(dn, "rgb")
    np.testing.assert_allclose(rgb[0], [[1, 1, 1], [0, 0, 0], [1, 0.5, 0]], atol=1e-6)
    lab = reflectance_to_colour(dn, "lab")
    np.testing.assert_allclose(lab[0, 0], [100, 0, 0], atol=1e-2)  # 0.3 reflectance = white
    np.testing.assert_allclose(lab[0, 1], [0, 0, 0], atol=1e-3)
    with pytest.raises(ValueError, match="colour_space"):
        reflectance_to_colour(dn, "hsv")


# --- segment_tile ---------------------------------------------------------------------------

HEIGHT, WIDTH, BLOCK = 300, 250, 128
CRS_UTM = CRS.from_epsg(32632)
TRANSFORM = from_origin(499980.0, 5400000.0, 10.0, 10.0)


@pytest.fixture(scope="module")
def stack_path(tmp_path_factory):
    """4-band uint16 stack: fields of different colours with noise, a nodata corner, and one
    pixel that is 0 only in band 4 (not an RGB band) to check the any-band nodata rule."""
    rng = np.random.default_rng(11)
    # Fields of 60 x 50 px (so every field piece in a block holds a seed); (field row + 2 * field col) % 5 picks
    # the colour, so neighbouring fields never share one.  Columns: B02, B03, B04, B08 digital numbers.
    palette = np.array([[400, 700, 500, 3000], [1200, 1100, 900, 2500], [300, 400, 250, 1000],
                        [600, 900, 1600, 2800], [1800, 1900, 2000, 2600]])
    rows, cols = np.indices((HEIGHT, WIDTH))
    data = palette[(rows // 60 + 2 * (cols // 50)) % 5].transpose(2, 0, 1)
    data = data + rng.integers(-60, 60, size=data.shape)
    data = data.astype(np.uint16)
    data[:, :50, :60] = 0
    data[3, 200, 100] = 0
    path = tmp_path_factory.mktemp("stack") / "stack_10m.tif"
    profile = dict(driver="GTiff", width=WIDTH, height=HEIGHT, count=4, dtype="uint16", nodata=0,
                   crs=CRS_UTM, transform=TRANSFORM)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def segmented(stack_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("segments")
    segments, centroids = out / "snic_segments.tif", out / "snic_centroids.gpkg"
    n = segment_tile(str(stack_path), [3, 2, 1], str(segments), str(centroids),
                     spacing=16, compactness=1.0, block_size=BLOCK)
    with rasterio.open(segments) as src:
        labels = src.read(1)
        meta = (src.crs, src.transform, src.dtypes[0], src.nodata, src.width, src.height)
    with fiona.open(centroids, layer="centroids") as layer:
        crs_wkt = layer.crs_wkt
        records = [(f.properties["segment"], f.properties["row"], f.properties["col"],
                    f.properties["n_pixels"], f.geometry.coordinates) for f in layer]
    return n, labels, meta, crs_wkt, records, out


def test_segment_raster_has_the_stack_grid_and_unique_ids(segmented):
    n, labels, (crs, transform, dtype, nodata, width, height), *_ = segmented
    assert (crs, transform, dtype, nodata, width, height) == (CRS_UTM, TRANSFORM, "int32", 0, WIDTH, HEIGHT)
    assert assert_labels_are_1_to_n(labels) == n
    # 128-px blocks of 16-px cells: 8 x 8 seeds per full block, fewer at the nodata corner.
    assert 0.7 * (HEIGHT * WIDTH) / 16**2 < n < 1.3 * (HEIGHT * WIDTH) / 16**2


def test_nodata_in_any_band_is_not_segmented(segmented, stack_path):
    labels = segmented[1]
    with rasterio.open(stack_path) as src:
        valid = (src.read() != 0).all(axis=0)
    assert not valid[200, 100]
    np.testing.assert_array_equal(labels > 0, valid)


def test_no_segment_crosses_a_block_border(segmented):
    labels = segmented[1]
    rows, cols = np.indices(labels.shape)
    block_of_pixel = (rows // BLOCK) * 1000 + cols // BLOCK
    has_label = labels > 0
    pairs = np.unique(np.stack([labels[has_label], block_of_pixel[has_label]]), axis=1)
    assert pairs.shape[1] == len(np.unique(labels[has_label])), "a segment spans two blocks"


def test_centroids_are_the_mean_pixel_positions(segmented):
    n, labels, (crs, transform, *_), crs_wkt, records, _ = segmented
    assert CRS.from_wkt(crs_wkt) == CRS_UTM
    assert len(records) == n
    segment, row, col, n_pixels, xy = zip(*records)
    segment = np.array(segment)
    assert sorted(segment.tolist()) == list(range(1, n + 1))
    order = np.argsort(segment)
    row, col, n_pixels = np.array(row)[order], np.array(col)[order], np.array(n_pixels)[order]
    xy = np.array(xy)[order]

    flat = labels.ravel()
    rows, cols = np.indices(labels.shape)
    counts = np.bincount(flat, minlength=n + 1)[1:]
    np.testing.assert_array_equal(n_pixels, counts)
    np.testing.assert_allclose(row, np.bincount(flat, rows.ravel(), n + 1)[1:] / counts, atol=1e-9)
    np.testing.assert_allclose(col, np.bincount(flat, cols.ravel(), n + 1)[1:] / counts, atol=1e-9)
    assert row.min() >= 0 and row.max() <= HEIGHT - 1 and col.min() >= 0 and col.max() <= WIDTH - 1
    x, y = transform * (col + 0.5, row + 0.5)
    np.testing.assert_allclose(xy, np.stack([x, y], axis=1), atol=1e-6)


def test_segment_tile_in_rgb_and_lab_both_follow_the_fields(stack_path, tmp_path):
    # Field edges every 60 rows / 50 cols; with low compactness no superpixel straddles them.
    for colour_space in ("lab", "rgb"):
        segments = tmp_path / f"{colour_space}.tif"
        segment_tile(str(stack_path), [3, 2, 1], str(segments), str(tmp_path / f"{colour_space}.gpkg"),
                     spacing=16, compactness=0.5 if colour_space == "lab" else 0.005, block_size=BLOCK,
                     colour_space=colour_space)
        with rasterio.open(segments) as src:
            labels = src.read(1)
        rows, cols = np.indices(labels.shape)
        field = (rows // 60) * 100 + cols // 50
        has_label = labels > 0
        pairs = np.unique(np.stack([labels[has_label], field[has_label]]), axis=1)
        n = len(np.unique(labels[has_label]))
        assert pairs.shape[1] == n, f"{colour_space}: {pairs.shape[1] - n} segments straddle field edges"


def test_blocks_that_are_not_a_multiple_of_the_spacing(stack_path, tmp_path):
    segments = tmp_path / "s.tif"
    n = segment_tile(str(stack_path), [3, 2, 1], str(segments), str(tmp_path / "c.gpkg"),
                     spacing=16, compactness=1.0, block_size=100)
    with rasterio.open(segments) as src:
        labels = src.read(1)
    assert assert_labels_are_1_to_n(labels) == n
    rows, cols = np.indices(labels.shape)
    block_of_pixel = (rows // 100) * 1000 + cols // 100
    has_label = labels > 0
    pairs = np.unique(np.stack([labels[has_label], block_of_pixel[has_label]]), axis=1)
    assert pairs.shape[1] == n
    # 100 px blocks -> round(100 / 16) = 6 cells of 16.7 px: 36 seeds per full block.
    full_blocks = labels[100:200, 100:200]
    assert len(np.unique(full_blocks)) == 36


def test_segment_tile_rejects_bad_band_indexes_and_leaves_no_output(stack_path, tmp_path):
    segments, centroids = tmp_path / "s.tif", tmp_path / "c.gpkg"
    with pytest.raises(InputError, match=r"stack_10m\.tif.*rgb_bands"):
        segment_tile(str(stack_path), [5, 2, 1], str(segments), str(centroids),
                     spacing=16, compactness=1.0, block_size=BLOCK)
    assert list(tmp_path.iterdir()) == []


def read_outputs(segments, centroids):
    with rasterio.open(segments) as src:
        labels = src.read(1)
    with fiona.open(centroids, layer="centroids") as layer:
        records = [(f.properties["segment"], f.properties["n_pixels"], f.geometry.coordinates) for f in layer]
    return labels, records


def test_segment_tile_gives_the_same_result_with_any_number_of_threads(segmented, stack_path, tmp_path):
    n, labels, *_, records, _ = segmented
    for threads in (2, 3):
        segments, centroids = tmp_path / f"s{threads}.tif", tmp_path / f"c{threads}.gpkg"
        assert segment_tile(str(stack_path), [3, 2, 1], str(segments), str(centroids), spacing=16,
                            compactness=1.0, block_size=BLOCK, threads=threads) == n
        threaded_labels, threaded_records = read_outputs(segments, centroids)
        np.testing.assert_array_equal(threaded_labels, labels)
        assert [(s, c) for s, _, _, c, _ in records] == [(s, c) for s, c, _ in threaded_records]


def test_slic_method_follows_the_fields_and_keeps_nodata_out(stack_path, tmp_path):
    segments, centroids = tmp_path / "slic.tif", tmp_path / "slic.gpkg"
    n = segment_tile(str(stack_path), [3, 2, 1], str(segments), str(centroids), spacing=16, compactness=1.0,
                     block_size=BLOCK, method="slic", threads=2)
    labels, records = read_outputs(segments, centroids)
    assert assert_labels_are_1_to_n(labels) == n == len(records)
    with rasterio.open(stack_path) as src:
        valid = (src.read() != 0).all(axis=0)
    np.testing.assert_array_equal(labels > 0, valid)
    assert 0.5 * (HEIGHT * WIDTH) / 16**2 < n < 1.5 * (HEIGHT * WIDTH) / 16**2
    # The superpixels follow the field edges: far more pixels lie in a superpixel whose majority
    # field is their own than with a plain 16 px grid of the same cell count.
    rows, cols = np.indices(labels.shape)
    field = ((rows // 60) * 100 + cols // 50)[valid]

    def purity(segment_ids):
        pairs, counts = np.unique(np.stack([segment_ids, field]), axis=1, return_counts=True)
        majority = np.zeros(pairs[0].max() + 1, dtype=np.int64)
        np.maximum.at(majority, pairs[0], counts)
        return majority.sum() / field.size

    grid = ((rows // 16) * 1000 + cols // 16)[valid]
    assert purity(labels[valid]) > purity(grid) + 0.04   # 0.925 vs 0.867 when written


def test_segment_tile_rejects_an_unknown_method_and_leaves_no_output(stack_path, tmp_path):
    with pytest.raises(ValueError, match="method"):
        segment_tile(str(stack_path), [3, 2, 1], str(tmp_path / "s.tif"), str(tmp_path / "c.gpkg"), spacing=16,
                     compactness=1.0, block_size=BLOCK, method="watershed")
    assert list(tmp_path.iterdir()) == []
