"""Stand-ins for the chain's models in tests: the photos' truth answered in read order, and
ultralytics models whose answers are real ``ultralytics.engine.results.Results`` for the real
predictors (PosePredictor, SegPredictor) to read."""

from __future__ import annotations

import numpy as np


class TruthByOrder:
    """Answers, call after call, the truth of the photos in the order the chain reads them."""

    def __init__(self, truths):
        self.truths, self.calls = truths, 0

    def next_truth(self):
        truth = self.truths[self.calls % len(self.truths)]
        self.calls += 1
        return truth


class FakePoseModel(TruthByOrder):
    """An ultralytics pose model whose detections are the true corners of each photo moved by
    ``offset_xy`` px, one object per corner (the ``points`` layout), keypoint confidence ``kpt_conf``:
    the answer is a real ``ultralytics.engine.results.Results``, read by the real PosePredictor."""

    task = "pose"

    def __init__(self, truths, offset_xy=(0.0, 0.0), kpt_conf=0.6, scale=1.0):
        super().__init__(truths)
        self.offset, self.kpt_conf, self.scale = np.asarray(offset_xy), kpt_conf, scale
        self.overrides, self.names, self.calls_kwargs = {"imgsz": 256}, {0: "corner"}, []

    def predict(self, images_bgr, **kwargs):
        import torch
        from ultralytics.engine.results import Results

        self.calls_kwargs.append(kwargs)
        out = []
        for image in images_bgr:
            corners = np.asarray(self.next_truth()["corners_raw_xy"]) * self.scale + self.offset
            boxes = [[x - 4, y - 4, x + 4, y + 4, 0.9, 0] for x, y in corners]
            keypoints = [[[x, y, self.kpt_conf]] for x, y in corners]
            out.append(
                Results(
                    image,
                    path="photo.jpg",
                    names=self.names,
                    boxes=torch.tensor(boxes, dtype=torch.float32),
                    keypoints=torch.tensor(keypoints, dtype=torch.float32),
                )
            )
        return out


class FakeSegModel:
    """An ultralytics segmentation model that finds nothing (an empty real Results per image)."""

    task = "segment"

    def __init__(self):
        self.overrides, self.names, self.shapes = {"imgsz": 256}, {0: "Porites", 1: "Acropora"}, []

    def predict(self, images_bgr, **kwargs):
        import torch
        from ultralytics.engine.results import Results

        self.shapes.extend(image.shape for image in images_bgr)
        return [
            Results(image, path="photo.jpg", names=self.names, boxes=torch.zeros((0, 6)))
            for image in images_bgr
        ]
