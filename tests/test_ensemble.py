"""Pixel fusion of colonies and class probabilities, on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg.ensemble import fuse_scores, instance_score_maps


def test_colonies_become_score_maps_with_the_surest_colony_winning():
    box = np.ones((2, 2), bool)
    scores = instance_score_maps(
        [(1, 0.6, box, (0, 0)), (2, 0.9, box, (1, 1)), (1, 0.3, box, (3, 3))], 3, (4, 4)
    )
    assert scores.shape == (3, 4, 4)
    assert scores[1, 0, 0] == pytest.approx(0.6) and scores[2, 1, 1] == pytest.approx(0.9)
    assert scores[0, 1, 1] == pytest.approx(0.1) and scores[0, 0, 3] == 1.0  # background: 1 - best colony
    assert scores[1, 3, 3] == pytest.approx(0.3)  # a box cut by the frame keeps its inside part
    with pytest.raises(ValueError, match="not a colony class"):
        instance_score_maps([(0, 0.5, box, (0, 0))], 3, (4, 4))


def test_weighted_and_voting_fusions():
    colonies = np.zeros((3, 1, 3))
    semantic = np.zeros((3, 1, 3))
    colonies[:, 0, 0], semantic[:, 0, 0] = [0.1, 0.9, 0.0], [0.2, 0.7, 0.1]  # agree on class 1
    colonies[:, 0, 1], semantic[:, 0, 1] = [0.2, 0.0, 0.8], [0.1, 0.75, 0.15]  # disagree: 0.8 vs 0.75
    colonies[:, 0, 2], semantic[:, 0, 2] = [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]  # no colony there
    weighted = fuse_scores(colonies, semantic, "weighted", weight=0.5)
    assert np.allclose(weighted.sum(axis=0), 1.0)
    assert weighted.argmax(axis=0).tolist() == [[1, 2, 0]]  # 0.4 + 0.075 against 0.375 at pixel 1
    assert fuse_scores(colonies, semantic, "weighted", weight=0.0).argmax(axis=0).tolist() == [[1, 1, 0]]
    voting = fuse_scores(colonies, semantic, "voting")
    assert voting[1, 0, 0] == pytest.approx(1.0)  # both vote for class 1
    assert voting.argmax(axis=0).tolist() == [[1, 2, 0]]  # the surer vote (0.8) wins the disagreement
    assert voting[2, 0, 1] == pytest.approx(0.8 / 1.55)
    with pytest.raises(ValueError, match="unknown pixel ensemble"):
        fuse_scores(colonies, semantic, "nms")


def test_nms_keeps_the_surer_of_two_overlapping_colonies_whatever_their_genus():
    from quadratseg.ensemble import nms_instances
    from quadratseg.instances import Instance, mask_iou

    disk = np.hypot(*np.mgrid[-10:11, -10:11]) <= 10
    yolo = Instance("Porites", 0.8, disk, (20, 20))
    shifted = Instance("Acropora", 0.9, disk, (22, 20))  # the same colony, 2 px off
    apart = Instance("Porites", 0.3, disk, (60, 60))
    touching = Instance("Pocillopora", 0.95, disk, (38, 20))  # overlaps by a sliver only
    assert 0.5 < mask_iou(yolo, shifted) < 1.0 and mask_iou(yolo, apart) == 0.0
    kept = nms_instances([yolo, shifted, apart, touching], 0.5)
    assert [(i.label, i.origin_xy) for i in kept] == [
        ("Pocillopora", (38, 20)),
        ("Acropora", (22, 20)),
        ("Porites", (60, 60)),
    ]
    assert len(nms_instances([yolo, shifted], 0.99)) == 2
    with pytest.raises(ValueError, match="IoU threshold"):
        nms_instances([yolo], 0.0)
