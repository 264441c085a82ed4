"""Function answers -> CVAT REST shapes, checked the way CVAT reads them: masks decoded by
cvat-sdk's ``decode_mask`` (CVAT's own RLE reader), labels and sublabels from CVAT's real label
dump, requests validated against CVAT's OpenAPI schema."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from bridge.convert import mask_to_rle, project_labels, to_cvat_shapes
from quadratseg.instances import Instance, cvat_shapes
from quadratseg.nuclio import dumps


@pytest.fixture
def cvat_labels(shared_data):
    """CVAT's real labels (rest_dumps/labels.json): a 4-point skeleton renamed to our corner label and
    a plain label renamed to a genus, with a number attribute ``confidence`` as our projects have."""
    dump = json.loads((shared_data / "cvat" / "rest_dumps" / "labels.json").read_text())["results"]
    skeleton = copy.deepcopy(next(lab for lab in dump if lab["name"] == "s2"))
    skeleton["name"] = "quadrat_corner"
    coral = copy.deepcopy(next(lab for lab in dump if lab["type"] == "any" and not lab["attributes"]))
    coral["name"] = "Porites"
    coral["attributes"] = [
        {
            "id": 901,
            "name": "confidence",
            "input_type": "number",
            "mutable": True,
            "default_value": "100",
            "values": ["0", "100", "1"],
        }
    ]
    return [skeleton, coral]


def colony(mask_hw, origin=(0, 0), label="Porites", score=0.87):
    return Instance.from_mask(label, score, mask_hw, origin)


def test_masks_reach_cvat_as_the_same_pixels(cvat_labels):
    from cvat_sdk.masks import decode_mask

    yy, xx = np.mgrid[0:60, 0:80]
    ring = (np.hypot(yy - 30, xx - 40) < 25) & (np.hypot(yy - 30, xx - 40) > 8)  # a colony with a hole
    frame = (200, 120)
    answer = json.loads(dumps(cvat_shapes([colony(ring, (50, 30))], frame)))  # what our zip answers
    shapes, unknown = to_cvat_shapes(answer, project_labels(cvat_labels), frame=4)
    assert unknown == set() and len(shapes) == 1
    shape = shapes[0]
    assert shape["type"] == "mask" and shape["frame"] == 4 and shape["source"] == "auto"
    decoded = decode_mask(shape["points"], image_width=frame[0], image_height=frame[1])
    expected = np.zeros((frame[1], frame[0]), bool)
    expected[30:90, 50:130] = ring
    assert np.array_equal(decoded, expected)
    assert shape["attributes"] == [{"spec_id": 901, "value": "87"}]  # CVAT keeps integer strings only


def test_a_frame_sent_downscaled_gives_shapes_in_frame_pixels(cvat_labels):
    from cvat_sdk.masks import decode_mask

    small = np.zeros((20, 30), bool)
    small[5:15, 10:25] = True  # in the half-size frame the function saw
    answer = json.loads(dumps(cvat_shapes([colony(small)], (30, 20))))
    (shape,), _ = to_cvat_shapes(answer, project_labels(cvat_labels), frame=0, scale=0.5)
    decoded = decode_mask(shape["points"], image_width=60, image_height=40)
    assert decoded.sum() == pytest.approx(4 * small.sum(), rel=0.05)
    ys, xs = np.nonzero(decoded)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (20, 49, 10, 29)
    (poly,), _ = to_cvat_shapes(answer, project_labels(cvat_labels), 0, 0.5, conv_mask_to_poly=True)
    assert poly["type"] == "polygon" and max(poly["points"][0::2]) == pytest.approx(2 * 24.5, abs=1.1)


def test_skeletons_carry_sublabel_ids_and_outside(cvat_labels):
    answer = [
        {
            "label": "quadrat_corner",
            "type": "skeleton",
            "confidence": "90",
            "attributes": [{"name": "confidence", "value": "90"}],
            "elements": [
                {"label": str(i + 1), "type": "points", "points": [10.0 * i, 5.0], "outside": int(i == 2)}
                for i in range(4)
            ],
        }
    ]
    labels = project_labels(cvat_labels)
    (shape,), unknown = to_cvat_shapes(answer, labels, frame=2)
    corner = labels["quadrat_corner"]
    assert [e["label_id"] for e in shape["elements"]] == [corner.sublabel(str(i)).id for i in (1, 2, 3, 4)]
    assert [e["outside"] for e in shape["elements"]] == [False, False, True, False]
    assert shape["points"] == [] and shape["label_id"] == corner.id and unknown == set()
    answer[0]["elements"][0]["label"] = "99"
    (shape,), unknown = to_cvat_shapes(answer, labels, frame=2)
    assert unknown == {"quadrat_corner/99"} and len(shape["elements"]) == 3


def test_the_requests_satisfy_cvats_schema(cvat_labels, shared_data):
    from loopback.cvat_standin.openapi import load_checker

    checker = load_checker(shared_data / "cvat" / "schema.yml")
    disk = np.hypot(*np.mgrid[-6:7, -6:7]) <= 6
    answers = json.loads(dumps(cvat_shapes([colony(disk, (3, 3))], (40, 40))))
    answers.append(
        {
            "label": "quadrat_corner",
            "type": "skeleton",
            "elements": [
                {"label": str(i + 1), "type": "points", "points": [1, 2], "outside": 0} for i in range(4)
            ],
        }
    )
    for conv in (False, True):
        shapes, _ = to_cvat_shapes(answers, project_labels(cvat_labels), frame=0, conv_mask_to_poly=conv)
        body = {"shapes": shapes, "tags": [], "tracks": []}
        assert checker.check_request("PATCH", "/api/jobs/1/annotations/", body) == []


def test_malformed_answers_are_refused_with_the_reason(cvat_labels):
    labels = project_labels(cvat_labels)
    with pytest.raises(ValueError, match="a list of shapes"):
        to_cvat_shapes({"error": "x"}, labels, 0)
    with pytest.raises(ValueError, match="needs 'label' and 'type'"):
        to_cvat_shapes([{"points": [1, 2]}], labels, 0)
    with pytest.raises(ValueError, match="values for a"):
        mask_to_rle([1, 1, 1, 0, 0, 3, 3])


def test_the_cvat_seam_has_one_piece_of_code_per_idea(cvat_labels):
    """One CVAT client wrapper (quadratseg.cvat_client), one label model (LabelSpec, ids included), one
    mask -> CVAT RLE encoder (quadratseg.geometry.mask_to_cvat_rle) for the bridge and the data tools."""
    import ast
    import importlib.util
    from pathlib import Path

    from quadratseg.cvat_client import Cvat
    from quadratseg.formats.cvat_labels import LabelSpec

    assert importlib.util.find_spec("bridge.cvat") is None and Cvat.__module__ == "quadratseg.cvat_client"
    labels = project_labels(cvat_labels)
    corner, coral = labels["quadrat_corner"], labels["Porites"]
    assert isinstance(corner, LabelSpec) and isinstance(coral, LabelSpec)
    assert coral.id == cvat_labels[1]["id"] and coral.attribute("confidence").id == 901
    assert [s.id for s in corner.sublabels] == [s["id"] for s in cvat_labels[0]["sublabels"]]
    bridge_dir = Path(__file__).resolve().parent.parent / "bridge"
    named = {
        node.module
        for path in bridge_dir.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "cvat_sdk.masks" not in named  # the core's encoder, not a second one
    assert not any(
        isinstance(node, ast.ClassDef) and node.name in ("LabelInfo", "Cvat")
        for path in bridge_dir.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
    )


def test_the_bridge_warps_a_rectangular_quadrat_to_its_own_proportions():
    """The bridge warped every quadrat to a square, so a 1 x 0.5 m quadrat reached the grid and coral
    projects stretched 2:1 while pipeline.process --aspect 2 warps it to its shape: the training sets
    made through CVAT and the chain's inputs differed. BRIDGE_QUADRAT_ASPECT sets it, as --aspect."""
    from bridge.work import _warp_frame
    from quadratseg.settings import load_settings

    image = np.zeros((700, 1400, 3), np.uint8)
    corners = np.array([[0.0, 0.0], [1400.0, 0.0], [1400.0, 700.0], [0.0, 700.0]])
    settings = load_settings(None, {"BRIDGE_QUADRAT_ASPECT": "2", "BRIDGE_WARP_SIZE": "1920"})
    warped = _warp_frame(image, corners, settings)
    assert warped.shape[:2] == (960, 1920)
    # photographed with its long side up the photo: the skeleton's TL-TR (the photo's x axis) is the
    # short side; the warp still puts the long side along its width, with one scale on both sides
    upright = np.zeros((1400, 700, 3), np.uint8)
    upright[:, :350] = 255  # the photo's left half white: after the quarter turn, one half of the warp
    corners = np.array([[0.0, 0.0], [700.0, 0.0], [700.0, 1400.0], [0.0, 1400.0]])
    warped = _warp_frame(upright, corners, settings)
    assert warped.shape[:2] == (960, 1920)
    white = warped[..., 0] > 127
    assert abs(white.mean() - 0.5) < 0.01 and (white.all(axis=1) | ~white.any(axis=1)).mean() > 0.99
