"""Our detector answers, read the way CVAT reads them (tests/cvat_oracle.py), never with our decoders."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from cvat_oracle import cvat_mask, cvat_stored_shape, iou, polygon_raster

from quadratseg.geometry import mask_to_cvat_rle
from quadratseg.instances import Instance, cvat_shapes


def blobs(rng: np.random.Generator, frame_size: tuple[int, int]) -> np.ndarray:
    """A colony of random shape: two parts (one with a hole), bool (H, W)."""
    w, h = frame_size
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy, r = rng.uniform(20, w / 2), rng.uniform(20, h - 20), rng.uniform(8, 18)
    ring = ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2) & ((xx - cx) ** 2 + (yy - cy) ** 2 >= (r / 3) ** 2)
    ex, ey = rng.uniform(w / 2 + 20, w - 10), rng.uniform(10, h - 10)
    islet = (np.abs(xx - ex) < rng.integers(2, 8)) & (np.abs(yy - ey) < rng.integers(2, 8))
    return ring | islet


@pytest.mark.shared_data
def test_the_oracle_reads_cvats_own_mocked_answer(shared_data):
    notes = (shared_data / "cvat" / "NOTES.md").read_text()
    mocked = json.loads(re.search(r'"mask": (\[[0-9, ]+\])', notes).group(1))
    mask = cvat_mask({"type": "mask", "mask": mocked}, (6, 5))
    xtl, ytl, xbr, ybr = mocked[-4:]  # the flat bitmap fills the inclusive box row by row
    expected = np.zeros((5, 6), bool)
    expected[ytl : ybr + 1, xtl : xbr + 1] = np.array(mocked[:-4]).reshape(ybr - ytl + 1, xbr - xtl + 1) > 0
    assert expected.sum() == 6
    assert np.array_equal(mask, expected)


def test_masks_with_holes_and_parts_are_stored_by_cvat_exactly():
    rng = np.random.default_rng(7)
    frame = (160, 90)
    for trial in range(25):
        truth = blobs(rng, frame)
        inst = Instance.from_mask("Porites", rng.uniform(0.3, 1.0), truth)
        (shape,) = cvat_shapes([inst], frame)
        assert shape["type"] == "mask" and len(inst.polygons) >= 2, trial
        assert np.array_equal(cvat_mask(shape, frame), truth), trial


def test_the_run_length_answer_of_the_rest_api_is_garbage_as_a_detector_answer():
    """The oracle tells the two contracts apart: RLE in a detector answer is not what was meant."""
    truth = blobs(np.random.default_rng(1), (160, 90))
    wrong = {"type": "mask", "mask": mask_to_cvat_rle(truth), "label": "Porites"}
    try:
        stored = cvat_mask(wrong, (160, 90))
    except ValueError as exc:  # the runs CVAT makes of it do not even fill the box
        assert "mask" in str(exc) or "element" in str(exc) or exc.args
        return
    assert not np.array_equal(stored, truth)


def test_conv_mask_to_poly_stores_the_outline_of_the_largest_part():
    truth = blobs(np.random.default_rng(3), (160, 90))
    inst = Instance.from_mask("Porites", 0.8, truth)
    (shape,) = cvat_shapes([inst], (160, 90))
    stored = cvat_stored_shape(shape, conv_mask_to_poly=True)
    assert stored["type"] == "polygon" and len(stored["points"]) >= 6
    largest = Instance.from_polygons("Porites", 0.8, [inst.polygons[0].exterior]).full_mask((160, 90))
    assert iou(polygon_raster(stored["points"], (160, 90)), largest) > 0.9


def test_threshold_confidence_and_frame_clipping():
    square = np.array([[-5.0, -5.0], [10.0, -5.0], [10.0, 10.0], [-5.0, 10.0]])
    inside = np.array([[20.0, 20.0], [30.0, 20.0], [30.0, 30.0]])
    shapes = cvat_shapes(
        [
            Instance.from_polygons("Porites", 0.873, [square]),
            Instance.from_polygons("Acropora", 0.2, [inside]),
        ],
        (40, 40),
        threshold=0.5,
    )
    assert [s["label"] for s in shapes] == ["Porites"]
    assert shapes[0]["confidence"] == "87" and shapes[0]["attributes"][0]["value"].isnumeric()
    assert shapes[0]["mask"][-4:].tolist() == [0, 0, 9, 9]
    assert np.array_equal(cvat_mask(shapes[0], (40, 40)), np.pad(np.ones((10, 10), bool), ((0, 30), (0, 30))))
    shifted = Instance.from_polygons("Porites", 0.9, [square + 100])
    assert cvat_shapes([shifted], (40, 40)) == []


def test_the_answer_text_is_what_json_writes_of_the_same_lists():
    """The handlers' fast writer of mask bitmaps gives the json module's text exactly."""
    import json

    from quadratseg.nuclio import dumps

    shapes = cvat_shapes(
        [Instance.from_mask("Porites", 0.8, blobs(np.random.default_rng(5), (160, 90)))], (160, 90)
    )
    as_lists = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in s.items()} for s in shapes]
    assert dumps(shapes) == json.dumps(as_lists) and json.loads(dumps(shapes)) == as_lists
