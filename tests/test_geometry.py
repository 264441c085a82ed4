import numpy as np
import pytest
from cvat_sdk.masks import decode_mask, encode_mask

from quadratseg.errors import QuadratsegError
from quadratseg.geometry import (
    PolygonWithHoles,
    cvat_rle_to_mask,
    mask_to_cvat_rle,
    mask_to_polygons,
    mask_to_xyxy,
    polygon_area,
    polygon_to_mask,
    polygon_to_xyxy,
    polygons_to_mask,
    repair_polygon,
)


def random_masks(n, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        if i % 3 == 0:
            yield rng.random((h, w)) < rng.random()
        else:
            blurred = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2)
            yield blurred > np.quantile(blurred, rng.uniform(0.2, 0.95))


def test_rle_matches_cvat_sdk_encoder_on_random_masks():
    for mask in random_masks(300):
        assert mask_to_cvat_rle(mask) == encode_mask(mask)


def test_rle_matches_cvat_sdk_with_explicit_box():
    rng = np.random.default_rng(1)
    for mask in random_masks(100, seed=1):
        h, w = mask.shape
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x2, y2 = int(rng.integers(x1 + 1, w + 1)), int(rng.integers(y1 + 1, h + 1))
        assert mask_to_cvat_rle(mask, (x1, y1, x2, y2)) == encode_mask(mask, bbox=[x1, y1, x2, y2])


def test_rle_decodes_like_cvat_sdk_and_round_trips():
    for mask in random_masks(200, seed=2):
        rle = encode_mask(mask)
        h, w = mask.shape
        ours = cvat_rle_to_mask(rle, (w, h))
        assert np.array_equal(ours, decode_mask(rle, image_width=w, image_height=h))
        box = mask_to_xyxy(mask)
        if box is not None:
            assert np.array_equal(ours, mask)


def test_rle_of_the_cvat_docs_example():
    # CVAT's lambda test mock: runs then the inclusive box 0,0 .. 2,3 (3 x 4 = 12 pixels)
    points = [255, 255, 0, 0, 255, 255, 0, 0, 255, 255, 0, 0, 0, 0, 2, 3]
    with pytest.raises(QuadratsegError, match="runs sum"):
        cvat_rle_to_mask(points, (10, 10))
    mask = cvat_rle_to_mask([2, 3, 7, 0, 0, 2, 3], (5, 5))
    assert mask.sum() == 3 and mask[0, 2] and not mask[0, 0]


@pytest.mark.parametrize(
    "points, size, message",
    [
        ([1, 2], (5, 5), "needs runs"),
        ([1, 0, 0, 9, 0], (5, 5), "outside"),
        ([1.5, 0, 0, 0, 0], (5, 5), "whole numbers"),
    ],
)
def test_rle_decode_rejects_bad_input(points, size, message):
    with pytest.raises(QuadratsegError, match=message):
        cvat_rle_to_mask(points, size)


def test_rle_encode_rejects_non_bool_and_bad_box():
    with pytest.raises(QuadratsegError):
        mask_to_cvat_rle(np.ones((3, 3), np.uint8))
    with pytest.raises(QuadratsegError, match="outside"):
        mask_to_cvat_rle(np.ones((3, 3), bool), (0, 0, 4, 3))


def test_polygon_to_mask_rectangle_is_exact():
    square = np.array([[2, 1], [6, 1], [6, 4], [2, 4]], float)
    mask = polygon_to_mask(square, (8, 6))
    assert mask.sum() == 4 * 3
    assert mask[1:4, 2:6].all()
    assert polygon_area(square) == 12


def test_mask_polygon_mask_round_trip_is_exact():
    for mask in random_masks(60, seed=3):
        polys = mask_to_polygons(mask, min_area=0)
        back = polygons_to_mask(polys, (mask.shape[1], mask.shape[0]))
        assert np.array_equal(back, mask)


def test_holes_islands_and_specks():
    mask = np.zeros((20, 20), bool)
    mask[2:16, 2:16] = True
    mask[5:13, 5:13] = False  # hole
    mask[8:10, 8:10] = True  # island inside the hole
    mask[18, 18] = True  # speck
    polys = mask_to_polygons(mask, min_area=1.0)
    assert sorted(len(p.holes) for p in polys) == [0, 1]
    assert len(polys) == 2  # the ring with its hole, the island; the 1-px speck is dropped
    back = polygons_to_mask(polys, (20, 20))
    expected = mask.copy()
    expected[18, 18] = False
    assert np.array_equal(back, expected)
    assert len(mask_to_polygons(mask, min_area=0)) == 3


def test_simplification_keeps_shape():
    yy, xx = np.mgrid[0:100, 0:100]
    disk = (xx - 50) ** 2 + (yy - 50) ** 2 < 35**2
    exact = mask_to_polygons(disk)[0]
    simple = mask_to_polygons(disk, tolerance=1.0)[0]
    assert len(simple.exterior) < len(exact.exterior) / 3
    back = polygons_to_mask([simple], (100, 100))
    iou = (back & disk).sum() / (back | disk).sum()
    assert iou > 0.97


def test_polygon_with_holes_area_and_boxes():
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hole = np.array([[2, 2], [4, 2], [4, 4], [2, 4]], float)
    assert PolygonWithHoles(outer, [hole]).area == 96
    assert polygon_to_xyxy(outer) == (0, 0, 10, 10)
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    assert mask_to_xyxy(mask) == (2, 1, 5, 3)
    assert mask_to_xyxy(np.zeros((3, 3), bool)) is None


def test_repair_bow_tie_and_degenerate():
    bow_tie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float)
    rings = repair_polygon(bow_tie)
    assert len(rings) == 2
    assert sum(polygon_area(r) for r in rings) == pytest.approx(50)
    assert repair_polygon(np.array([[0, 0], [1, 1], [0, 0]], float)) == []
    valid = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
    assert len(repair_polygon(valid)) == 1
    with pytest.raises(QuadratsegError, match="list of"):
        repair_polygon(np.zeros((3, 3)))


def test_an_instance_rasterized_in_its_box_equals_the_full_frame_raster():
    from quadratseg.instances import Instance

    rng = np.random.default_rng(4)
    for _ in range(50):
        centre = rng.uniform(-10, 70, 2)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        ring = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(2, 25, (7, 1))
        full = polygon_to_mask(ring, (64, 48))
        inst = Instance.from_polygons("Porites", 0.5, [ring], (64, 48))
        assert (inst is None) == (not full.any())
        if inst is not None:
            assert np.array_equal(inst.full_mask((64, 48)), full)
            assert mask_to_cvat_rle(inst.full_mask((64, 48))) == encode_mask(full)
