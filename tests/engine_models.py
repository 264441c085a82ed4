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


def slow_chain_models(log: str, seconds: float, names: list[str]):
    """The chain's models (single-stage) with :class:`SlowColonies` as the colony model, built in a
    process whose photo writes (``pipeline.engine_local.write_photo``) take ``seconds`` more, each
    logged as ``write START END``: shows, from the process that runs them (a Ray actor), whether an
    engine writes photos while its model works."""
    import time

    import pipeline.engine_local
    from pipeline.chain import ChainModels

    real_write = getattr(pipeline.engine_local.write_photo, "__wrapped__", pipeline.engine_local.write_photo)

    def slow_write(*args, **kwargs):
        start = time.time()
        time.sleep(seconds)
        written = real_write(*args, **kwargs)
        _log_span(log, "write", start, time.time())
        return written

    slow_write.__wrapped__ = real_write
    pipeline.engine_local.write_photo = slow_write
    return ChainModels(segment=SlowColonies(log, seconds, names))
