"""Stand-ins for the chain's models in tests: the photos' truth answered in read order (corners,
grid, colonies, as the chain's stages answer them), a colony model answering each photo's truth by its
pixels, and ultralytics models whose answers are real ``ultralytics.engine.results.Results`` for the
real predictors (PosePredictor, SegPredictor) to read."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np

from quadratseg.instances import Instance
from quadratseg.synth.appearance import GENUS_LOOKS
from quadratseg.taxonomy import load_taxonomy
from quadratseg.warp import quadrat_homography, warp_image


def point_results(image, points_xy, kpt_conf: float, names: dict[int, str]):
    """ultralytics' own ``Results`` of a pose model finding ``points_xy`` (M, 2) px on ``image``, one
    object per point (the ``points`` layout): an 8 px box of confidence 0.9 round each, keypoint
    confidence ``kpt_conf``."""
    import torch
    from ultralytics.engine.results import Results

    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    boxes = [[x - 4, y - 4, x + 4, y + 4, 0.9, 0] for x, y in points]
    keypoints = [[[x, y, kpt_conf]] for x, y in points]
    return Results(
        image,
        path="photo.jpg",
        names=names,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6),
        keypoints=torch.tensor(keypoints, dtype=torch.float32).reshape(-1, 1, 3),
    )


class TruthByOrder:
    """Answers, call after call, the truth of the photos in the order the chain reads them."""

    def __init__(self, truths):
        self.truths, self.calls = truths, 0

    def next_truth(self):
        truth = self.truths[self.calls % len(self.truths)]
        self.calls += 1
        return truth


class TrueCorners(TruthByOrder):
    """The corner stage answering each photo's true corners and their warp (``found=False``: no
    frame found)."""

    def __init__(self, truths, found=True):
        super().__init__(truths)
        self.found = found

    def predict(self, images):
        t = self.next_truth()
        corners = np.asarray(t["corners_raw_xy"])
        if not self.found:
            return [
                SimpleNamespace(
                    keypoints_xy=np.full((4, 2), np.nan), homography=None, warp_error="corner(s) TL missing"
                )
            ]
        h = quadrat_homography(corners, tuple(t["warped_size"]))
        return [
            SimpleNamespace(keypoints_xy=corners, homography=h, warp_error="", size=tuple(t["warped_size"]))
        ]

    def warp(self, image, prediction):
        return warp_image(image, prediction.homography, prediction.size)


class TrueGrid(TruthByOrder):
    """The grid stage answering each photo's true grid intersections (``present=False``: no grid)."""

    def __init__(self, truths, present=True):
        super().__init__(truths)
        self.present = present

    def predict(self, images):
        t = self.next_truth()
        if not self.present:
            return [SimpleNamespace(no_grid="no grid: 3 of 117 intersections found", keypoints_xy=None)]
        return [SimpleNamespace(no_grid="", keypoints_xy=np.asarray(t["grid_warped_xy"]))]


class TrueColonies(TruthByOrder):
    """The colony stage answering each photo's true colonies (score 0.9)."""

    def __init__(self, truths):
        super().__init__(truths)
        self.names = dict(enumerate(load_taxonomy().classes()))

    def predict(self, image):
        t = self.next_truth()
        return [
            Instance.from_polygons(
                c["label"], 0.9, [np.asarray(c["polygon_xy"])], (image.shape[1], image.shape[0])
            )
            for c in t["corals"]
        ]


class TruthSegmenter:
    """A colony model that answers each photo's true colonies (found by the photo's pixels)."""

    def __init__(self):
        self.answers: dict[str, list[Instance]] = {}
        self.names = dict(enumerate(sorted(GENUS_LOOKS)))

    def add(self, image: np.ndarray, instances: list[Instance]) -> None:
        self.answers[hashlib.sha256(image.tobytes()).hexdigest()] = instances

    def predict(self, image: np.ndarray) -> list[Instance]:
        return self.answers[hashlib.sha256(image.tobytes()).hexdigest()]


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
        self.calls_kwargs.append(kwargs)
        return [
            point_results(
                image,
                np.asarray(self.next_truth()["corners_raw_xy"]) * self.scale + self.offset,
                self.kpt_conf,
                self.names,
            )
            for image in images_bgr
        ]


class FakeSegModel:
    """An ultralytics segmentation model that finds nothing (an empty real Results per image)."""

    task = "segment"

    def __init__(self):
        self.overrides, self.names, self.shapes = {"imgsz": 256}, {0: "Porites", 1: "Acropora"}, []
        self.confs = []  # the conf each predict call was given

    def predict(self, images_bgr, **kwargs):
        import torch
        from ultralytics.engine.results import Results

        self.shapes.extend(image.shape for image in images_bgr)
        self.confs.append(kwargs.get("conf"))
        return [
            Results(image, path="photo.jpg", names=self.names, boxes=torch.zeros((0, 6)))
            for image in images_bgr
        ]
