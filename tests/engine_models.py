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


class SlowColonies:
    """A colony model that answers no colony after ``seconds``, writing when each call started to
    ``log`` (a line per call, epoch seconds): shows whether an engine reads and writes photos while
    its model works."""

    def __init__(self, log: str, seconds: float, names: list[str]):
        self.log, self.seconds = log, seconds
        self.names = dict(enumerate(names))

    def predict(self, image) -> list:
        import time

        with open(self.log, "a", encoding="utf-8") as handle:
            handle.write(f"{time.time():.6f}\n")
        time.sleep(self.seconds)
        return []


def slow_chain_models(log: str, seconds: float, names: list[str]):
    """The chain's models (single-stage) with :class:`SlowColonies` as the colony model."""
    from pipeline.chain import ChainModels

    return ChainModels(segment=SlowColonies(log, seconds, names))
