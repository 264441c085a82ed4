"""Real YOLO11n-seg checkpoints built without training, for the engine tests: the chain's real
predictors load them in any process (a Ray actor, a ``python -m pipeline.process`` child)."""

from __future__ import annotations

from pathlib import Path


def untrained_seg_weights(path: Path, names: list[str], seed: int = 0, confident: bool = True) -> Path:
    """A YOLO11n-seg of ``names`` with random weights (``seed``), saved as an ultralytics
    checkpoint; ``confident`` raises its class-score biases so that it finds colonies on any photo
    (a random model otherwise finds none, and an empty answer tests little)."""
    import torch
    from ultralytics.nn.tasks import SegmentationModel

    torch.manual_seed(seed)
    model = SegmentationModel("yolo11n-seg.yaml", nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    model.args = {"task": "segment", "imgsz": 64}
    if confident:
        for branch in model.model[-1].cv3:
            branch[-1].bias.data.fill_(2.0)
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {"task": "segment", "imgsz": 64}, "epoch": -1}, path)
    return path


def _log_span(log: str, kind: str, start: float, end: float) -> None:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"{kind} {start:.6f} {end:.6f}\n")


class SlowColonies:
    """A colony model that answers no colony after ``seconds``, writing when each call started and
    ended to ``log`` (a line ``call START END`` per call, epoch seconds)."""

    def __init__(self, log: str, seconds: float, names: list[str]):
        self.log, self.seconds = log, seconds
        self.names = dict(enumerate(names))

    def predict(self, image) -> list:
        import time

        start = time.time()
        time.sleep(self.seconds)
        _log_span(self.log, "call", start, time.time())
        return []


class InsetCorners:
    """A corner model that finds the quadrat 10 % inside the border of a square photo and warps it
    to ``size`` px (the corner stage's predict and warp); it finds no frame on a photo wider than
    tall, and raises on one taller than wide (a stage's own error)."""

    def __init__(self, size: int = 128):
        self.size = size

    def predict(self, images: list) -> list:
        from types import SimpleNamespace

        import cv2
        import numpy as np

        answers = []
        for image in images:
            height, width = image.shape[:2]
            if height > width:
                raise RuntimeError(f"corner model failed on a {width} x {height} photo")
            inset = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]], dtype=np.float32)
            corners = inset * np.array([width, height], dtype=np.float32)
            if width > height:
                answers.append(SimpleNamespace(keypoints_xy=corners, homography=None, warp_error="no frame"))
                continue
            target = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32) * self.size
            homography = cv2.getPerspectiveTransform(corners, target)
            answers.append(SimpleNamespace(keypoints_xy=corners, homography=homography, warp_error=""))
        return answers

    def warp(self, image, corners):
        import cv2

        return cv2.warpPerspective(image, corners.homography, (self.size, self.size))


def _log_built(log: str, names: tuple[str, ...]) -> None:
    import os

    with open(log, "a", encoding="utf-8") as handle:
        for name in names:
            handle.write(f"{os.getpid()} {name}\n")


def staged_chain_models(log: str, names: list[str], only: tuple[str, ...] | None = None):
    """The chain's models (two-stage: :class:`InsetCorners` and a colony model answering none), of
    the fields ``only`` names (all by default); writes ``PID FIELD`` to ``log`` for each field
    built, so a test sees which process built which model."""
    import os

    from pipeline.chain import ChainModels

    wanted = tuple(f for f in ("corners", "segment") if only is None or f in only)
    _log_built(log, wanted)
    return ChainModels(
        segment=SlowColonies(os.devnull, 0.0, names) if "segment" in wanted else None,
        corners=InsetCorners() if "corners" in wanted else None,
    )


def inset_chain_models(weights: str, only: tuple[str, ...] | None = None):
    """A two-stage chain: :class:`InsetCorners` and the real colony predictor of ``weights`` at 64
    px (:func:`pipeline.process.build_models`, with ``only`` as the Ray engine passes it)."""
    from dataclasses import replace

    from pipeline.process import build_models
    from pipeline.run import RunConfig
    from quadratseg.cli import current_settings

    config = RunConfig(yolo=weights, yolo_imgsz=64, warp_size=128, allow_warp_size_mismatch=True)
    models = build_models(config, current_settings(), only=only)
    return replace(models, corners=InsetCorners() if only is None or "corners" in only else None)


class DyingColonies(SlowColonies):
    """A colony model whose process dies (``os._exit``) on a photo of ``width`` px: a photo that
    crashes its worker every time."""

    def __init__(self, width: int, names: list[str]):
        import os

        super().__init__(os.devnull, 0.0, names)
        self.width = width

    def predict(self, image) -> list:
        import os

        if image.shape[1] == self.width:
            os._exit(1)
        return super().predict(image)


def dying_chain_models(width: int, names: list[str], only: tuple[str, ...] | None = None):
    """The chain's models (single-stage) with :class:`DyingColonies`."""
    from pipeline.chain import ChainModels

    return ChainModels(segment=DyingColonies(width, names))
