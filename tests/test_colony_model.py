"""One colony = one instance, possibly several parts, possibly holes: the same pixels from CVAT to
FiftyOne, back to CVAT, to COCO predictions and to cover, each read by its consumer's own code."""

from __future__ import annotations

import numpy as np

from quadratseg.geometry import PolygonWithHoles, polygons_to_mask
from quadratseg.instances import CocoInstances, Instance

FRAME = (80, 60)


def colony_mask() -> np.ndarray:
    """Two parts, the larger with a hole, bool (H, W)."""
    mask = np.zeros((FRAME[1], FRAME[0]), bool)
    mask[5:40, 5:40] = True
    mask[15:25, 15:25] = False
    mask[45:55, 50:70] = True
    return mask


def test_coco_predictions_keep_holes_and_parts_for_pycocotools():
    from pycocotools.coco import COCO

    holed = Instance.from_mask("Porites", 0.9, colony_mask())
    plain = Instance.from_mask("Acropora", 0.8, np.pad(np.ones((5, 5), bool), ((50, 5), (2, 73))))
    doc = CocoInstances(["Acropora", "Porites"])
    doc.add_image("q.jpg", FRAME, [holed, plain])
    coco = COCO()
    coco.dataset = doc.to_dict()
    coco.createIndex()
    holed_ann, plain_ann = coco.dataset["annotations"]
    assert isinstance(holed_ann["segmentation"], dict) and isinstance(plain_ann["segmentation"], list)
    assert np.array_equal(coco.annToMask(holed_ann).astype(bool), colony_mask())
    assert holed_ann["area"] == int(colony_mask().sum())
    theirs = coco.annToMask(plain_ann).astype(bool)
    ours = plain.full_mask(FRAME)
    assert np.count_nonzero(theirs & ours) / np.count_nonzero(theirs | ours) > 0.6  # a 5 x 5 square


def test_fiftyone_colony_goes_to_cvat_as_one_mask_and_comes_back_whole():
    """FiftyOne polyline (rings, even-odd) -> CVAT REST mask (read by cvat-sdk) -> rings again."""
    import fiftyone as fo
    from cvat_sdk.masks import decode_mask

    from quadratseg.fiftyone_io import ConversionLog, polylines_to_shapes, shapes_to_polylines

    inst = Instance.from_mask("Porites", 0.9, colony_mask())
    rings = [ring for part in inst.polygons for ring in (part.exterior, *part.holes)]
    scale = np.array(FRAME, float)
    polyline = fo.Polyline(
        label="Porites", points=[[tuple(p) for p in (r / scale)] for r in rings], filled=True
    )
    (shape,) = polylines_to_shapes(fo.Polylines(polylines=[polyline]), FRAME)
    assert shape.type == "mask"
    assert np.array_equal(decode_mask(shape.rle, image_width=FRAME[0], image_height=FRAME[1]), colony_mask())
    ((label, back, _),) = shapes_to_polylines([shape], FRAME, "q.jpg", ConversionLog())
    assert label == "Porites" and len(back) == 3  # two exteriors and one hole
    assert np.array_equal(polygons_to_mask([PolygonWithHoles(back[0], back[1:])], FRAME), colony_mask())


def test_cover_and_instances_count_the_same_pixels():
    from quadratseg.cover import percent_cover

    inst = Instance.from_mask("Porites", 0.9, colony_mask())
    rings = [ring for part in inst.polygons for ring in (part.exterior, *part.holes)]
    cover = percent_cover([("Porites", rings)], FRAME)
    assert cover["Porites"] == round(100 * inst.area / (FRAME[0] * FRAME[1]), 3)
