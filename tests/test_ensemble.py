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
    with pytest.raises(ValueError, match="unknown ensemble"):
        fuse_scores(colonies, semantic, "nms")
