import json

import numpy as np
import pytest

from quadratseg.errors import QuadratsegError
from quadratseg.formats.keypoints_io import (
    coco_keypoints_document,
    parse_yolo_pose_line,
    read_coco_keypoints,
    read_yolo_pose,
    yolo_pose_line,
)
from quadratseg.keypoints import grid_template_xy


def test_coco_round_trip_keeps_missing_points(tmp_path):
    kp = grid_template_xy() * [640, 480]
    kp[5] = np.nan
    doc = coco_keypoints_document([("a.jpg", (640, 480), kp)], "grid", [str(i) for i in range(1, 118)])
    path = tmp_path / "kp.json"
    path.write_text(json.dumps(doc))
    ((size, back),) = read_coco_keypoints(path, 117).values()
    assert size == (640, 480)
    assert np.isnan(back[5]).all() and np.allclose(np.delete(back, 5, 0), np.delete(kp, 5, 0), atol=1e-3)
    assert doc["annotations"][0]["num_keypoints"] == 116
    with pytest.raises(QuadratsegError, match="expected 4"):
        read_coco_keypoints(path, 4)


def test_yolo_round_trip_and_errors(tmp_path):
    kp = grid_template_xy() * [300, 200]
    kp[0] = np.nan
    line = yolo_pose_line(kp, (300, 200))
    back = parse_yolo_pose_line(line, (300, 200), 117)
    assert np.isnan(back[0]).all() and np.allclose(back[1:], kp[1:], atol=1e-3)
    (tmp_path / "a.txt").write_text(line + "\n")
    assert np.allclose(read_yolo_pose(tmp_path / "a.txt", (300, 200), 117)[1:], kp[1:], atol=1e-3)
    with pytest.raises(QuadratsegError, match="expected 4 points"):
        parse_yolo_pose_line(line, (300, 200), 4)
    with pytest.raises(QuadratsegError, match="does not exist"):
        read_yolo_pose(tmp_path / "none.txt", (1, 1), 117)
